"""The memory of a call as a whole (`Limits.call_memory_mib`), however the host allows it.

RLIMIT_AS caps one process: a program forking eight children of 400 MiB under a 512 MiB
limit holds 3.2 GB. Two ways to cap the call instead, chosen once at start-up:

- "cgroup2" / "cgroup1": a control group per call (cgroups.py) with the call's memory
  (no swap) and `max_processes`; RLIMIT_AS stays as declared, per process.
- "rlimit": no writable cgroups (ordinary pods). processes x RLIMIT_AS must stay under
  the cap, so both come down: processes = cap // per-process limit, but at least
  `_MIN_PROCESSES` (the child, the program and a couple of threads), then the
  per-process limit = cap // processes. RLIMIT_NPROC is counted inside each call's user
  namespace (child.py), so concurrent calls do not share it; in the weak backend (no
  namespaces) it counts every process of the sandbox uid, all calls together, which is
  stricter still.

Either way a worker holds at most TOOL_RUNNER_CONCURRENCY x the cap for its calls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from agentry_tool_runner.execution.cgroups import CallCgroup, Cgroups
from agentry_tool_runner.tools.tool import Limits

_MIN_PROCESSES = 4
_MIB = 1024 * 1024


@dataclass(frozen=True)
class MemoryCap:
    cgroups: Cgroups | None = None
    why_not_cgroups: str = "not tried"

    @property
    def mechanism(self) -> str:
        return self.cgroups.version if self.cgroups is not None else "rlimit"

    def limits(self, limits: Limits) -> Limits:
        """The rlimits to apply to each process of a call."""
        if self.cgroups is not None:
            return limits
        processes = min(limits.max_processes, max(_MIN_PROCESSES, limits.call_memory_mib // limits.memory_mib))
        memory = min(limits.memory_mib, limits.call_memory_mib // processes)
        return dataclasses.replace(limits, max_processes=processes, memory_mib=memory)

    def place(self, limits: Limits) -> CallCgroup | None:
        """The call's cgroup, or None under rlimits; raises OSError."""
        if self.cgroups is None:
            return None
        return self.cgroups.create(limits.call_memory_mib * _MIB, limits.max_processes)

    def describe(self, limits: Limits) -> str:
        """The cap in words, for the tool's description in the catalog."""
        applied = self.limits(limits)
        return (
            f"{limits.call_memory_mib} MiB of memory for the whole run, at most {applied.memory_mib} MiB "
            f"per process, {applied.max_processes} processes and threads"
        )
