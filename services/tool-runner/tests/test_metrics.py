"""Every series the tool-runner can write exists at 0 from start-up, the computed labels
too (tests/ops/test_metric_labels.py checks only those written as literals)."""

from __future__ import annotations

import agentry_tool_runner.metrics  # noqa: F401  (registers the metrics, as the service does)
from prometheus_client import REGISTRY


def test_a_call_of_an_unknown_tool_has_its_series_before_the_first() -> None:
    # Present, not 0: other tests of the same process may have made such calls by now.
    unknown = {"tool": "unknown", "pool": "unknown"}
    assert REGISTRY.get_sample_value("agentry_tool_calls_total", {**unknown, "outcome": "unknown_tool"}) is not None
    assert REGISTRY.get_sample_value("agentry_tool_call_duration_seconds_count", unknown) is not None
