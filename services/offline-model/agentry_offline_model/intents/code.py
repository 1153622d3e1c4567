"""Intents for the developer tools: run a Python code block, fetch a URL, search the docs."""

from __future__ import annotations

import re

from agentry_offline_model.intents.base import Intent, tidy

# A fenced block: ``` with an optional language tag on the opening line, or all on one line.
_FENCE = re.compile(r"```[^\S\n]*([\w+.-]*)[^\S\n]*\n(.*?)```", re.DOTALL)
_ONE_LINE_FENCE = re.compile(r"```([^`\n]+)```")
_PYTHON_TAGS = ("", "python", "py", "python3")
_RUN_CUES = re.compile(r"\b(?:run|execute|exec|evaluate|python)\b", re.IGNORECASE)

_FETCH = re.compile(
    r"\b(?:fetch|get|download)\s+(?:(?:me|the|this|page|url|file|contents?|of|at|from)\s+){0,4}"
    r"<?(https?://[^\s<>\"'`]+)",
    re.IGNORECASE,
)

_DOCS = r"(?:docs|documentation|doc)"
_SEARCH = (
    re.compile(rf"\bsearch\s+(?:in\s+|through\s+)?(?:the\s+)?{_DOCS}\s+(?:for|about|on)\s+(.+)", re.IGNORECASE),
    re.compile(rf"\bsearch\s+(?:the\s+)?{_DOCS}\s*:\s*(.+)", re.IGNORECASE),
    re.compile(rf"\blook\s+up\s+(.+?)\s+in\s+the\s+{_DOCS}\b", re.IGNORECASE),
)


def run_python(text: str) -> Intent | None:
    """A Python (or untagged) fenced block plus a word like "run" or "python" outside it."""
    code = ""
    for match in _FENCE.finditer(text):
        if match.group(1).lower() in _PYTHON_TAGS and match.group(2).strip():
            code = match.group(2).strip("\n").rstrip()
            break
    prose = _FENCE.sub(" ", text)
    if not code and (one_line := _ONE_LINE_FENCE.search(prose)) and one_line.group(1).strip():
        code = one_line.group(1).strip()
    if not code or not _RUN_CUES.search(_ONE_LINE_FENCE.sub(" ", prose)):
        return None
    return Intent("python", {"code": code}, "It asks to run a code block, so the python tool fits. ")


def fetch_url(text: str) -> Intent | None:
    """ "fetch/get/download <http(s) URL>"; closing punctuation is not part of the URL."""
    match = _FETCH.search(text)
    if match is None:
        return None
    url = match.group(1).rstrip(".,;:!?>")
    while url.endswith(")") and url.count(")") > url.count("("):
        url = url[:-1]
    return Intent("http_fetch", {"url": url}, "It asks for a web page, so the http_fetch tool fits. ")


def search_docs(text: str) -> Intent | None:
    """ "search the docs for X", "search docs: X", "look up X in the docs"."""
    for pattern in _SEARCH:
        match = pattern.search(text)
        if match and (query := tidy(match.group(1))):
            return Intent("search_docs", {"query": query}, "It asks to search the docs, so search_docs fits. ")
    return None
