"""Each service's folder under services/ and the Python package inside it: the tests that
read every service's source (README module tables, metric labels) walk this map."""

from __future__ import annotations

from typing import Final

PACKAGES: Final[dict[str, str]] = {
    "gateway": "agentry_gateway",
    "reasoner": "agentry_reasoner",
    "tool-runner": "agentry_tool_runner",
    "memory": "agentry_memory",
    "offline-model": "agentry_offline_model",
}
