"""The thinking splitter: the same split however a server cuts the content into chunks."""

from __future__ import annotations

import itertools

import pytest
from agentry_reasoner.model.thinking import Piece, ThinkingSplitter
from hypothesis import given
from hypothesis import strategies as st


def split(chunks: list[str], *, starts_open: bool | None = False) -> tuple[str, str, int]:
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


def verdict_of(chunks: list[str], *, starts_open: bool | None = None, cut_off: bool = False) -> bool | None:
    splitter = ThinkingSplitter(starts_open=starts_open)
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.close(cut=cut_off)
    return splitter.verdict


# What a reply read as starting inside the thinking (a model not known yet) shows of
# its template: True, the template opened it; False, it did not; None, nothing shown.
VERDICTS = {
    "closes a thinking it never opened": (["Plan.</th", "ink>Answer."], True),
    "opens its own": (["\n<think>Plan.</think>Answer."], False),
    "its own harmony channels": ([CASES["harmony"][0]], False),
    "no marker at all": (["Just ", "an answer."], False),
    "a tag written after words": (["Plan with a <think> tag.</think>Answer."], None),
    "nothing but a tool call": ([], None),
}


@pytest.mark.parametrize("starts_open", [None, True])
@pytest.mark.parametrize("case", sorted(VERDICTS))
def test_a_reply_shows_whether_the_template_opens_the_thinking(case: str, starts_open: bool | None) -> None:
    chunks, verdict = VERDICTS[case]
    assert verdict_of(chunks, starts_open=starts_open) is verdict


def test_a_reply_cut_by_the_output_cap_shows_nothing() -> None:
    assert verdict_of(["Still thinking when the cap"], cut_off=True) is None


def test_a_stray_closing_tag_read_as_it_comes_shows_the_template_opens_it() -> None:
    assert verdict_of(["Okay.</think>It is 3367."], starts_open=False) is True


@given(
    st.sampled_from(["tags", "thinking tag", "harmony", "no thinking"]),
    st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_read_as_starting_inside_the_thinking_a_reply_that_begins_with_its_own_markers_splits_the_same(
    case: str, points: list[int]
) -> None:
    """A model not known yet is read so: its own markers still split it, and a reply
    with none is its answer in the end. (Before, a harmony channel there was words of
    the implied thinking, and the whole reply, analysis included, became the answer.)"""
    text, thinking, answer = CASES[case]
    for starts_open in (True, None):
        got_thinking, got_answer, _ = split(cut(text, points), starts_open=starts_open)
        assert got_answer == answer and thinking in got_thinking


def test_not_known_yet_the_implied_thinking_is_held_until_the_reply_shows_what_it_was() -> None:
    """Held, not given out as thinking: an answer with no marker is then not recorded as
    thinking too, and a thinking is recorded once, when its `</think>` comes."""
    splitter = ThinkingSplitter(starts_open=None)
    assert splitter.feed("Okay, the user") == []
    assert splitter.feed(" asks.</think>It is") == [("reasoning", "Okay, the user asks."), ("text", "It is")]
    assert splitter.feed(" 3367.") + splitter.close() == [("text", " 3367.")]

    answer_only = ThinkingSplitter(starts_open=None)
    assert answer_only.feed("It is ") + answer_only.feed("3367.") == []
    assert answer_only.close() == [("text", "It is 3367.")]

    cut_off = ThinkingSplitter(starts_open=None)
    assert cut_off.feed("Still thinking") == []
    assert cut_off.close(cut=True) == [("reasoning", "Still thinking")]
