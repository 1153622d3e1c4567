"""MCP tools as registry entries: declared by the server, judged by the operator's config.

An `McpTool` is a `Tool` whose schema is the server's `inputSchema` (checked with
jsonschema, in the worker as in the reasoner) and whose side effect comes from the
configuration: the operator's word per tool, else the server's annotations when the
operator trusts them, else the server's default (`destructive`). `McpRegistry` is the
built-in registry plus the tools of the servers this worker is connected to, as they
are now: a server that is down has no tools in the catalog.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import mcp_types
from agentry_shared.contracts.tools import SideEffect, ToolDescriptor
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict

from agentry_tool_runner.tools.mcp.config import SEPARATOR, McpConfig, ServerConfig, tool_name
from agentry_tool_runner.tools.registry import Registry
from agentry_tool_runner.tools.tool import Limits, Tool

log = logging.getLogger(__name__)

_MAX_DESCRIPTION = 2000
# A schema goes into every model request of every turn: larger ones are left out.
_MAX_SCHEMA_BYTES = 32 * 1024


class _ServerSchema(BaseModel):
    """Stands in for `Tool.params`: an MCP tool's arguments are checked against its JSON schema."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class McpTool(Tool):
    server: str = ""
    remote_name: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict)
    calls_per_minute: int = 0

    def validate_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Raises jsonschema's ValidationError; the arguments go to the server as they are."""
        Draft202012Validator(self.input_schema).validate(arguments)
        return arguments

    def descriptor(self, memory: str | None = None) -> ToolDescriptor:
        return ToolDescriptor(
            name=self.name,
            description=self.description,
            parameters=self.input_schema,
            side_effect=self.side_effect,
            pool=self.pool,
            timeout_seconds=self.timeout_seconds,
        )


def side_effect_of(server: ServerConfig, remote: str, annotations: mcp_types.ToolAnnotations | None) -> SideEffect:
    """The operator's word for the tool, else trusted annotations, else the server's default."""
    policy = server.tools.get(remote)
    if policy is not None and policy.side_effect is not None:
        return policy.side_effect
    if server.trust_annotations and annotations is not None:
        if annotations.read_only_hint:
            return "read_only"
        if annotations.idempotent_hint and annotations.destructive_hint is False:
            return "idempotent"
    return server.side_effect


def to_tool(server_name: str, server: ServerConfig, prefix: str, remote: mcp_types.Tool) -> McpTool | None:
    """The registry entry for one listed tool; None (logged) when it cannot be offered."""
    policy = server.tools.get(remote.name)
    if policy is not None and not policy.enabled:
        return None
    name = tool_name(prefix, remote.name)
    schema = _object_schema(remote.input_schema)
    if name is None or schema is None:
        log.warning(
            "MCP tool left out: its name or input schema cannot be offered",
            extra={"server": server_name, "tool": remote.name[:100]},
        )
        return None
    timeout = policy.timeout_seconds if policy and policy.timeout_seconds else server.timeout_seconds
    per_minute = policy.calls_per_minute if policy and policy.calls_per_minute is not None else server.calls_per_minute
    description = (remote.description or remote.title or remote.name).strip()[:_MAX_DESCRIPTION]
    return McpTool(
        name=name,
        description=f"{description} (from the MCP server {server_name!r})",
        params=_ServerSchema,
        implementation="agentry_tool_runner.tools.mcp.catalog:remote",
        side_effect=side_effect_of(server, remote.name, remote.annotations),
        pool=server.pool,
        timeout_seconds=timeout,
        limits=Limits(max_output_bytes=64 * 1024),
        backend="mcp",
        server=server_name,
        remote_name=remote.name,
        input_schema=schema,
        calls_per_minute=per_minute,
    )


def _object_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The server's schema as a function's `parameters`: an object, valid JSON Schema, at
    most `_MAX_SCHEMA_BYTES` of JSON."""
    if schema.get("type") != "object" or len(json.dumps(schema).encode()) > _MAX_SCHEMA_BYTES:
        return None
    schema = copy.deepcopy(schema)
    schema.setdefault("properties", {})
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return None
    return schema


class LiveTools(Protocol):
    def tools(self) -> Iterable[McpTool]:
        """The tools of the servers that are up now."""
        ...

    def known(self, name: str) -> McpTool | None:
        """A tool listed before, its server up or not (a call then says `unavailable`)."""
        ...


class McpRegistry(Registry):
    """The built-in tools plus the MCP tools of the moment."""

    def __init__(self, builtin: Registry, config: McpConfig, live: Callable[[], LiveTools | None]) -> None:
        super().__init__(builtin)
        clash = [tool.name for tool in builtin if SEPARATOR in tool.name]
        if clash:
            raise ValueError(f"built-in tool names must not contain {SEPARATOR!r}: {clash}")
        self.config = config
        self._live = live

    def get(self, name: str) -> Tool | None:
        builtin = super().get(name)
        live = self._live()
        if builtin is not None or live is None:
            return builtin
        return live.known(name)

    def __iter__(self) -> Iterator[Tool]:
        yield from super().__iter__()
        live = self._live()
        if live is not None:
            yield from live.tools()

    def pools(self) -> list[str]:
        return sorted({*super().pools(), *self.config.pools()})


def remote(**_: Any) -> str:
    """Never called: an MCP tool runs on its server (execution/mcp.py), not in a child."""
    raise RuntimeError("an MCP tool has no local implementation")
