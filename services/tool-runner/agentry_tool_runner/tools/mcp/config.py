"""The MCP servers file (TOOL_RUNNER_MCP_CONFIG): which servers, and how far we trust them.

The shape other MCP hosts use (`{"mcpServers": {name: {"command", "args", "env"} |
{"url", "headers"}}}`), JSON or YAML, plus keys of ours (see `ServerConfig`). `${NAME}`
in `env` values, `headers` values and `url` is replaced by the worker's environment
variable NAME, so secrets stay in the environment (or a secret store feeding it), not in
the file; a missing variable fails the start naming it.

A tool's name in the catalog is `<prefix>__<tool>` (prefix: the server's key by
default): OpenAI function names allow `^[a-zA-Z0-9_-]{1,64}$`, no dots, and no built-in
tool has a double underscore, so servers cannot collide with each other or with ours.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from agentry_shared.contracts.tools import SideEffect
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SEPARATOR = "__"
_PREFIX = re.compile(r"^[a-zA-Z0-9-]+(?:_[a-zA-Z0-9-]+)*$")  # no "__" inside: the separator is unique
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The worker's own Python packages, mounted read-only here for `python_packages: true`.
SITE_PACKAGES_INSIDE = "/opt/site-packages"


class ConfigError(ValueError):
    """The MCP servers file cannot be used; the message names the file and the problem."""


class ToolPolicy(BaseModel):
    """Per tool of a server: overrides the server's defaults."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    side_effect: SideEffect | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    calls_per_minute: int | None = Field(default=None, ge=0)
    # False: left out of the catalog.
    enabled: bool = True


class Mount(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    source: Path
    target: str = Field(pattern=r"^/opt/[A-Za-z0-9._/-]+$")  # under /opt: never over the system


class ServerConfig(BaseModel):
    """One server. Exactly one of `command` (stdio, in the sandbox) or `url` (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # stdio: run inside the sandbox; `python`/`python3` is the sandbox's /usr/bin/python3.
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    # streamable HTTP: the worker connects (from the host's network).
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # ---- ours ----
    pool: str = Field(default="default", pattern=r"^[a-z0-9-]{1,32}$")
    prefix: str | None = None
    # The default for its tools; "destructive" (approval, never run twice) unless the
    # operator says otherwise, or trusts the server's readOnlyHint / idempotentHint.
    side_effect: SideEffect = "destructive"
    trust_annotations: bool = False
    timeout_seconds: float = Field(default=30.0, gt=0)
    # Per tool and per worker; 0: no limit of ours (the reasoner's per-user limit still holds).
    calls_per_minute: int = Field(default=0, ge=0)
    tools: dict[str, ToolPolicy] = Field(default_factory=dict)
    # The most tools offered from it (the first listed): each goes into every model request
    # of every user's turn, and a listing without end must end.
    max_tools: int = Field(default=64, ge=1, le=1000)
    # stdio only: the sandbox's reach.
    network: bool = False
    python_packages: bool = False
    mounts: list[Mount] = Field(default_factory=list)
    memory_mib: int = Field(default=1024, ge=64)
    cpu_seconds: int = Field(default=600, ge=1)
    max_processes: int = Field(default=64, ge=4)
    max_open_files: int = Field(default=256, ge=16)
    tmp_mib: int = Field(default=64, ge=1)
    # Seconds to connect and list tools; between health pings; for a cancelled call to stop.
    start_timeout_seconds: float = Field(default=20.0, gt=0)
    ping_interval_seconds: float = Field(default=10.0, gt=0)
    cancel_grace_seconds: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either `command` (stdio) or `url` (streamable HTTP), not both or neither")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("`url` must be http:// or https://")
        if self.prefix is not None and not _PREFIX.match(self.prefix):
            raise ValueError(f"prefix {self.prefix!r} must match {_PREFIX.pattern}")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"


class McpConfig(BaseModel):
    # Errors never quote the input: `${NAME}` references are resolved by then (secrets).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, hide_input_in_errors=True)

    servers: Annotated[dict[str, ServerConfig], Field(alias="mcpServers")] = Field(default_factory=dict)

    def prefix(self, name: str) -> str:
        return self.servers[name].prefix or name

    def pools(self) -> list[str]:
        return sorted({server.pool for server in self.servers.values()})


def tool_name(prefix: str, tool: str) -> str | None:
    """The catalog name of a server's tool, or None when it cannot be one (too long, dots)."""
    name = f"{prefix}{SEPARATOR}{tool}"
    return name if re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name) else None


def load(path: Path, environ: Mapping[str, str] | None = None) -> McpConfig:
    """Reads and checks the file, with `${NAME}` references resolved; raises ConfigError."""
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"TOOL_RUNNER_MCP_CONFIG: cannot read {path}: {exc}") from exc
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"TOOL_RUNNER_MCP_CONFIG: {path} is not valid JSON/YAML: {exc}") from exc
    try:
        config = McpConfig.model_validate(_resolve(raw or {}, environ, path))
    except ValidationError as exc:
        raise ConfigError(f"TOOL_RUNNER_MCP_CONFIG: {path}: {exc}") from exc
    for name in config.servers:
        if not _PREFIX.match(config.prefix(name)):
            raise ConfigError(f"TOOL_RUNNER_MCP_CONFIG: server {name!r} needs a `prefix` matching {_PREFIX.pattern}")
    prefixes = [config.prefix(name) for name in config.servers]
    if len(set(prefixes)) != len(prefixes):
        raise ConfigError(f"TOOL_RUNNER_MCP_CONFIG: {path}: two servers share a prefix")
    return config


def _resolve(node: Any, environ: Mapping[str, str], path: Path) -> Any:
    if isinstance(node, dict):
        return {key: _resolve(value, environ, path) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, environ, path) for item in node]
    if isinstance(node, str):
        return _REFERENCE.sub(lambda match: _variable(match.group(1), environ, path), node)
    return node


def _variable(name: str, environ: Mapping[str, str], path: Path) -> str:
    if name not in environ:
        raise ConfigError(f"TOOL_RUNNER_MCP_CONFIG: {path} refers to ${{{name}}}, which is not set")
    return environ[name]
