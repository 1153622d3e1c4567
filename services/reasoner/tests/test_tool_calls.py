"""Tool-call deltas in every shape servers send them, assembled into whole calls."""

from __future__ import annotations

from agentry_reasoner.model.tool_calls import AssembledCall, ToolCallAccumulator


def test_arguments_in_pieces_with_id_and_name_first() -> None:
    calls = ToolCallAccumulator()
    calls.add(0, "call_a", "calculator", "")
    for piece in ('{"expre', 'ssion": "3', '7*91"}'):
        calls.add(0, None, None, piece)
    assert calls.calls() == [AssembledCall("call_a", "calculator", '{"expression": "37*91"}')]


def test_parallel_calls_sharing_index_zero_are_told_apart_by_id() -> None:
    calls = ToolCallAccumulator()
    calls.add(0, "call_a", "calculator", '{"expression": "2*3"}')
    calls.add(0, "call_b", "calculator", '{"expression": "4*5"}')
    assert [c.call_id for c in calls.calls()] == ["call_a", "call_b"]


def test_no_id_no_index_and_a_repeated_name() -> None:
    calls = ToolCallAccumulator()
    calls.add(None, None, "calculator", '{"expression":')
    calls.add(None, None, "calculator", ' "1+1"}')
    assert calls.calls() == [AssembledCall("", "calculator", '{"expression": "1+1"}')]


def test_indexed_parallel_calls_and_empty_arguments() -> None:
    calls = ToolCallAccumulator()
    calls.add(0, "a", "current_time", None)
    calls.add(1, "b", "calculator", '{"expression": "1"}')
    assert calls.calls() == [
        AssembledCall("a", "current_time", "{}"),
        AssembledCall("b", "calculator", '{"expression": "1"}'),
    ]
