"""Full-text search over the operator's documents (TOOL_RUNNER_DOCS_DIR, by default the
sample corpus in services/tool-runner/sample_docs).

Runs in the sandbox with the folder mounted read-only at /docs. Each call indexes the
Markdown and text files into an in-memory SQLite FTS5 table (porter stemming, so "limit"
finds "limits"): no index to keep fresh, and fast for a corpus of a few hundred files.
Past MAX_FILES files or MAX_BYTES bytes the rest is not searched, and the result says so.

Ranking is BM25 computed here from FTS5's term counts (its `fts5vocab` table), with the
smoothed idf ln(1 + (N - n + 0.5) / (n + 0.5)) and titles counting three times: FTS5's
own bm25() floors the idf of any word found in half the documents or more at ~0, which
in a small corpus leaves most queries unranked.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
from collections import defaultdict

from agentry_tool_runner.tools.failure import ToolFailure, in_worker

MAX_QUERY_CHARS = 300
MAX_RESULTS = 5
MAX_FILES = 2000
MAX_BYTES = 20 * 1024 * 1024
MAX_FILE_BYTES = 1024 * 1024
SUFFIXES = (".md", ".markdown", ".txt", ".rst")
K1, B, TITLE_WEIGHT = 1.2, 0.75, 3.0
# Words that say nothing about a topic; dropped from the query.
_STOP = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how", "i", "in", "is"}
    | {"it", "of", "on", "or", "the", "to", "what", "when", "where", "which", "who", "why", "with"}
)


def run(query: str, docs: str) -> str:
    words = [word for word in re.findall(r"\w+", query.lower()) if word not in _STOP][:32]
    if not words:
        raise ToolFailure("the query has no words to search for")
    database = sqlite3.connect(":memory:")
    try:
        database.execute("CREATE VIRTUAL TABLE docs USING fts5(path UNINDEXED, title, body, tokenize='porter')")
        database.execute("CREATE VIRTUAL TABLE counts USING fts5vocab(docs, 'instance')")
    except sqlite3.OperationalError:
        raise ToolFailure("this worker's SQLite has no FTS5; search_docs is unavailable") from None
    lengths, skipped = _index(database, docs)
    match = " OR ".join('"' + word.replace('"', '""') + '"' for word in words)
    ranked = _rank(database, match, lengths)[:MAX_RESULTS]
    results = []
    for rowid, score in ranked:
        path, title, snippet = database.execute(
            "SELECT path, title, snippet(docs, 2, '**', '**', '…', 24) FROM docs WHERE docs MATCH ? AND rowid = ?",
            (match, rowid),
        ).fetchone()
        results.append({"path": path, "title": title, "snippet": " ".join(snippet.split()), "score": round(score, 3)})
    return json.dumps({"query": query, "results": results, "searched_files": len(lengths), "skipped_files": skipped})


def _rank(database: sqlite3.Connection, match: str, lengths: dict[int, int]) -> list[tuple[int, float]]:
    """(rowid, BM25 score) of the documents matching `match`, best first."""
    matching = [row for (row,) in database.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (match,))]
    if not matching:
        return []
    # The stemmed forms of the query's words, as the index holds them.
    database.execute("CREATE VIRTUAL TABLE asked USING fts5(text, tokenize='porter')")
    database.execute("CREATE VIRTUAL TABLE asked_terms USING fts5vocab(asked, 'row')")
    database.execute("INSERT INTO asked VALUES (?)", (match.replace('"', " "),))
    terms = [term for (term,) in database.execute("SELECT term FROM asked_terms")]
    frequency: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    marks = ",".join("?" * len(terms))
    for term, doc, column, count in database.execute(
        f"SELECT term, doc, col, count(*) FROM counts WHERE term IN ({marks}) GROUP BY term, doc, col",  # noqa: S608
        terms,
    ):
        frequency[term][doc] += count * (TITLE_WEIGHT if column == "title" else 1.0)
    total = len(lengths)
    average = sum(lengths.values()) / total
    scores: dict[int, float] = defaultdict(float)
    for per_doc in frequency.values():
        idf = math.log(1 + (total - len(per_doc) + 0.5) / (len(per_doc) + 0.5))
        for doc, tf in per_doc.items():
            scores[doc] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[doc] / average))
    return sorted(((row, scores[row]) for row in matching), key=lambda item: -item[1])


def _index(database: sqlite3.Connection, root: str) -> tuple[dict[int, int], int]:
    """Indexes the files under `root`; returns {rowid: length in words} and how many were skipped."""
    lengths: dict[int, int] = {}
    skipped = total = 0
    for folder, directories, files in os.walk(root):
        directories.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            if not name.endswith(SUFFIXES) or os.path.islink(path):
                continue
            if len(lengths) >= MAX_FILES or total >= MAX_BYTES:
                skipped += 1
                continue
            with open(path, "rb") as file:
                data = file.read(MAX_FILE_BYTES)
            total += len(data)
            text = data.decode("utf-8", "replace")
            title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), name)
            cursor = database.execute("INSERT INTO docs VALUES (?, ?, ?)", (os.path.relpath(path, root), title, text))
            assert cursor.lastrowid is not None
            lengths[cursor.lastrowid] = len(re.findall(r"\w+", text)) + 1
    return lengths, skipped


if in_worker():  # the declaration; the child (no pydantic in the sandbox) skips it
    from pydantic import BaseModel, ConfigDict, Field

    from agentry_tool_runner.tools.tool import Limits, Tool

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="Words to search for.")

    TOOL = Tool(
        name="search_docs",
        description=(
            "Searches the Agentry documentation (full text, ranked) and returns JSON with the best matches: "
            "file path, title and a snippet with the matching words in **bold**."
        ),
        params=Params,
        implementation=f"{__name__}:run",
        side_effect="read_only",
        timeout_seconds=10.0,
        limits=Limits(cpu_seconds=5, memory_mib=512, max_output_bytes=16 * 1024),
        docs=True,
    )
