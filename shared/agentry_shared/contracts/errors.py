"""Every error code on the wire, as closed sets: a typo is a mypy error, an unknown code
on a contract model a validation error.

Each set is a `Literal`, followed by its `*_MEANINGS` dict: one line per value saying
what it means (for readers, docs and tests). Each dict is checked against its `Literal`
(`typing.get_args`) when this module is imported, so the two cannot drift apart.

Codes are only ever added, never renamed or removed: memory keeps frames and tool results
for a long time (and messages wait in queues across deploys), and a stored code that left
its set would no longer parse. A new code must reach every reader (the services that
parse the model) before a writer sends it. `docs/protocol.md` documents the client `error` codes, the
`turn.failed` codes and the tool error codes; shared/tests/test_error_codes.py checks
that it lists exactly these sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

# ---- `error` frames: the client sent something the gateway refuses (frames.ErrorFrame) --

ClientErrorCode = Literal[
    "invalid_json",
    "invalid_frame",
    "unknown_type",
    "invalid_message",
    "invalid_cancel",
    "invalid_resume",
    "invalid_approve",
    "invalid_reauth",
    "invalid_list_conversations",
    "text_too_long",
    "frame_too_large",
    "binary_not_supported",
    "rate_limited",
    "forbidden",
    "unavailable",
    "not_found",
    "turn_not_active",
    "approval_expired",
    "approval_already_decided",
    "approval_args_mismatch",
    "resume_gap",
    "resume_required",
    "token_expired",
    "reauth_refused",
    "internal",
    "socket_limit",
    "follow_limit",
    "conversation_limit",
    "budget_exceeded",
]

CLIENT_ERROR_MEANINGS: Final[dict[ClientErrorCode, str]] = {
    "invalid_json": "the frame is not JSON",
    "invalid_frame": "JSON, but not an object, or holding a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape)",
    "unknown_type": "`type` missing or not one of the client frames",
    "invalid_message": "a field of the `message` frame is missing, empty, of the wrong type, out of range, or unknown",
    "invalid_cancel": "a field of the `cancel` frame is missing, empty, of the wrong type, out of range, or unknown",
    "invalid_resume": "a field of the `resume` frame is missing, empty, of the wrong type, out of range, or unknown",
    "invalid_approve": (
        "a field of the `approve` frame is missing (it must echo `turn_id`, `call_id` and `args_sha256`"
        " of its `tool.approval_required`), empty, of the wrong type, out of range, or unknown"
    ),
    "invalid_reauth": "a field of the `reauth` frame is missing, empty, of the wrong type, out of range, or unknown",
    "invalid_list_conversations": (
        "a field of the `list_conversations` frame is of the wrong type, out of range (`limit` 1 to 200), or unknown"
    ),
    "text_too_long": "`text` is over GATEWAY_MAX_TEXT_CHARS",
    "frame_too_large": "the frame is over GATEWAY_MAX_FRAME_BYTES",
    "binary_not_supported": "a binary frame",
    "rate_limited": (
        "more than GATEWAY_MAX_FRAMES_PER_SECOND frames per second; or a `message` over a turn budget"
        " (BUDGET_*_TURNS_PER_MINUTE, BUDGET_*_CONCURRENT_TURNS): not accepted, retry after `retry_after_ms`"
    ),
    "forbidden": "the conversation (or turn, or call) belongs to another user",
    "unavailable": "the broker or memory did not confirm in time: not done, send it again",
    "not_found": (
        "cancel: no such turn; approve: no such call of that turn (and conversation) awaits approval;"
        " message, resume: no such conversation"
    ),
    "turn_not_active": "cancel: the turn has already ended",
    "approval_expired": "approve: too late, the call was denied",
    "approval_already_decided": "approve: the call was decided the other way before; that decision stands",
    "approval_args_mismatch": (
        "approve: `args_sha256` is not the digest of the call's arguments: the user was shown other arguments;"
        " nothing was recorded"
    ),
    "resume_gap": "resume: frames up to a seq expired; the replay goes on with the kept ones",
    "resume_required": "the frames missed during a broker outage could not be fetched: send `resume`",
    "token_expired": "the socket's token expired (no `reauth` in time): the last frame; the socket closes with 4401",
    "reauth_refused": "reauth: the token is invalid, expired, or for another user; the old expiry stands",
    "internal": "the gateway failed on the frame (a bug, logged): it was not done; the socket stays open",
    "socket_limit": "the user has GATEWAY_MAX_SOCKETS_PER_USER sockets open on this gateway: this one is closed (1008)",
    "follow_limit": "this socket follows GATEWAY_MAX_FOLLOWED_CONVERSATIONS conversations: use another socket",
    "conversation_limit": "the user has MEMORY_MAX_CONVERSATIONS_PER_USER conversations: no new one is created",
    "budget_exceeded": (
        "message: the user or tenant used its model tokens of the day (BUDGET_*_TOKENS_PER_DAY): not accepted;"
        " `retry_after_ms` until the day (UTC) ends"
    ),
}

# Schema failures of a client frame are reported as `invalid_<type>`, by frame type.
INVALID_CLIENT_FRAME: Final[dict[str, ClientErrorCode]] = {
    "message": "invalid_message",
    "cancel": "invalid_cancel",
    "resume": "invalid_resume",
    "approve": "invalid_approve",
    "reauth": "invalid_reauth",
    "list_conversations": "invalid_list_conversations",
}

# ---- memory RPC failures (memory.MemoryFailure) ------------------------------------------

MemoryFailureCode = Literal[
    "invalid",
    "forbidden",
    "not_found",
    "unsupported",
    "internal",
    "limit_reached",
]

MEMORY_FAILURE_MEANINGS: Final[dict[MemoryFailureCode, str]] = {
    "invalid": "the request does not parse or breaks a rule of its contract",
    "forbidden": "the conversation belongs to another tenant or user",
    "not_found": "no such conversation, turn, tool call or approval",
    "unsupported": "a request this memory version does not implement",
    "internal": "the memory service failed (a bug, or its store); try again",
    "limit_reached": "a per-user limit (MEMORY_MAX_CONVERSATIONS_PER_USER): nothing was created",
}

# ---- `turn.failed` frames: the turn ended without an answer (frames.FrameError) --------

TurnFailureCode = Literal[
    "model_unavailable",
    "model_error",
    "context_too_long",
    "step_limit",
    "deadline_exceeded",
    "memory_unavailable",
    "memory_invalid",
    "memory_forbidden",
    "memory_not_found",
    "memory_unsupported",
    "memory_internal",
    "memory_limit_reached",
    "cancelled",
    "poison",
    "internal",
]

TURN_FAILURE_MEANINGS: Final[dict[TurnFailureCode, str]] = {
    "model_unavailable": (
        "the model could not be reached, answered 5xx, was too slow, or broke off its answer (after retries)"
    ),
    "model_error": "the model refused the request (4xx)",
    "context_too_long": "the conversation does not fit the model's context window, even with older messages left out",
    "step_limit": "the agent used REASONER_MAX_STEPS model steps without a final answer",
    "deadline_exceeded": "the turn ran past REASONER_TURN_DEADLINE_SECONDS",
    "memory_unavailable": "the memory service did not answer",
    "memory_invalid": "the memory service refused a request of the turn as invalid",
    "memory_forbidden": "the memory service says the conversation belongs to another user",
    "memory_not_found": "the memory service does not know the conversation or turn",
    "memory_unsupported": "the memory service does not implement a request the turn needs",
    "memory_internal": "the memory service failed, or answered something unexpected",
    "memory_limit_reached": "the memory service refused to create something past a per-user limit",
    "cancelled": "the user cancelled the turn (a `cancel` frame)",
    "poison": "the turn was dead-lettered: it failed on repeated attempts",
    "internal": "a bug; the logs carry the turn_id",
}

# A memory failure that ends a turn: `turn.failed` code `memory_<code>`.
MEMORY_TURN_FAILURE: Final[dict[MemoryFailureCode, TurnFailureCode]] = {
    "invalid": "memory_invalid",
    "forbidden": "memory_forbidden",
    "not_found": "memory_not_found",
    "unsupported": "memory_unsupported",
    "internal": "memory_internal",
    "limit_reached": "memory_limit_reached",
}

# ---- tool errors: what the model reads instead of a tool's output (tools.ToolError) ----

ToolErrorCode = Literal[
    "unknown_tool",
    "invalid_arguments",
    "not_approved",
    "rate_limited",
    "tool_limit",
    "deadline_exceeded",
    "timeout",
    "output_too_large",
    "failed",
    "denied",
    "sandbox_unavailable",
    "crashed",
    "cancelled",
    "interrupted",
    "unavailable",
    MemoryFailureCode,  # a memory tool's failure, passed through as it came
]

TOOL_ERROR_MEANINGS: Final[dict[ToolErrorCode, str]] = {
    "unknown_tool": "the model named no such tool",
    "invalid_arguments": "the arguments are not JSON or do not match the tool's schema",
    "not_approved": "a destructive call the user denied, or did not approve before it expired or its turn failed",
    "rate_limited": (
        "the user called this tool more than REASONER_TOOL_CALLS_PER_MINUTE times in a minute, or its MCP"
        " server's calls_per_minute was used up on the tool-runner; retry after `retry_after_ms`"
    ),
    "tool_limit": "the turn asked for more than REASONER_MAX_TOOL_CALLS_PER_TURN tool calls",
    "deadline_exceeded": "the request's deadline passed before it was run",
    "timeout": "the tool ran longer than its timeout (or no runner answered in time)",
    "output_too_large": "the tool wrote more output than it may",
    "failed": "the tool raised; the message says why",
    "denied": "the tool's policy forbids it (a host not on the allowlist, a path out of the workspace)",
    "sandbox_unavailable": "the tool needs the sandbox, which this worker does not have",
    "crashed": "the tool's process died by a signal, exited without a result, or could not start",
    "cancelled": "the turn was cancelled; the call was stopped (or, awaiting approval, never ran)",
    "interrupted": (
        "a destructive call whose runner died while running it, or a call whose turn failed while it ran:"
        " it may or may not have taken effect"
    ),
    "unavailable": "not run: memory did not answer, or the tool's MCP server is down or not connected",
    "invalid": "a memory tool: memory refused the request as invalid",
    "forbidden": "a memory tool: the conversation belongs to another user",
    "not_found": "a memory tool: memory does not know the conversation",
    "unsupported": "a memory tool: memory does not implement this request",
    "internal": "a memory tool: memory failed",
    "limit_reached": "a memory tool: a per-user limit of memory was reached",
}


# ---- the OpenAI-compatible endpoint (`{"error": {"code": ...}}`, docs/openai.md) -------------
# Its own refusals; a turn that fails carries its TurnFailureCode as the `code` instead.

OpenAIErrorCode = Literal[
    "invalid_request",
    "unsupported_parameter",
    "model_not_found",
    "text_too_long",
    "request_too_large",
    "invalid_token",
    "invalid_identity",
    "forbidden",
    "not_found",
    "rate_limited",
    "concurrency_limit",
    "conversation_limit",
    "budget_exceeded",
    "unavailable",
    "internal",
]

OPENAI_ERROR_MEANINGS: Final[dict[OpenAIErrorCode, str]] = {
    "invalid_request": "400: the body is not a chat request (not JSON, a field of the wrong type, no user message)",
    "unsupported_parameter": "400: a parameter the agent cannot honour (`n` other than 1, client `tools`)",
    "model_not_found": "404: `model` is not GATEWAY_OPENAI_MODEL_NAME (GET /v1/models lists it)",
    "text_too_long": "400: the turn's text is over GATEWAY_MAX_TEXT_CHARS",
    "request_too_large": "413: the body is over GATEWAY_MAX_FRAME_BYTES",
    "invalid_token": "401: no token, or a bad or expired one",
    "invalid_identity": "400: the user or tenant is not a valid id",
    "forbidden": "403: the conversation belongs to another user",
    "not_found": "404: no such conversation (ids are issued by the server) or path",
    "rate_limited": (
        "429: over GATEWAY_MAX_FRAMES_PER_SECOND requests per second for this user, or over a turn budget"
        " (BUDGET_*_TURNS_PER_MINUTE, BUDGET_*_CONCURRENT_TURNS); see Retry-After"
    ),
    "concurrency_limit": "429: this user has GATEWAY_MAX_SOCKETS_PER_USER requests open here; see Retry-After",
    "conversation_limit": "429: the user has MEMORY_MAX_CONVERSATIONS_PER_USER conversations; no new one starts",
    "budget_exceeded": "429: the user or tenant used its tokens of the day (BUDGET_*_TOKENS_PER_DAY); see Retry-After",
    "unavailable": "503: the broker, memory or the identity provider did not answer: not done, retry",
    "internal": "500: the gateway failed (a bug, logged): not done",
}


def codes(code_type: Any) -> frozenset[str]:
    """The values of one of the Literal sets above."""
    return frozenset(get_args(code_type))


def _check(code_type: Any, keyed: Mapping[Any, object], name: str) -> None:
    missing, extra = codes(code_type) - set(keyed), set(keyed) - codes(code_type)
    if missing or extra:
        detail = f"missing {sorted(missing)}, extra {sorted(extra)}"
        raise AssertionError(f"{name} must key exactly the values of its Literal: {detail}")


_check(ClientErrorCode, CLIENT_ERROR_MEANINGS, "CLIENT_ERROR_MEANINGS")
_check(MemoryFailureCode, MEMORY_FAILURE_MEANINGS, "MEMORY_FAILURE_MEANINGS")
_check(TurnFailureCode, TURN_FAILURE_MEANINGS, "TURN_FAILURE_MEANINGS")
_check(ToolErrorCode, TOOL_ERROR_MEANINGS, "TOOL_ERROR_MEANINGS")
_check(MemoryFailureCode, MEMORY_TURN_FAILURE, "MEMORY_TURN_FAILURE")
_check(OpenAIErrorCode, OPENAI_ERROR_MEANINGS, "OPENAI_ERROR_MEANINGS")
