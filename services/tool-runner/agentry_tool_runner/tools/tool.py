"""What a tool is: its contract with the model, its limits, and the code the child runs.

The implementation is named by a "module:function" string, not held as a function, so
the runner itself never calls tool code: only the child process does (in the sandbox).
What the sandbox lets the child see and reach is declared here too (network, workspace,
docs), so a tool's reach is read off its declaration, not off its code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from agentry_shared.contracts.tools import SideEffect, ToolDescriptor
from pydantic import BaseModel

from agentry_tool_runner.tools.schema import parameters_schema

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_IMPLEMENTATION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

# "none": a network namespace of its own with nothing in it. "allowlist": the host's
# network, for code of ours that checks each host against TOOL_RUNNER_HTTP_ALLOWLIST.
Network = Literal["none", "allowlist"]
# The calling user's folder: not mounted, mounted read-only, or read-write.
WorkspaceAccess = Literal["none", "read", "write"]
# "child": the implementation runs in a (sandboxed) child process. "memory": the worker
# calls the implementation to build one memory-service request and returns its reply;
# for our own tools that only read or write the user's memory, never code of the model's.
# "worker": the worker calls the implementation in a thread (execution/in_worker.py), with
# its deadline and output cap; only for our own pure functions (no exec/eval, no files,
# no network, no code of the model's), so `requires_sandbox=False` and no reach declared.
# "mcp": a tool of an MCP server, called over the worker's connection to it (tools/mcp/).
Backend = Literal["child", "memory", "worker", "mcp"]


@dataclass(frozen=True)
class Limits:
    """Applied to the child process with setrlimit; the sandbox backend may add more."""

    cpu_seconds: int = 5
    # RLIMIT_AS of each process.
    memory_mib: int = 256
    # The call as a whole, all its processes and its /tmp together (execution/memory_cap.py:
    # a cgroup where the host allows one, else fewer processes and a lower RLIMIT_AS).
    call_memory_mib: int = 1024
    max_output_bytes: int = 64 * 1024
    max_stderr_bytes: int = 64 * 1024
    max_file_bytes: int = 16 * 1024 * 1024
    max_open_files: int = 64
    # RLIMIT_NPROC, processes and threads of the call: set inside the sandbox's user
    # namespace, where the kernel counts per call (the weak backend: per uid, all calls);
    # also the call cgroup's pids.max. Lowered under the rlimit memory cap.
    max_processes: int = 64
    # Size of the private /tmp (a tmpfs: it is memory).
    tmp_mib: int = 16


@dataclass(frozen=True)
class Tool:
    name: str
    # Written for the model. "{memory}" in it becomes the memory cap in force on this
    # worker (`Tool.descriptor`), which depends on the host (execution/memory_cap.py).
    description: str
    params: type[BaseModel]
    # "package.module:function"; the child calls function(**validated_arguments) -> str.
    implementation: str
    side_effect: SideEffect = "read_only"
    pool: str = "default"
    timeout_seconds: float = 10.0
    limits: Limits = field(default_factory=Limits)
    # With "allowlist" the implementation gets `allowed_hosts: list[str]` and must check them.
    network: Network = "none"
    # Other than "none": the implementation gets `workspace: str`, the folder's path.
    workspace: WorkspaceAccess = "none"
    # True: the implementation gets `docs: str`, the documents folder (read-only).
    docs: bool = False
    # False only for pure functions of their arguments (no files, no network, no code from
    # the model): those still run, without the sandbox, when bubblewrap is missing.
    requires_sandbox: bool = True
    backend: Backend = "child"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must match {_NAME.pattern}")
        if not _IMPLEMENTATION.match(self.implementation):
            raise ValueError(f"tool {self.name}: implementation must be 'module:function'")
        if self.params.model_config.get("extra") != "forbid":
            # The schema promises additionalProperties: false; validation must agree.
            raise ValueError(f"tool {self.name}: params model needs extra='forbid'")
        if self.timeout_seconds <= 0:
            raise ValueError(f"tool {self.name}: timeout_seconds must be positive")
        reach = self.requires_sandbox or self.network != "none" or self.workspace != "none" or self.docs
        if self.backend == "worker" and reach:
            raise ValueError(f"tool {self.name}: only a pure function (no sandbox, no reach) runs in the worker")

    def validate_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """JSON-ready keyword arguments for the implementation; raises ValidationError."""
        return self.params.model_validate(arguments).model_dump(mode="json")

    def descriptor(self, memory: str | None = None) -> ToolDescriptor:
        """What the catalog says; `memory` replaces "{memory}" in the description."""
        default = f"{self.limits.memory_mib} MiB per process, {self.limits.call_memory_mib} MiB in all"
        return ToolDescriptor(
            name=self.name,
            description=self.description.replace("{memory}", memory or default),
            parameters=parameters_schema(self.params),
            side_effect=self.side_effect,
            pool=self.pool,
            timeout_seconds=self.timeout_seconds,
            pure=self.backend == "worker",
        )
