"""Memory: what assembling a turn's context costs on the embedded store, and recall's share.

One user with 10,000 messages (one conversation of 5,000 turns, a question and an answer
each) and 1,000 facts, in a SQLite file in a temporary directory (WAL, fsync on commit,
as in production). The context is the production assembler's: an 8,000-token window, the
rolling summary, 8 recalled facts and 5 open tasks. Rows (after 20 warm-up runs):

- context assembly: `ContextAssembler.assemble` (window + summary + recall + tasks), and
  the same through `MemoryRpc.handle` (request and reply JSON included, no broker);
- the window alone (`Store.context` with the token budget);
- recall alone (`recall_facts` for the new user message: FTS5 over the user's 1,000 facts),
  i.e. what recall costs per turn;
- writes, for scale: a turn (`add_turn`) and a fact (`remember_fact`, near-duplicate check
  included).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from agentry_memory.context.assembler import ContextAssembler
from agentry_memory.context.summaries import summary_message
from agentry_memory.context.tokens import message_tokens
from agentry_memory.rpc.server import MemoryRpc
from agentry_memory.store.sqlite import SqliteStore
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.control import ControlMessage
from agentry_shared.contracts.memory import GetContext
from agentry_shared.contracts.scope import Scope

TURNS, FACTS, RUNS, WARM_UP = 5_000, 1_000, 300, 20
WINDOW_TOKENS = 8_000
SCOPE = Scope(tenant_id="bench", user_id="bench", conversation_id="bench-conversation")
DRINKS = ["green tea", "black coffee", "oat milk lattes", "sparkling water", "jasmine tea", "espresso", "cocoa"]
TECH = ["RabbitMQ", "PostgreSQL", "MongoDB", "Redis", "Kafka", "SQLite", "Kubernetes", "Terraform", "gRPC"]
PARTS = ["billing", "search", "the gateway", "analytics", "the mobile app", "auth", "notifications", "reporting"]
NAMES = ["Rex", "Luna", "Milo", "Ada", "Otto", "Nora", "Kai", "Iris", "Theo", "Zoe"]
TIMES = ["morning", "afternoon", "evening", "weekend", "winter", "summer"]


def fact_texts(rng: random.Random) -> list[tuple[str, str]]:
    makers: list[Callable[[], tuple[str, str]]] = [
        lambda: (f"I prefer {rng.choice(DRINKS)} in the {rng.choice(TIMES)} (#{rng.randrange(10**6)})", "preference"),
        lambda: (f"We decided to use {rng.choice(TECH)} for {rng.choice(PARTS)} (#{rng.randrange(10**6)})", "decision"),
        lambda: (f"Task: migrate {rng.choice(PARTS)} to {rng.choice(TECH)} (#{rng.randrange(10**6)})", "task"),
        lambda: (f"My {rng.choice(['dog', 'cat', 'manager', 'sister'])} is called {rng.choice(NAMES)}", "other"),
    ]
    return [rng.choice(makers)() for _ in range(FACTS)]


def questions(rng: random.Random) -> list[str]:
    makers = [
        lambda: f"What do I usually drink in the {rng.choice(TIMES)}?",
        lambda: f"Which database did we pick for {rng.choice(PARTS)}?",
        lambda: f"Can you remind me how far the {rng.choice(PARTS)} migration is?",
        lambda: f"What is {rng.randrange(100)} times {rng.randrange(100)}?",
        lambda: f"Is {rng.choice(TECH)} a good fit for {rng.choice(PARTS)}?",
    ]
    return [rng.choice(makers)() for _ in range(RUNS + WARM_UP)]


async def load(store: SqliteStore, rng: random.Random) -> dict[str, list[float]]:
    writes: dict[str, list[float]] = {"turn": [], "fact": []}
    for i in range(1, TURNS + 1):
        question = ChatMessage(role="user", content=f"Question {i}: " + " ".join(rng.choices(TECH + PARTS, k=12)))
        answer = ChatMessage(role="assistant", content=f"Answer {i}: " + " ".join(rng.choices(TECH + PARTS, k=30)))
        started = time.perf_counter()
        await store.add_turn(SCOPE, f"t{i}", question)
        writes["turn"].append((time.perf_counter() - started) * 1000)
        await store.append_messages(SCOPE, f"t{i}", [answer])
    for i, (text, category) in enumerate(fact_texts(rng)):
        started = time.perf_counter()
        await store.remember_fact(SCOPE, f"t{i % TURNS + 1}", text, category, time.time())  # type: ignore[arg-type]
        writes["fact"].append((time.perf_counter() - started) * 1000)
    for task in ("Migrate billing to PostgreSQL", "Write the runbook", "Rotate the API keys"):
        await store.update_task(SCOPE, None, task, "in_progress", "started", time.time())
    text = "Summary: " + "; ".join(f"Question {i}" for i in range(1, 60))
    await store.save_summary(SCOPE, text, TURNS - 200, message_tokens(summary_message(text)), time.time())
    return writes


async def timed(step: Callable[[str], Awaitable[object]], texts: list[str]) -> list[float]:
    for text in texts[:WARM_UP]:
        await step(text)
    timings = []
    for text in texts[WARM_UP:]:
        started = time.perf_counter()
        await step(text)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def row(name: str, timings: list[float]) -> str:
    cuts = statistics.quantiles(timings, n=100)
    return f"| {name} | {statistics.median(timings):.2f} | {cuts[98]:.2f} | {len(timings)} |"


async def run() -> None:
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as data:
        store = SqliteStore(Path(data))
        await store.open()
        try:
            started = time.perf_counter()
            writes = await load(store, rng)
            loaded = time.perf_counter() - started
            asked = questions(rng)
            # Each measured turn is a new one, its question the message recall searches for.
            turns = [f"q{i}" for i in range(len(asked))]
            for turn_id, question in zip(turns, asked, strict=True):
                await store.add_turn(SCOPE, turn_id, ChatMessage(role="user", content=question))
                answer = "Answer: " + " ".join(rng.choices(TECH + PARTS, k=30))
                await store.append_messages(SCOPE, turn_id, [ChatMessage(role="assistant", content=answer)])
            by_question = dict(zip(asked, turns, strict=False))
            assembler = ContextAssembler(
                store, window_messages=10_000, window_tokens=WINDOW_TOKENS, recall_facts=8, recall_tasks=5
            )

            async def broadcast(_: ControlMessage) -> None:
                return None

            rpc = MemoryRpc(store, 10_000, broadcast=broadcast, assembler=assembler)

            def request(question: str) -> bytes:
                return GetContext(scope=SCOPE, turn_id=by_question[question]).model_dump_json().encode()

            sample = await assembler.assemble(SCOPE, turns[-1])
            recalled = [len(await store.recall_facts(SCOPE, q, 8)) for q in asked[:100]]
            rows = [
                row(
                    "context assembly (window + summary + recall + tasks)",
                    await timed(lambda q: assembler.assemble(SCOPE, by_question[q]), asked),
                ),
                row(
                    "the same through MemoryRpc.handle (JSON in and out)",
                    await timed(lambda q: rpc.handle(request(q)), asked),
                ),
                row(
                    "window alone (8,000 tokens over 10,000 messages)",
                    await timed(lambda q: store.context(SCOPE, by_question[q], 10_000, WINDOW_TOKENS), asked),
                ),
                row(
                    "recall alone (FTS5, 8 of 1,000 facts): per turn",
                    await timed(lambda q: store.recall_facts(SCOPE, q, 8), asked),
                ),
                row("write: a turn (add_turn, fsync)", writes["turn"]),
                row("write: a fact (remember_fact, fsync)", writes["fact"]),
            ]
        finally:
            await store.close()
    print("| measurement | p50 ms | p99 ms | runs |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    size = sum(message_tokens(m) for m in sample.messages)
    print(
        f"\nLoaded {TURNS * 2:,} messages and {FACTS:,} facts in {loaded:.1f} s. A context: "
        f"{len(sample.messages)} messages, {size:,} estimated tokens (budget {WINDOW_TOKENS:,}); "
        f"recall found facts for {sum(1 for n in recalled if n)} of 100 questions "
        f"({statistics.mean(recalled):.1f} on average, at most 8)."
    )
