"""The offline model's "mind": pure, deterministic rules from a chat request to a reply.

No I/O and no randomness, so the same request always gets the same reply (tool call ids
included) and tests can assert exact behaviour. The server decides how to deliver it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentry_offline_model.answers import answer_tool_results, answer_with_context, echo
from agentry_offline_model.arithmetic import find_expressions
from agentry_offline_model.conversation import offered_tool_names, role_of, text_of

# Starts the first reasoning chunk, so tests can prove reasoning never reaches end users.
REASONING_SENTINEL = "[reasoning]"
MAX_DELAY_S = 120.0
MAX_CALCULATIONS = 4

_MODEL_ERROR = "[[model-error]]"
_MODEL_SLOW = re.compile(r"\[\[model-slow:(\d+(?:\.\d+)?)\]\]")
_TIME_CUES = ("what time", "current time", "what's the date", "what is the date", "today's date")
_PREVIOUS_CUES = ("previous question", "previous message", "what did i ask", "what did i say")


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True)
class Reply:
    """Reasoning chunks, then either `tool_calls` or `text`; plus failure-injection knobs."""

    reasoning: list[str]
    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    # Test hooks: the server answers with this HTTP status, or waits before the first chunk.
    fail_status: int | None = None
    delay_s: float = 0.0


def reply_to(messages: Sequence[object], tools: Sequence[object] | None = None) -> Reply:
    """Applies the rules in order: tool results, arithmetic, time, previous message, echo."""
    msgs = list(messages) if isinstance(messages, Sequence) and not isinstance(messages, str) else []
    offered = offered_tool_names(tools)
    user_indexes = [i for i, m in enumerate(msgs) if role_of(m) == "user"]
    user_text = text_of(msgs[user_indexes[-1]]) if user_indexes else ""
    fail_status = 500 if _MODEL_ERROR in user_text else None
    slow = _MODEL_SLOW.search(user_text)
    delay_s = min(float(slow.group(1)), MAX_DELAY_S) if slow else 0.0

    if msgs and role_of(msgs[-1]) == "tool":
        reasoning, text = answer_tool_results(msgs)
        return _reply([_first(reasoning[0]), *reasoning[1:]], text, [], fail_status, delay_s)
    if not user_indexes:
        first = _first("There is no user message to answer. ")
        text = "I received no user message, so there is nothing to answer yet."
        return _reply([first, "I will say so plainly. "], text, [], fail_status, delay_s)

    words = len(user_text.split())
    reasoning = [_first(f"The user wrote {words} word{'s' if words != 1 else ''}. ")]
    lowered = user_text.lower().replace("\u2019", "'")
    expressions = find_expressions(user_text, MAX_CALCULATIONS)
    calls: list[tuple[str, dict[str, str]]] = []
    if expressions and "calculator" in offered:
        reasoning.append("It contains arithmetic, so the calculator tool fits. ")
        calls = [("calculator", {"expression": e}) for e in expressions]
    elif expressions:
        reasoning.append("It contains arithmetic, but no calculator tool is offered. ")
    if not calls and "current_time" in offered and any(cue in lowered for cue in _TIME_CUES):
        reasoning.append("It asks for the time or date, so the current_time tool fits. ")
        calls = [("current_time", {})]
    if calls:
        reasoning.append(f"I will make {len(calls)} tool call{'s' if len(calls) != 1 else ''}. ")
        tool_calls = [
            ToolCall(_call_id(msgs, i), name, json.dumps(args, ensure_ascii=False))
            for i, (name, args) in enumerate(calls)
        ]
        return _reply(reasoning, None, tool_calls, fail_status, delay_s)

    if any(cue in lowered for cue in _PREVIOUS_CUES):
        reasoning.append("It asks about an earlier message, so I look back in the context. ")
        text = answer_with_context(msgs, user_indexes)
    else:
        reasoning.append("No rule matches it, so I echo it back. ")
        earlier = sum(1 for m in msgs[: user_indexes[-1]] if role_of(m) not in ("system", "developer"))
        text = echo(user_text, earlier)
    reasoning.append("I will answer in plain text. ")
    return _reply(reasoning, text, [], fail_status, delay_s)


def _first(chunk: str) -> str:
    return f"{REASONING_SENTINEL} {chunk}"


def _reply(reasoning: list[str], text: str | None, calls: list[ToolCall], fail: int | None, delay: float) -> Reply:
    return Reply(reasoning=reasoning[:4], text=text, tool_calls=calls, fail_status=fail, delay_s=delay)


def _call_id(messages: Sequence[object], index: int) -> str:
    """Same request, same ids; the index keeps the calls of one reply distinct."""
    try:
        canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        canonical = repr(messages)
    digest = hashlib.sha256(f"{canonical}#{index}".encode("utf-8", "replace")).hexdigest()
    return f"call_{digest[:24]}"
