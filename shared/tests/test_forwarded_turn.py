"""The turn memory forwards to the reasoners goes without its None fields
(`encode(turn, exclude_none=True)`: a context's messages had three each). A reader takes
a field left out as its default, so every field of the turn's models that may be None
must default to None; a new `x: str | None` without a default would make every forwarded
turn unreadable."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime
from typing import Any

from agentry_shared.bus import encode
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.memory import Context, TurnBegun
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested
from pydantic import BaseModel


def _inner(annotation: Any) -> list[Any]:
    """The annotation and every type nested in it (unions, lists, dicts)."""
    return [annotation, *(t for argument in typing.get_args(annotation) for t in _inner(argument))]


def _models(root: type[BaseModel]) -> set[type[BaseModel]]:
    found, todo = set(), [root]
    while todo:
        model = todo.pop()
        if model in found:
            continue
        found.add(model)
        for field in model.model_fields.values():
            todo += [t for t in _inner(field.annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
    return found


def test_every_field_of_a_forwarded_turn_that_may_be_none_defaults_to_none() -> None:
    models = _models(TurnRequested)
    assert {TurnBegun, Context, ChatMessage, Scope} <= models
    for model in models:
        for name, field in model.model_fields.items():
            if types.NoneType in _inner(field.annotation):
                assert not field.is_required() and field.default is None, f"{model.__name__}.{name}"


def test_a_turn_without_its_none_fields_reads_back_the_same() -> None:
    scope = Scope(tenant_id="t", user_id="u", conversation_id="c")
    window = [ChatMessage(role="user", content="what is 2+2?"), ChatMessage(role="assistant", content=None)]
    turn = TurnRequested(
        scope=scope,
        turn_id="t1",
        text="and 3+3?",
        accepted_at=datetime.now(UTC),
        begun=TurnBegun(attempt=1, state="running", context=Context(messages=window)),
    )
    compact = encode(turn, exclude_none=True)
    assert b"null" not in compact and len(compact) < len(encode(turn))
    assert TurnRequested.model_validate_json(compact) == turn
