"""The thinking splitter: the same split however a server cuts the content into chunks."""

from __future__ import annotations

import itertools

from agentry_reasoner.model.thinking import Piece, ThinkingSplitter
from hypothesis import given
from hypothesis import strategies as st


def split(chunks: list[str], *, starts_open: bool = False) -> tuple[str, str, int]:
    """(thinking, answer, retractions) after feeding `chunks`."""
    splitter = ThinkingSplitter(starts_open=starts_open)
    pieces: list[Piece] = []
    for chunk in chunks:
        pieces += splitter.feed(chunk)
    pieces += splitter.close()
    thinking, answer, retracted = "", "", 0
    for kind, text in pieces:
        if kind == "retract":
            answer, retracted = "", retracted + 1
        elif kind == "reasoning":
            thinking += text
        else:
            answer += text
    return thinking, answer, retracted


def cut(text: str, points: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(p % (len(text) + 1) for p in points)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


CASES = {
    "tags": ("<think>The user wants 37*91.</think>\n\nIt is 3367.", "The user wants 37*91.", "It is 3367."),
    "thinking tag": ("<thinking>plan</thinking>Answer.", "plan", "Answer."),
    "harmony": (
        "<|channel|>analysis<|message|>Need the calculator.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>It is 3367.<|return|>",
        "Need the calculator.",
        "It is 3367.",
    ),
    "thinking after the answer began": ("It is <think>plan</think>3367.", "plan", "It is 3367."),
    "opening tag never closed": ("Answer first.<think>plan cut off", "plan cut off", "Answer first."),
    "no thinking": (
        "Just an answer with a < sign and <b>bold</b>.",
        "",
        "Just an answer with a < sign and <b>bold</b>.",
    ),
}


@given(st.sampled_from(sorted(CASES)), st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_any_chunking_gives_the_same_split(case: str, points: list[int]) -> None:
    text, thinking, answer = CASES[case]
    got_thinking, got_answer, _ = split(cut(text, points))
    assert (got_thinking, got_answer) == (thinking, answer)


@given(st.lists(st.integers(min_value=0, max_value=80), max_size=10))
def test_implied_opening_tag(points: list[int]) -> None:
    text = "The template opened the tag.</think>The answer."
    assert split(cut(text, points), starts_open=True)[:2] == ("The template opened the tag.", "The answer.")


def test_implied_opening_that_never_closes_is_the_answer_in_the_end() -> None:
    _thinking, answer, _ = split(["A model that ", "did not think."], starts_open=True)
    assert answer == "A model that did not think."


def test_separate_reasoning_field_means_content_is_the_answer() -> None:
    splitter = ThinkingSplitter(starts_open=True)
    splitter.separate_reasoning_seen()
    assert splitter.feed("Answer.") + splitter.close() == [("text", "Answer.")]


def test_stray_closing_tag_retracts_the_text_already_given_out() -> None:
    thinking, answer, retracted = split(["Okay, the user", " asks.</th", "ink>It is 3367."])
    assert (thinking, answer, retracted) == ("Okay, the user asks.", "It is 3367.", 1)


def test_configured_tags_only() -> None:
    splitter = ThinkingSplitter(("reasoning",))
    pieces = splitter.feed("<think>kept</think><reasoning>hidden</reasoning>shown") + splitter.close()
    assert pieces == [("text", "<think>kept</think>"), ("reasoning", "hidden"), ("text", "shown")]


def test_implied_opening_cut_by_the_output_cap_stays_thinking() -> None:
    splitter = ThinkingSplitter(starts_open=True)
    pieces = splitter.feed("Still thinking when the cap") + splitter.close(cut=True)
    assert pieces == [("reasoning", "Still thinking when the cap")]


# Inside one kind of thinking, the other kind's markers are words of the thinking: a
# harmony analysis that writes `</think>`, a `<think>` that writes harmony's markers.
CROSSED = {
    "closing tag in analysis": (
        "<|channel|>analysis<|message|>A tag like </think> ends it. Plan.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>It is 3367.<|return|>",
        "A tag like </think> ends it. Plan.",
    ),
    "both tags in analysis": (
        "<|channel|>analysis<|message|>Open <think> and close </think> here. Plan.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>It is 3367.<|return|>",
        "Open <think> and close </think> here. Plan.",
    ),
    "harmony in tags": (
        "<think>gpt-oss writes <|channel|>final<|message|> first. Plan.<|end|> Done.</think>It is 3367.",
        "gpt-oss writes <|channel|>final<|message|> first. Plan.<|end|> Done.",
    ),
}


@given(st.sampled_from(sorted(CROSSED)), st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_the_other_kinds_markers_inside_thinking_are_thinking(case: str, points: list[int]) -> None:
    text, thinking = CROSSED[case]
    assert split(cut(text, points)) == (thinking, "It is 3367.", 0)
