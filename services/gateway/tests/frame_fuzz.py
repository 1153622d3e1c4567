"""Hypothesis strategies for what a client may send: JSON objects shaped like the client
frames (known types and fields with values of every JSON type), their mutations (cut
short, lone surrogates, odd nesting) and arbitrary text or bytes."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

TYPES = ["message", "cancel", "resume", "approve", "reauth"]
FIELDS = [
    "type",
    "text",
    "conversation_id",
    "id",
    "turn_id",
    "call_id",
    "args_sha256",
    "approved",
    "after_seq",
    "token",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=24),
    st.sampled_from(["", " ", "a" * 64, "0" * 64, "c-1", "\u0000", "\ud800", "\U0001f600", "true", "5"]),
)
# Flat and shallow on purpose: 10,000 examples must stay fast (deep nesting has its own case).
json_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=6), scalars, max_size=3),
)
frame_objects = st.builds(
    lambda kind, fields, extra: {**({"type": kind} if kind is not None else {}), **fields, **extra},
    st.one_of(st.sampled_from(TYPES), st.none(), json_values),
    st.dictionaries(st.sampled_from(FIELDS[1:]), json_values, max_size=5),
    st.dictionaries(st.text(max_size=8), scalars, max_size=1),
)


@st.composite
def client_data(draw: st.DrawFn) -> str | bytes:
    """One WebSocket message a client might send: mostly frame-like JSON, sometimes broken."""
    frame = draw(frame_objects)
    text = json.dumps(frame, ensure_ascii=draw(st.booleans()))
    if not _is_utf8(text):  # a text frame is valid UTF-8: a lone surrogate can come only escaped
        text = json.dumps(frame)
    how = draw(
        st.sampled_from(["as is", "as is", "as is", "cut", "surrogate", "nested", "text", "bytes", "not object"])
    )
    if how == "cut":
        return text[: draw(st.integers(min_value=0, max_value=max(0, len(text) - 1)))]
    if how == "surrogate":
        return text.replace('"', '"\\udc00', 1)
    if how == "nested":
        return "[" * draw(st.sampled_from([1, 2, 64, 998, 1001, 1200])) + text
    if how == "text":
        return draw(st.text(max_size=200))
    if how == "bytes":
        return draw(st.binary(max_size=64))
    if how == "not object":
        return json.dumps(draw(json_values))
    return text


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def sample(count: int) -> list[str | bytes]:
    """`count` generated client messages, for a test that sends them over a real socket."""
    drawn: list[str | bytes] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(client_data())
    def collect(data: str | bytes) -> None:
        drawn.append(data)

    collect()
    return drawn
