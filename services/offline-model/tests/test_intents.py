"""The tool-command rules: each fires only when its tool is offered, in the documented order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentry_offline_model.intents import categorise
from agentry_offline_model.rules import Reply, reply_to

ALL: tuple[str, ...] = ("calculator", "current_time", "python", "http_fetch", "search_docs")
ALL += ("workspace_write", "workspace_read", "remember", "recall")


def tools(*names: str) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in names]


def calls(reply: Reply) -> list[tuple[str, dict[str, Any]]]:
    return [(call.name, json.loads(call.arguments_json)) for call in reply.tool_calls]


def ask(text: str, *offered: str) -> Reply:
    return reply_to([{"role": "user", "content": text}], tools(*(offered or ALL)))


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Please run this:\n```python\nprint(2+3)\n```", "print(2+3)"),
        ("```\nx = 37*91\n\nprint(x)\n```\nexecute it", "x = 37*91\n\nprint(x)"),
        ("python: ```py\n  for i in range(3):\n    print(i)\n```", "  for i in range(3):\n    print(i)"),
        ("run ```print('hi')``` for me", "print('hi')"),
    ],
)
def test_python_runs_the_fenced_code(text: str, code: str) -> None:
    reply = ask(text)
    assert calls(reply) == [("python", {"code": code})]
    assert reply.text is None


@pytest.mark.parametrize(
    "text",
    [
        "what does this do?\n```python\nprint(1)\n```",  # no run/execute/python outside the block
        "run this:\n```js\nconsole.log(1)\n```",  # another language
        "please run print(1)",  # no fenced block
    ],
)
def test_python_needs_a_python_block_and_a_cue(text: str) -> None:
    assert not any(name == "python" for name, _ in calls(ask(text)))


def test_python_wins_over_the_arithmetic_in_the_code() -> None:
    assert calls(ask("run\n```\nprint(6*7)\n```"))[0][0] == "python"
    assert calls(ask("run\n```\nprint(6*7)\n```", "calculator")) == [("calculator", {"expression": "(6*7)"})]


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("fetch https://example.com/items/3-4.", "https://example.com/items/3-4"),
        ("Can you get me the page at https://example.com/a_(b)?", "https://example.com/a_(b)"),
        ("download <http://x.org/f.tar.gz>", "http://x.org/f.tar.gz"),
    ],
)
def test_http_fetch_takes_the_url(text: str, url: str) -> None:
    assert calls(ask(text)) == [("http_fetch", {"url": url})]


def test_http_fetch_needs_an_http_url() -> None:
    assert calls(ask("fetch ftp://example.com/file", "http_fetch")) == []
    assert calls(ask("fetch me a coffee", "http_fetch")) == []


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("search the docs for rate limits?", "rate limits"),
        ('search docs: "circuit breaker"', "circuit breaker"),
        ("Look up retries in the documentation please", "retries"),
        ("search the documentation about dead letters", "dead letters"),
    ],
)
def test_search_docs_takes_the_query(text: str, query: str) -> None:
    assert calls(ask(text)) == [("search_docs", {"query": query})]


def test_workspace_write_keeps_the_content_verbatim() -> None:
    reply = ask('save "2+2=4\n  ok" to notes.txt.')
    assert calls(reply) == [("workspace_write", {"path": "notes.txt", "content": "2+2=4\n  ok"})]
    reply = ask("Write \u201chello world\u201d into the file out/greeting.md")
    assert calls(reply) == [("workspace_write", {"path": "out/greeting.md", "content": "hello world"})]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("read notes.txt", "notes.txt"),
        ("show me the contents of src/app.py", "src/app.py"),
        ("Please open and then read `report.md`!", "report.md"),
    ],
)
def test_workspace_read_takes_a_file_name(text: str, path: str) -> None:
    assert calls(ask(text)) == [("workspace_read", {"path": path})]


@pytest.mark.parametrize("text", ["read the docs", "open 3.5", "show me https://example.com", "read notes"])
def test_workspace_read_ignores_words_that_are_not_paths(text: str) -> None:
    assert calls(ask(text, "workspace_read")) == []


@pytest.mark.parametrize(
    ("text", "fact", "category"),
    [
        ("remember that I prefer tea over coffee.", "I prefer tea over coffee", "preference"),
        ("Remember: we decided to use RabbitMQ", "we decided to use RabbitMQ", "decision"),
        ("please remember that the next step is writing tests", "the next step is writing tests", "task"),
        ("remember that my cat is called Tom", "my cat is called Tom", "other"),
        ("remember that I can't recall names", "I can't recall names", "other"),
    ],
)
def test_remember_stores_the_fact_with_a_category(text: str, fact: str, category: str) -> None:
    assert calls(ask(text)) == [("remember", {"fact": fact, "category": category})]


@pytest.mark.parametrize(
    ("fact", "category"),
    [
        ("I never drink coffee", "preference"),
        ("my favourite editor is vim", "preference"),
        ("let's go with Postgres", "decision"),
        ("we will ship on Friday", "decision"),
        ("the migration is done", "task"),
        ("TODO: write the README", "task"),
        ("I am working on the gateway", "task"),
        ("the sky is blue", "other"),
        ("it is likely to rain", "other"),
    ],
)
def test_categorise(fact: str, category: str) -> None:
    assert categorise(fact) == category


def test_a_question_about_memory_is_not_a_request_to_remember() -> None:
    assert calls(ask("Do you remember that I like tea?", "remember")) == []


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("what do you remember about tea?", "tea"),
        ("What do you know about the deploy plan", "the deploy plan"),
        ("recall my preferences", "my preferences"),
        ("Could you recall \u201cproject X\u201d?", "project X"),
    ],
)
def test_recall_takes_the_query(text: str, query: str) -> None:
    assert calls(ask(text)) == [("recall", {"query": query})]


@pytest.mark.parametrize(
    ("text", "tool"),
    [
        ("run\n```python\nprint(1)\n```", "python"),
        ("fetch https://example.com", "http_fetch"),
        ("search the docs for retries", "search_docs"),
        ('save "hi" to notes.txt', "workspace_write"),
        ("read notes.txt", "workspace_read"),
        ("remember that I prefer tea", "remember"),
        ("what do you remember about tea", "recall"),
    ],
)
def test_no_tool_offered_means_no_call(text: str, tool: str) -> None:
    others = [name for name in ALL if name not in (tool, "calculator")]
    for offered in ([], others):
        reply = ask(text, *offered) if offered else reply_to([{"role": "user", "content": text}], [])
        assert reply.tool_calls == [] and reply.text, (offered, reply)


def test_command_order_workspace_write_then_remember_then_fetch() -> None:
    text = 'save "remember that fetch https://x.org is slow" to notes.txt'
    assert calls(ask(text))[0][0] == "workspace_write"
    assert calls(ask("remember that fetch https://x.org is slow"))[0][0] == "remember"
    assert calls(ask("fetch https://x.org/notes.txt"))[0][0] == "http_fetch"


def test_explicit_commands_come_before_arithmetic() -> None:
    assert calls(ask('save "2+2" to sums.txt')) == [("workspace_write", {"path": "sums.txt", "content": "2+2"})]
    assert calls(ask('save "2+2" to sums.txt', "calculator")) == [("calculator", {"expression": "2+2"})]
