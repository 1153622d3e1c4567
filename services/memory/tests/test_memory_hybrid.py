"""The hybrid context through MemoryRpc: a token-bounded window, the rolling summary made by
a model in the background, and the facts recalled for the new message."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from agentry_memory.context.assembler import ContextAssembler
from agentry_memory.context.llm import OpenAISummaryModel, without_thinking
from agentry_memory.context.summaries import SUMMARY_HEADER, Summarizer, SummaryModel
from agentry_memory.context.tokens import message_tokens
from agentry_memory.rpc.server import MemoryRpc
from agentry_memory.store import Store
from agentry_memory.store.knowledge import FACTS_HEADER
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.control import ControlMessage
from agentry_shared.contracts.facts import RememberFact
from agentry_shared.contracts.memory import MEMORY_REPLY, Context, GetContext
from agentry_shared.contracts.scope import Scope

BUDGET = 1000


class ScriptedSummaries:
    """A model passed in: `Summary:` plus each transcript line's first words, newest first."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None  # set: requests wait for it
        self.fail = False

    async def summarize(self, previous: str | None, transcript: str) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("model down")
        heads = "; ".join(
            line.split(":", 1)[1].strip()[:20] for line in transcript.splitlines() if line.startswith("user")
        )
        return f"Summary: {heads}" + (f" Previous summary: {previous.removeprefix('Summary: ')}" if previous else "")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def offline_model_url() -> Iterator[str]:
    """The offline model as a real process over real HTTP (skipped where it is not installed)."""
    executable = Path(sys.executable).parent / "agentry-offline-model"
    if not executable.exists():
        pytest.skip("agentry-offline-model is not installed")
    port = free_port()
    env = {**os.environ, "OFFLINE_MODEL_PORT": str(port), "OFFLINE_MODEL_CHUNK_DELAY_MS": "0", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([str(executable)], env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


@pytest.fixture(params=["scripted", "offline-model"])
async def model(request: pytest.FixtureRequest) -> AsyncIterator[SummaryModel]:
    if request.param == "scripted":
        yield ScriptedSummaries()
        return
    url = request.getfixturevalue("offline_model_url")
    real = OpenAISummaryModel(url, "offline", "agentry-offline", timeout=10)
    yield real
    await real.close()


def make_rpc(store: Store, model: SummaryModel, budget: int = BUDGET) -> tuple[MemoryRpc, Summarizer]:
    summarizer = Summarizer(store, model, trigger_tokens=100, batch_tokens=budget // 2, max_summary_tokens=budget // 4)
    assembler = ContextAssembler(
        store, window_messages=1000, window_tokens=budget, recall_facts=8, recall_tasks=5, summarizer=summarizer
    )

    async def broadcast(_: ControlMessage) -> None:
        return None

    return MemoryRpc(store, 1000, broadcast=broadcast, assembler=assembler), summarizer


async def get_context(rpc: MemoryRpc, scope: Scope, turn_id: str) -> Context:
    reply = MEMORY_REPLY.validate_json(
        await rpc.handle(GetContext(scope=scope, turn_id=turn_id).model_dump_json().encode())
    )
    assert isinstance(reply, Context), reply
    return reply


def tokens(messages: list[ChatMessage]) -> int:
    return sum(message_tokens(m) for m in messages)


async def test_200_turns_stay_in_the_budget_with_the_summary_and_the_facts(
    store: Store, scope: Scope, model: SummaryModel
) -> None:
    rpc, summarizer = make_rpc(store, model)
    await store.add_turn(scope, "t001", ChatMessage(role="user", content="Remember that I prefer green tea."))
    remember = RememberFact(scope=scope, turn_id="t001", fact="I prefer green tea", category="preference")
    await rpc.handle(remember.model_dump_json().encode())  # what the remember tool does
    await store.append_messages(scope, "t001", [ChatMessage(role="assistant", content="I'll remember that.")])
    for i in range(2, 200):
        turn_id = f"t{i:03}"
        await store.add_turn(scope, turn_id, ChatMessage(role="user", content=f"Question {i}: what is {i}*{i}?"))
        context = await get_context(rpc, scope, turn_id)
        assert tokens(context.messages) <= BUDGET
        await store.append_messages(scope, turn_id, [ChatMessage(role="assistant", content=f"{i}*{i} = {i * i}.")])
        if i % 50 == 0:
            await summarizer.wait_idle()  # the background catches up now and then, as it would
    await store.add_turn(scope, "t200", ChatMessage(role="user", content="Which tea do I prefer?"))
    await get_context(rpc, scope, "t200")
    await summarizer.wait_idle()
    context = await get_context(rpc, scope, "t200")

    assert tokens(context.messages) <= BUDGET
    summary, facts = context.messages[0], context.messages[1]
    assert summary.role == "system" and summary.content is not None
    assert summary.content.startswith(SUMMARY_HEADER + "\nSummary: ")
    assert facts.role == "system" and facts.content == f"{FACTS_HEADER}\n- I prefer green tea"
    assert context.messages[-1].content == "Which tea do I prefer?"
    window = [m for m in context.messages if m.role != "system"]
    assert 10 < len(window) < 100  # the budget, not the whole conversation
    kept = await store.summary(scope)
    first_in_window = int(window[0].content.split()[1].rstrip(":")) if window[0].role == "user" else 0  # type: ignore[union-attr]
    assert kept is not None and kept.through_turn >= first_in_window - 10  # caught up, up to the trigger


async def test_the_context_never_waits_for_the_summary(store: Store, scope: Scope) -> None:
    model = ScriptedSummaries()
    model.gate = asyncio.Event()
    rpc, summarizer = make_rpc(store, model, budget=300)
    for i in range(1, 40):
        await store.add_turn(scope, f"t{i}", ChatMessage(role="user", content=f"Question {i} " + "word " * 10))
        # Bounded: a context that waited for the held model would never come (a hang, not a failure).
        context = await asyncio.wait_for(get_context(rpc, scope, f"t{i}"), 1.0)
        assert not any(m.content and m.content.startswith(SUMMARY_HEADER) for m in context.messages)
    assert model.calls == 1  # one refresh in flight per conversation, not one per turn
    model.gate.set()
    await summarizer.wait_idle()
    context = await get_context(rpc, scope, "t39")
    assert context.messages[0].content and context.messages[0].content.startswith(SUMMARY_HEADER)


async def test_a_failing_model_leaves_the_window_and_rests(
    store: Store, scope: Scope, caplog: pytest.LogCaptureFixture
) -> None:
    model = ScriptedSummaries()
    model.fail = True
    rpc, summarizer = make_rpc(store, model, budget=300)
    for i in range(1, 30):
        await store.add_turn(scope, f"t{i}", ChatMessage(role="user", content=f"Question {i} " + "word " * 10))
        context = await get_context(rpc, scope, f"t{i}")
        await summarizer.wait_idle()
        assert tokens(context.messages) <= 300
    assert model.calls == 1  # failed once, then rests instead of calling on every turn
    assert "summary refresh failed" in caplog.text
    assert await store.summary(scope) is None


async def test_facts_told_in_one_conversation_are_recalled_in_the_next_never_for_another_user(
    store: Store, scope: Scope
) -> None:
    rpc, _ = make_rpc(store, ScriptedSummaries())
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="Remember that my favourite colour is teal."))
    remember = RememberFact(scope=scope, turn_id="t1", fact="My favourite colour is teal", category="preference")
    await rpc.handle(remember.model_dump_json().encode())
    question = ChatMessage(role="user", content="What is my favourite colour?")

    later = scope.model_copy(update={"conversation_id": scope.conversation_id + "-later"})
    await store.add_turn(later, "t2", question)
    context = await get_context(rpc, later, "t2")
    assert context.messages == [
        ChatMessage(role="system", content=f"{FACTS_HEADER}\n- My favourite colour is teal"),
        question,
    ]
    for owner in ({"user_id": "bob"}, {"tenant_id": "globex"}):
        stranger = scope.model_copy(update={"conversation_id": scope.conversation_id + "-x" + "".join(owner), **owner})
        await store.add_turn(stranger, "t3" + "".join(owner), question)
        assert (await get_context(rpc, stranger, "t3" + "".join(owner))).messages == [question]
    unrelated = ChatMessage(role="user", content="hello there")
    await store.add_turn(later, "t4", unrelated)
    assert (await get_context(rpc, later, "t4")).messages[-1] == unrelated
    assert all(m.role != "system" for m in (await get_context(rpc, later, "t4")).messages)


@pytest.mark.parametrize(
    ("content", "summary"),
    [
        ("<think>plan it</think>\n\nSummary: the user likes tea.", "Summary: the user likes tea."),
        ("plan it, opened by the template</think>Summary: tea.", "Summary: tea."),
        ("Summary: tea. <thinking>cut off mid-thought", "Summary: tea."),
        ("Summary: tea.", "Summary: tea."),
    ],
)
def test_inline_thinking_is_no_part_of_the_summary(content: str, summary: str) -> None:
    assert without_thinking(content) == summary


@pytest.mark.parametrize("dialect", ["inline-think", "vllm", "openai-reasoning"])
async def test_the_offline_models_dialects_give_summaries_without_thinking(
    offline_model_url: str, dialect: str
) -> None:
    real = OpenAISummaryModel(offline_model_url, "offline", f"agentry-offline@{dialect}", timeout=10)
    try:
        summary = await real.summarize(None, "user: I like green tea\nassistant: Noted.")
    finally:
        await real.close()
    assert summary and "<think>" not in summary and "</think>" not in summary and "[reasoning]" not in summary
