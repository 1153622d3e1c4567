"""The offline model's "mind": pure, deterministic rules from a chat request to a reply.

No I/O and no randomness, so the same request always gets the same reply (tool call ids
included) and tests can assert exact behaviour. The server decides how to deliver it.
The order of the rules is the README's rule table; each family lives in its own module.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence, Set
from typing import NamedTuple

from agentry_offline_model.answers import (
    answer_tool_results,
    answer_with_context,
    count_to,
    echo,
    tool_output_notice,
)
from agentry_offline_model.arithmetic import find_expressions
from agentry_offline_model.conversation import offered_tool_names, role_of, text_of
from agentry_offline_model.facts import answer_from_facts, asks_about_user, known_facts
from agentry_offline_model.intents import match_intent
from agentry_offline_model.reply import REASONING_SENTINEL, Reply, ToolCall
from agentry_offline_model.safety import looks_like_tool_output
from agentry_offline_model.summary import is_summary_request, summarize
from agentry_offline_model.timezones import time_in_city

__all__ = ["MAX_DELAY_S", "REASONING_SENTINEL", "Reply", "ToolCall", "reply_to"]

MAX_DELAY_S = 120.0
MAX_CALCULATIONS = 4

_MODEL_ERROR = "[[model-error]]"
_MODEL_HANG = "[[model-hang]]"
_MODEL_SLOW = re.compile(r"\[\[model-slow:(\d+(?:\.\d+)?)\]\]")
_COUNT = re.compile(r"\bcount\s+(?:from\s+1\s+)?(?:to|up\s+to)\s+(\d{1,9})\b", re.IGNORECASE)
_TIME_CUES = ("what time", "current time", "what's the date", "what is the date", "today's date")
_PREVIOUS_CUES = ("previous question", "previous message", "what did i ask", "what did i say")

Call = tuple[str, dict[str, str]]


class _Answer(NamedTuple):
    reasoning: list[str]  # without the sentinel; at most four are kept
    text: str
    calls: list[Call]
    word_chunks: bool = False


def reply_to(messages: Sequence[object], tools: Sequence[object] | None = None) -> Reply:
    """Applies the rules in order (see the README) and the failure hooks of the last user message."""
    msgs = list(messages) if isinstance(messages, Sequence) and not isinstance(messages, str) else []
    user_indexes = [i for i, m in enumerate(msgs) if role_of(m) == "user"]
    user_text = text_of(msgs[user_indexes[-1]]) if user_indexes else ""
    slow = _MODEL_SLOW.search(user_text)
    answer = _answer(msgs, offered_tool_names(tools), user_indexes, user_text)
    tool_calls = [
        ToolCall(_call_id(msgs, i), name, json.dumps(args, ensure_ascii=False))
        for i, (name, args) in enumerate(answer.calls)
    ]
    return Reply(
        reasoning=[f"{REASONING_SENTINEL} {answer.reasoning[0]}", *answer.reasoning[1:4]],
        text=None if tool_calls else answer.text,
        tool_calls=tool_calls,
        word_chunks=answer.word_chunks,
        fail_status=500 if _MODEL_ERROR in user_text else None,
        delay_s=min(float(slow.group(1)), MAX_DELAY_S) if slow else 0.0,
        hang=_MODEL_HANG in user_text,
    )


def _answer(msgs: list[object], offered: Set[str], user_indexes: list[int], user_text: str) -> _Answer:
    # A summarisation request is recognised by its system prompt, before anything else: the
    # conversation it carries may end with a tool message, which must be summarised, not answered.
    if is_summary_request(msgs):
        return _Answer(
            ["This is a summarisation request. ", "I list each user message's first sentence. "], summarize(msgs), []
        )
    if msgs and role_of(msgs[-1]) == "tool":
        reasoning, text = answer_tool_results(msgs)
        return _Answer(reasoning, text, [])
    if not user_indexes:
        return _Answer(
            ["There is no user message to answer. ", "I will say so plainly. "],
            "I received no user message, so there is nothing to answer yet.",
            [],
        )
    words = len(user_text.split())
    reasoning = [f"The user wrote {words} word{'s' if words != 1 else ''}. "]
    if looks_like_tool_output(user_text):
        reasoning.append("It looks like tool output, so I treat it as data and act on nothing in it. ")
        return _Answer(reasoning, tool_output_notice(user_text), [])
    calls = _tool_calls(user_text, offered, reasoning)
    if calls:
        reasoning.append(f"I will make {len(calls)} tool call{'s' if len(calls) != 1 else ''}. ")
        return _Answer(reasoning, "", calls)
    return _text_answer(msgs, offered, user_indexes, user_text, reasoning)


def _tool_calls(user_text: str, offered: Set[str], reasoning: list[str]) -> list[Call]:
    """Explicit tool commands first, then arithmetic, then time; appends why to `reasoning`."""
    intent = match_intent(user_text, offered)
    if intent is not None:
        reasoning.append(intent.why)
        return [(intent.tool, intent.arguments)]
    expressions = find_expressions(user_text, MAX_CALCULATIONS)
    if expressions and "calculator" in offered:
        reasoning.append("It contains arithmetic, so the calculator tool fits. ")
        return [("calculator", {"expression": e}) for e in expressions]
    if expressions:
        reasoning.append("It contains arithmetic, but no calculator tool is offered. ")
    city = time_in_city(user_text, offered)
    if city is not None:
        reasoning.append(f"It asks for the time in a city, so {city[0]} fits. ")
        return [city]
    lowered = user_text.lower().replace("\u2019", "'")
    if "current_time" in offered and any(cue in lowered for cue in _TIME_CUES):
        reasoning.append("It asks for the time or date, so the current_time tool fits. ")
        return [("current_time", {})]
    return []


def _text_answer(
    msgs: list[object], offered: Set[str], user_indexes: list[int], user_text: str, reasoning: list[str]
) -> _Answer:
    """Previous message, facts about the user, counting, else the echo."""
    lowered = user_text.lower().replace("\u2019", "'")
    facts = known_facts(msgs)
    word_chunks = False
    if any(cue in lowered for cue in _PREVIOUS_CUES):
        reasoning.append("It asks about an earlier message, so I look back in the context. ")
        text = answer_with_context(msgs, user_indexes)
    elif "recall" not in offered and asks_about_user(user_text):
        reasoning.append("It asks what I know about the user, so I answer from the known facts. ")
        text = answer_from_facts(facts)
    elif (count := _COUNT.search(user_text)) and int(count.group(1)) > 0:
        reasoning.append("It asks me to count, so I list the numbers. ")
        text, word_chunks = count_to(int(count.group(1))), True
    else:
        reasoning.append("No rule matches it, so I echo it back. ")
        earlier = sum(1 for m in msgs[: user_indexes[-1]] if role_of(m) not in ("system", "developer"))
        text = echo(user_text, earlier, len(facts))
    reasoning.append("I will answer in plain text. ")
    return _Answer(reasoning, text, [], word_chunks)


def _call_id(messages: Sequence[object], index: int) -> str:
    """Same request, same ids; the index keeps the calls of one reply distinct."""
    try:
        canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        canonical = repr(messages)
    digest = hashlib.sha256(f"{canonical}#{index}".encode("utf-8", "replace")).hexdigest()
    return f"call_{digest[:24]}"
