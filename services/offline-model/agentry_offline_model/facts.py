"""Facts the memory service puts in the system prompt, and questions answered from them.

Contract: a system (or developer) message holds a line `Known facts about the user:`
followed by one `- <fact>` line per fact; the block ends at the first other line. Without a
`recall` tool the model can only answer "what do you know about me" from this block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agentry_offline_model.conversation import clip, role_of, text_of

HEADER = "known facts about the user:"
MAX_FACTS = 20
_ABOUT_ME = re.compile(
    r"\bwhat\s+(?:do|did)\s+i\s+(?:prefer|like|love|want|decide)"
    r"|\bwhat\s+(?:do|did)\s+you\s+(?:know|remember|recall)\s+about\s+me\b"
    r"|\bwhat\s+(?:are|is)\s+my\s+(?:preferences?|favou?rites?)"
    r"|\bdo\s+you\s+(?:know|remember)\s+(?:anything\s+)?about\s+me\b",
    re.IGNORECASE,
)


def known_facts(messages: Sequence[object]) -> list[str]:
    """Every fact of every block, in order, without repeats."""
    facts: list[str] = []
    for message in messages:
        if role_of(message) not in ("system", "developer"):
            continue
        in_block = False
        for line in text_of(message).splitlines():
            stripped = line.strip()
            if stripped.lower() == HEADER:
                in_block = True
            elif in_block and stripped.startswith("-") and (fact := stripped[1:].strip()):
                if fact not in facts:
                    facts.append(fact)
            else:
                in_block = False
    return facts[:MAX_FACTS]


def asks_about_user(text: str) -> bool:
    """ "what do I prefer", "what do you know about me", "what are my preferences", ..."""
    return bool(_ABOUT_ME.search(text.replace("\u2019", "'")))


def answer_from_facts(facts: Sequence[str]) -> str:
    if not facts:
        return "I don't know any facts about you yet."
    return "Here is what I know about you: " + "; ".join(clip(f.rstrip(". "), 200) for f in facts) + "."
