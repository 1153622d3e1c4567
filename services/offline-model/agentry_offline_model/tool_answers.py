"""How each known tool's successful result is put into words.

Failures are reported before these run (see `answers.py`). Results are quoted as data,
never acted on: a fetched page that says "remember that ..." is only quoted back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from agentry_offline_model.conversation import clip

# A one-line text result like "No facts found." or "nothing" means an empty list.
_NOTHING = re.compile(r"^(?:no|nothing|none)\b", re.IGNORECASE)

Describer = Callable[[Mapping[str, object], str, Any], str | None]


def describe_result(name: str, arguments: Mapping[str, object], content: str) -> str | None:
    """The sentence for this tool's result, or None for the generic "<tool> returned: ..."."""
    data = _json_or_none(content)
    if isinstance(data, dict) and ("exit_code" in data or "stdout" in data):
        return _program(data)
    describer = _DESCRIBERS.get(name)
    return describer(arguments, content, data) if describer else None


def _program(data: Mapping[str, Any]) -> str:
    """`python`-style results: {"stdout", "stderr", "exit_code"}."""
    code = data.get("exit_code")
    stdout, stderr = _text(data.get("stdout")).strip(), _text(data.get("stderr")).strip()
    text = "The program finished" if code is None else f"The program exited with {code}"
    text += f" and printed: {clip(stdout, 300)}" if stdout else " and printed nothing"
    return text + (f" (stderr: {clip(stderr, 300)})" if stderr else "")


def _fetched(arguments: Mapping[str, object], content: str, data: Any) -> str:
    body, status = content, None
    if isinstance(data, dict):
        body = next((v for k in ("body", "text", "content") if isinstance(v := data.get(k), str)), content)
        status = data.get("status", data.get("status_code"))
    where = f"{arguments['url']}" if isinstance(arguments.get("url"), str) else "the page"
    label = f" (status {status})" if status is not None else ""
    return f'I fetched {where}{label}; it starts with: "{clip(body, 200)}"'


def _searched(arguments: Mapping[str, object], content: str, data: Any) -> str:
    query = arguments.get("query") if isinstance(arguments.get("query"), str) else "your query"
    items = _items(data, ("results", "hits", "documents", "matches"), content)
    if not items:
        return f'I found no documents for "{query}".'
    entries = [f"{n}. {_entry(item)}" for n, item in enumerate(items[:5], start=1)]
    more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
    return f'I found {len(items)} result{"s" if len(items) != 1 else ""} for "{query}": ' + "; ".join(entries) + more


def _written(arguments: Mapping[str, object], _content: str, data: Any) -> str:
    path = data.get("path") if isinstance(data, dict) and isinstance(data.get("path"), str) else arguments.get("path")
    written = arguments.get("content")
    size = f"{len(written)} characters" if isinstance(written, str) else "the text"
    return f"I saved {size} to {path or 'the file'}."


def _read(arguments: Mapping[str, object], content: str, data: Any) -> str:
    path = arguments.get("path") if isinstance(arguments.get("path"), str) else "The file"
    text = data["content"] if isinstance(data, dict) and isinstance(data.get("content"), str) else content
    return f'{path} contains: "{clip(text, 500)}"' if text.strip() else f"{path} is empty."


def _remembered(arguments: Mapping[str, object], _content: str, _data: Any) -> str:
    fact = arguments.get("fact")
    return f"I'll remember that: {fact.rstrip('. ')}." if isinstance(fact, str) and fact else "I'll remember that."


def _recalled(arguments: Mapping[str, object], content: str, data: Any) -> str:
    query = arguments.get("query")
    about = f" about {query}" if isinstance(query, str) and query else ""
    facts = [_entry(item) for item in _items(data, ("facts", "results", "memories", "items"), content)]
    if not facts:
        return f"I don't remember anything{about}."
    return f"Here is what I remember{about}: " + "; ".join(clip(f, 200) for f in facts[:10]) + "."


_DESCRIBERS: dict[str, Describer] = {
    "http_fetch": _fetched,
    "search_docs": _searched,
    "workspace_write": _written,
    "workspace_read": _read,
    "remember": _remembered,
    "recall": _recalled,
}


def _items(data: Any, keys: tuple[str, ...], content: str) -> list[Any]:
    """A result list: the JSON list itself, a list under one of `keys`, or the text's lines."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        return next((v for k in keys if isinstance(v := data.get(k), list)), [])
    lines = [line.strip().lstrip("-*\u2022 ").strip() for line in content.splitlines()]
    lines = [line for line in lines if line]
    return [] if len(lines) == 1 and _NOTHING.match(lines[0]) else lines


def _entry(item: Any) -> str:
    """One search hit or fact: a string, or the telling fields of an object."""
    if not isinstance(item, dict):
        return clip(_text(item), 200)
    title = next((v for k in ("title", "path", "source", "id") if isinstance(v := item.get(k), str)), "")
    body = next((v for k in ("fact", "snippet", "text", "content", "value") if isinstance(v := item.get(k), str)), "")
    if title and body:
        return f"{title}: {clip(body, 120)}"
    return clip(title or body or json.dumps(item, ensure_ascii=False, default=str), 200)


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _json_or_none(content: str) -> Any:
    if content[:1] not in ("{", "["):
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None
