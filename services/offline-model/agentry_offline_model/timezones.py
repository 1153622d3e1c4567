""""What time is it in Tokyo?" -> the MCP time server's `get_current_time` with an IANA zone.

Fires only when a tool named `<prefix>__get_current_time` is offered (the tool-runner's
name for the `get_current_time` tool of an MCP server, e.g. `time__get_current_time`
from `mcp-server-time`) and the city is one the table knows.
"""

from __future__ import annotations

import re
from collections.abc import Set

_SUFFIX = "__get_current_time"
_CITY = re.compile(r"\b(?:what\s+time\s+is\s+it|the\s+(?:current\s+)?time|what's\s+the\s+time)\s+in\s+([a-z .'-]+)")
ZONES = {
    "tokyo": "Asia/Tokyo",
    "london": "Europe/London",
    "paris": "Europe/Paris",
    "berlin": "Europe/Berlin",
    "new york": "America/New_York",
    "los angeles": "America/Los_Angeles",
    "sydney": "Australia/Sydney",
    "singapore": "Asia/Singapore",
    "utc": "UTC",
}


def time_in_city(user_text: str, offered: Set[str]) -> tuple[str, dict[str, str]] | None:
    tools = sorted(name for name in offered if name.endswith(_SUFFIX))
    if not tools:
        return None
    match = _CITY.search(user_text.lower().replace("\u2019", "'"))
    if match is None:
        return None
    zone = ZONES.get(match.group(1).strip(" .?!'"))
    return (tools[0], {"timezone": zone}) if zone else None
