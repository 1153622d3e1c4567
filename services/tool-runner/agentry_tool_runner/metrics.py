"""Prometheus metrics of tool calls, served on /metrics by the ops server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence

from agentry_shared.contracts.errors import ToolErrorCode, codes
from agentry_shared.metrics import initialise
from prometheus_client import Counter, Gauge, Histogram

TOOL_CALLS = Counter(
    "agentry_tool_calls_total",
    "Tool calls answered, by tool, its pool and outcome (ok or the tool error code).",
    ["tool", "pool", "outcome"],
)
TOOL_CALL_DURATION = Histogram(
    "agentry_tool_call_duration_seconds",
    "Wall-clock time of tool calls, child process included, by tool and pool.",
    ["tool", "pool"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TOOL_CALLS_IN_FLIGHT = Gauge("agentry_tool_calls_in_flight", "Tool calls running right now.")
TOOL_CALL_CLAIMS = Counter(
    "agentry_tool_call_claims_total",
    "What the claim in memory led to: run, reply_kept, wait (another runner holds it), refuse.",
    ["decision"],
)
TOOL_EXECUTIONS = Counter(
    "agentry_tool_executions_total", "Child processes started to run a tool (kept results not counted).", ["tool"]
)
SANDBOX_AVAILABLE = Gauge(
    "agentry_tool_runner_sandbox_available", "1 when bubblewrap works here and every tool runs in the sandbox."
)
WEAK_ISOLATION = Gauge(
    "agentry_tool_runner_weak_isolation",
    "1 when tools that need the sandbox run without it (TOOL_RUNNER_ALLOW_WEAK_ISOLATION, bubblewrap unavailable).",
)
MEMORY_CAP = Gauge(
    "agentry_tool_runner_memory_cap",
    "1 for the mechanism capping each call's memory as a whole (cgroup2, cgroup1 or rlimit), chosen at start-up.",
    ["mechanism"],
)
SANDBOX_START = Histogram(
    "agentry_tool_runner_sandbox_start_seconds",
    "Time to start a tool's child process (fork and exec of bwrap, or of Python without the "
    "sandbox), by launcher (bwrap, python).",
    ["launcher"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
LAUNCHERS = ("bwrap", "python")
initialise(SANDBOX_START, LAUNCHERS)


def observe_start(argv: Sequence[str], started: float) -> None:
    """One child started: `started` is the time.monotonic() before the exec."""
    launcher = "bwrap" if argv and os.path.basename(argv[0]) == "bwrap" else "python"
    SANDBOX_START.labels(launcher).observe(time.monotonic() - started)


def initialise_tools(tools: Iterable[tuple[str, str]]) -> None:
    """Creates the series of every (tool, pool) this worker serves, at 0."""
    outcomes = {"ok", "failed"} | codes(ToolErrorCode)
    for tool, pool in tools:
        initialise(TOOL_CALLS, [tool], [pool], outcomes)
        initialise(TOOL_CALL_DURATION, [tool], [pool])
        initialise(TOOL_EXECUTIONS, [tool])


# A request naming a tool this worker does not have: counted and timed under "unknown".
initialise(TOOL_CALLS, ["unknown"], ["unknown"], {"unknown_tool"})
initialise(TOOL_CALL_DURATION, ["unknown"], ["unknown"])
initialise(TOOL_CALL_CLAIMS, ("run", "reply_kept", "wait", "refuse"))
