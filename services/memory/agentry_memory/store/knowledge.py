"""The rules about facts every backend shares: when two facts are the same, which words of
a message are worth searching for, and how recalled facts are shown to the model.

The search is full-text (SQLite FTS5, MongoDB `$text`), not semantic: docs/memory.md has
the measurements behind that choice.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from difflib import SequenceMatcher

from agentry_memory.context.tokens import count_tokens
from agentry_memory.store.records import Fact, Task

# The exact header the offline model (and a human reading a prompt) recognises.
FACTS_HEADER = "Known facts about the user:"
TASKS_HEADER = "Open tasks of the user:"
# difflib ratio of two normalised facts above which they are one fact told twice.
SAME_FACT_RATIO = 0.9
MIN_TYPO_LETTERS = 4  # "cat" / "car" are two words, "recieve" / "receive" one
MAX_TERMS = 24
# What one user may have kept: past it, a new fact replaces the least recently confirmed
# one, a new task the least recently updated (a done one first). Remembering and task
# updates compare against the user's rows, and an update read every title: with 10,000
# tasks one took 0.4 s of the store's only thread, holding up every other user's turn.
MAX_FACTS_PER_USER = 1000
MAX_TASKS_PER_USER = 200
_WORD = re.compile(r"\w+")

# Words that match almost every fact, or only say "search my memory": searching for them
# would recall noise. Small on purpose: English function words and the recall verbs.
# fmt: off
STOPWORDS = frozenset(
    (
        "a", "about", "all", "also", "am", "an", "and", "any", "anything", "are", "as", "at", "be", "been",
        "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her",
        "here", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "know", "let", "me",
        "more", "most", "my", "no", "not", "now", "of", "on", "or", "our", "please", "recall", "remember",
        "said", "say", "she", "so", "some", "tell", "than", "that", "the", "their", "them", "then", "there",
        "these", "they", "this", "those", "to", "too", "told", "us", "was", "we", "were", "what", "when",
        "where", "which", "who", "why", "will", "with", "would", "you", "your", "yours",
    )
)
# fmt: on


def fact_key(text: str) -> str:
    """A fact's identity: its words, case-folded, without punctuation or extra spaces."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def same_fact(key: str, other_key: str) -> bool:
    """Near-identical wording (a typo, a spelling variant, a plural) is the same fact; a
    word or a number apart is another one. The whole ratio alone merged "allergic to
    peanuts" into "allergic to walnuts", "region eu-west-1" into "eu-west-2" and "is not"
    into "is", and the refreshed fact replaces the kept one's wording: the first was lost."""
    if key == other_key:
        return True
    words, other_words = key.split(), other_key.split()
    if len(words) != len(other_words) or SequenceMatcher(None, key, other_key).ratio() < SAME_FACT_RATIO:
        return False
    return all(_same_word(a, b) for a, b in zip(words, other_words, strict=True))


def _same_word(word: str, other: str) -> bool:
    """The same word, but for a typo (one letter wrong, missing, extra or two swapped, in
    words of four letters or more) or a plural `s`; never two numbers."""
    if word == other:
        return True
    if any(c.isdigit() for c in word + other):
        return False
    short, long = sorted((word, other), key=len)
    return long == short + "s" or (len(short) >= MIN_TYPO_LETTERS and _one_edit(short, long))


def _one_edit(short: str, long: str) -> bool:
    """Whether one letter replaced, inserted or two adjacent letters swapped turn `short`
    into `long` (`len(short) <= len(long)`)."""
    if len(long) - len(short) > 1:
        return False
    first = next((i for i, (a, b) in enumerate(zip(short, long, strict=False)) if a != b), len(short))
    if len(short) < len(long):
        return short[first:] == long[first + 1 :]
    if short[first + 1 :] == long[first + 1 :]:
        return True
    swapped = first + 1 < len(short) and short[first] == long[first + 1] and short[first + 1] == long[first]
    return swapped and short[first + 2 :] == long[first + 2 :]


def search_terms(text: str) -> list[str]:
    """The words of `text` worth searching for: no stop words, no single letters, each once."""
    terms: list[str] = []
    for word in _WORD.findall(unicodedata.normalize("NFKC", text).casefold()):
        if word in STOPWORDS or (len(word) < 2 and word.isascii()) or word in terms:
            continue
        terms.append(word)
        if len(terms) == MAX_TERMS:
            break
    return terms


def one_line(text: str) -> str:
    """A fact or task on one line: a newline inside would end the block for its readers."""
    return " ".join(text.split())


def knowledge_block(facts: Sequence[Fact], tasks: Sequence[Task], max_tokens: int) -> str | None:
    """The system message with the recalled facts and open tasks, best first, within
    `max_tokens` (whole lines, each block's header only with a line under it); None when
    nothing fits."""
    lines: list[str] = []
    budget = max_tokens

    def block(header: str, items: list[str]) -> None:
        nonlocal budget
        separator = [""] if lines else []  # a blank line ends the facts block for its readers
        taken: list[str] = []
        cost = sum(count_tokens(line) + 1 for line in [*separator, header])
        for item in items:
            item_cost = count_tokens(item) + 1
            if cost + item_cost > budget:
                break
            taken.append(item)
            cost += item_cost
        if taken:
            lines.extend([*separator, header, *taken])
            budget -= cost

    block(FACTS_HEADER, [f"- {one_line(fact.text)}" for fact in facts])
    block(
        TASKS_HEADER,
        [f"- {one_line(t.title)} [{t.status}]" + (f": {one_line(t.progress)}" if t.progress else "") for t in tasks],
    )
    return "\n".join(lines) if lines else None
