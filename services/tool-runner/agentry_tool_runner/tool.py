"""What a tool is: its contract with the model, its limits, and the code the child runs.

The implementation is named by a "module:function" string, not held as a function, so
the runner itself never imports or runs tool code: only the child process does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agentry_shared.contracts.tools import SideEffect, ToolDescriptor
from pydantic import BaseModel

from agentry_tool_runner.schema import parameters_schema

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_IMPLEMENTATION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Limits:
    """Applied to the child process with setrlimit; the sandbox backend may add more."""

    cpu_seconds: int = 5
    memory_mib: int = 256
    max_output_bytes: int = 64 * 1024
    max_stderr_bytes: int = 64 * 1024
    max_file_bytes: int = 16 * 1024 * 1024
    max_open_files: int = 64


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    params: type[BaseModel]
    # "package.module:function"; the child calls function(**validated_arguments) -> str.
    implementation: str
    side_effect: SideEffect = "read_only"
    pool: str = "default"
    timeout_seconds: float = 10.0
    limits: Limits = field(default_factory=Limits)
    # Not enforceable before the sandbox backend (network namespaces); recorded already.
    network: bool = False

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

    def validate_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """JSON-ready keyword arguments for the implementation; raises ValidationError."""
        return self.params.model_validate(arguments).model_dump(mode="json")

    def descriptor(self) -> ToolDescriptor:
        return ToolDescriptor(
            name=self.name,
            description=self.description,
            parameters=parameters_schema(self.params),
            side_effect=self.side_effect,
            pool=self.pool,
            timeout_seconds=self.timeout_seconds,
        )
