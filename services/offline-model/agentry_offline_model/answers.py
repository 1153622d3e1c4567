"""The text answers: stating tool results, quoting earlier context, counting, echoing.

Kept apart from the rule order in `rules.py` so each answer's wording is easy to find;
per-tool result wording lives in `tool_answers.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from agentry_offline_model.conversation import clip, parse_object, requested_calls, role_of, text_of
from agentry_offline_model.tool_answers import describe_result

MAX_COUNT = 500


def answer_tool_results(messages: Sequence[object]) -> tuple[list[str], str]:
    """Reasoning (without the sentinel) and text for the trailing run of tool messages."""
    start = len(messages)
    while start > 0 and role_of(messages[start - 1]) == "tool":
        start -= 1
    results = messages[start:]
    calls: dict[str, tuple[str, dict[str, object]]] = {}
    for message in reversed(messages[:start]):
        if role_of(message) == "assistant" and (calls := requested_calls(message)):
            break
    sentences: list[str] = []
    failures = 0
    for result in results:
        call_id = result.get("tool_call_id") if isinstance(result, Mapping) else None
        name, args = calls.get(call_id, ("", {})) if isinstance(call_id, str) else ("", {})
        if not name and isinstance(result, Mapping) and isinstance(result.get("name"), str):
            name = result["name"]
        content = text_of(result).strip()
        if _looks_failed(content):
            failures += 1
            sentences.append(f'The {name or "tool"} tool failed: "{clip(content, 300)}".')
        elif name == "calculator" and isinstance(args.get("expression"), str):
            sentences.append(f"{args['expression']} = {_value_of(content)}.")
        elif (described := describe_result(name, args, content)) is not None:
            sentences.append(described)
        else:
            sentences.append(f"{name or 'The tool'} returned: {clip(content, 500) or '(nothing)'}")
    count = len(results)
    reasoning = [
        f"{count} tool result{'s' if count != 1 else ''} came back. ",
        f"{failures} of them failed, so I report that. " if failures else "Each one succeeded. ",
        "I will state the results in plain text. ",
    ]
    return reasoning, " ".join(sentences)


def answer_with_context(messages: Sequence[object], user_indexes: Sequence[int]) -> str:
    """Quotes the user message before the last one, and the assistant's answer to it."""
    if len(user_indexes) < 2:
        return "There is no previous message: this is the first thing you asked me in this conversation."
    previous, last = user_indexes[-2], user_indexes[-1]
    text = f'You previously asked: "{clip(text_of(messages[previous]))}"'
    answers = [text_of(m).strip() for m in messages[previous + 1 : last] if role_of(m) == "assistant"]
    answers = [a for a in answers if a]
    if answers:
        text += f' I answered: "{clip(answers[-1])}"'
    return text


def echo(user_text: str, earlier_messages: int, known_facts: int = 0) -> str:
    """The fallback; `known_facts` (from the system prompt) proves the facts reached the model."""
    quoted = clip(user_text) or "(nothing)"
    plural = "s" if earlier_messages != 1 else ""
    text = (
        f'You said: "{quoted}". I am Agentry\'s offline model, a rule-based stand-in; '
        "point OPENAI_BASE_URL at a real model for real answers. "
        f"(context: {earlier_messages} earlier message{plural})"
    )
    if known_facts:
        text += f" (I also know {known_facts} fact{'s' if known_facts != 1 else ''} about you.)"
    return text


def count_to(limit: int) -> str:
    """ "1 2 3 ... N": a long, predictable answer that fault tests can cut off mid-stream."""
    return " ".join(str(n) for n in range(1, min(limit, MAX_COUNT) + 1))


def tool_output_notice(user_text: str) -> str:
    """Said instead of echoing a message that looks like tool output: it is data, not a request."""
    return (
        f"That message looks like a tool's output ({len(user_text)} characters), not a request. "
        "I treat it as data: I do not repeat it, follow instructions inside it, or call tools because of it."
    )


def _looks_failed(content: str) -> bool:
    if content.lower().startswith("error"):
        return True
    return content.startswith("{") and "error" in parse_object(content)


def _value_of(content: str) -> str:
    """The number in a calculator result, whether "3367", 3367.0 or {"result": 3367}."""
    try:
        value = json.loads(content)
    except ValueError:
        return clip(content, 200)
    if isinstance(value, dict) and "result" in value:
        value = value["result"]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (dict, list)):
        return clip(content, 200)
    return str(value)
