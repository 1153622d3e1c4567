"""The tool catalog and tool calls, between the reasoner and the tool-runners."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from agentry_shared.contracts.errors import ToolErrorCode
from agentry_shared.contracts.scope import Scope

SideEffect = Literal["read_only", "idempotent", "destructive"]


class ToolDescriptor(BaseModel):
    """What the model and the reasoner know of a tool; the runner keeps how it runs."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str
    parameters: dict[str, Any]  # JSON schema, generated from the tool's pydantic model
    side_effect: SideEffect = "read_only"
    pool: str = "default"
    timeout_seconds: float = 10.0
    # A pure function of its arguments, run inside the tool-runner (no files, network or
    # code of the model's): a run has no effect, so it is neither claimed nor kept, and the
    # reasoner does not checkpoint a step's calls before running them when all are pure.
    pure: bool = False


class CatalogRequested(BaseModel):
    kind: Literal["tool.catalog_requested"] = "tool.catalog_requested"


class Catalog(BaseModel):
    kind: Literal["tool.catalog"] = "tool.catalog"
    tools: list[ToolDescriptor]


class ToolRequested(BaseModel):
    kind: Literal["tool.requested"] = "tool.requested"
    scope: Scope
    turn_id: str
    call_id: str = Field(min_length=1, max_length=128)
    tool: str
    arguments: dict[str, Any]
    # Unix time after which the result is useless to the caller (the runner may skip it).
    deadline: float
    traceparent: str | None = None


class ToolError(BaseModel):
    code: ToolErrorCode  # see errors.TOOL_ERROR_MEANINGS
    message: str


class ToolCompleted(BaseModel):
    kind: Literal["tool.completed"] = "tool.completed"
    call_id: str
    tool: str
    ok: bool
    output: str = ""
    error: ToolError | None = None
    duration_ms: int = 0
    # `rate_limited` only: when the same call may go again (a limit of the tool-runner's,
    # an MCP server's `calls_per_minute`); the reasoner hands it on in `tool.finished`.
    retry_after_ms: int | None = Field(default=None, ge=1)


ToolReply = Annotated[Catalog | ToolCompleted, Field(discriminator="kind")]
TOOL_REPLY: TypeAdapter[ToolReply] = TypeAdapter(ToolReply)
ToolRequest = Annotated[CatalogRequested | ToolRequested, Field(discriminator="kind")]
TOOL_REQUEST: TypeAdapter[ToolRequest] = TypeAdapter(ToolRequest)
