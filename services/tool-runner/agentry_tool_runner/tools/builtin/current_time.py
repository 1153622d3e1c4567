"""The current date and time, which the model cannot know on its own."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentry_tool_runner.tools.failure import ToolFailure, in_worker


def run(timezone: str | None = None) -> str:
    if not timezone:
        return datetime.now(UTC).isoformat(timespec="seconds")
    try:
        zone = ZoneInfo(timezone)
    # ValueError: not a valid key (a path); OSError: a folder of the database ("Europe"),
    # whose message would name where the worker keeps it.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ToolFailure(f"unknown time zone {timezone!r}; use an IANA name like 'Europe/Paris'") from None
    return datetime.now(zone).isoformat(timespec="seconds")


if in_worker():  # the declaration; the child (no pydantic in the sandbox) skips it
    from pydantic import BaseModel, ConfigDict, Field

    from agentry_tool_runner.tools.tool import Limits, Tool

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        timezone: str | None = Field(
            default=None,
            max_length=64,
            description="IANA time zone name such as 'Europe/Paris' or 'America/New_York'; UTC when omitted.",
        )

    TOOL = Tool(
        name="current_time",
        description="Returns the current date and time in ISO 8601, in the given IANA time zone (default UTC).",
        params=Params,
        implementation=f"{__name__}:run",
        side_effect="read_only",
        timeout_seconds=5.0,
        limits=Limits(cpu_seconds=2, memory_mib=256, max_output_bytes=1024),
        requires_sandbox=False,  # a pure function of its argument and the clock
        backend="worker",  # no sandboxed process per call (execution/in_worker.py)
    )
