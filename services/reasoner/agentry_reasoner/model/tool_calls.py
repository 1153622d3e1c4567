"""Assembles tool-call deltas into whole calls, in every shape servers send them.

- arguments in pieces (OpenAI, vLLM, llama.cpp) or whole in one delta (Ollama);
- the `id` and `name` only on a call's first delta, or repeated on every delta;
- parallel calls each with their own `index`, or all at `index` 0 told apart only by
  their ids (some Ollama releases), or with no `index` at all;
- no `id` at all: left empty here, and the agent names the call by turn, step and index.

Arguments are passed on as the model wrote them; invalid JSON goes back to the model
as a tool error (guardrails), like a schema violation.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Call:
    index: int | None
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AssembledCall:
    call_id: str  # "" when the server sent none
    name: str
    arguments: str


class ToolCallAccumulator:
    def __init__(self) -> None:
        self._calls: list[_Call] = []

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, index: int | None, call_id: str | None, name: str | None, arguments: str | None) -> None:
        call = self._call_for(index, call_id or "")
        if call_id:
            call.call_id = call_id
        if name and name != call.name:
            call.name += name
        if arguments:
            call.arguments.append(arguments)

    def calls(self) -> list[AssembledCall]:
        """The calls in the order they started; a call without a name is dropped (noise)."""
        return [AssembledCall(c.call_id, c.name, "".join(c.arguments).strip() or "{}") for c in self._calls if c.name]

    def _call_for(self, index: int | None, call_id: str) -> _Call:
        same_index = [c for c in self._calls if c.index == index]
        if call_id:
            for call in same_index:
                if call.call_id == call_id:
                    return call
            # A new id at an index already in use: a parallel call (index 0 shared), unless
            # the earlier one never had an id (its id arrives late).
            if same_index and not same_index[-1].call_id and not same_index[-1].arguments:
                return same_index[-1]
        elif same_index:
            return same_index[-1]
        elif index is None and self._calls:
            return self._calls[-1]
        call = _Call(index)
        self._calls.append(call)
        return call
