"""The error-code sets of contracts/errors.py: the docs list exactly them, the contract
models accept exactly them, and what was ever stored still parses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest
from agentry_shared.contracts import errors
from agentry_shared.contracts.errors import (
    CLIENT_ERROR_MEANINGS,
    INVALID_CLIENT_FRAME,
    MEMORY_FAILURE_MEANINGS,
    MEMORY_TURN_FAILURE,
    TOOL_ERROR_MEANINGS,
    TURN_FAILURE_MEANINGS,
    ClientErrorCode,
    MemoryFailureCode,
    ToolErrorCode,
    TurnFailureCode,
)
from agentry_shared.contracts.events import LOG_ENTRY
from agentry_shared.contracts.frames import SERVER_FRAME, ClientFrame, ErrorFrame
from agentry_shared.contracts.memory import MEMORY_REPLY
from agentry_shared.contracts.tools import TOOL_REPLY, ToolCompleted
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "docs" / "protocol.md"

CLIENT = errors.codes(ClientErrorCode)
TURN = errors.codes(TurnFailureCode)
MEMORY = errors.codes(MemoryFailureCode)
TOOL = errors.codes(ToolErrorCode)

# ---- the docs --------------------------------------------------------------------------


def section(text: str, heading: str) -> str:
    """The body of the section whose heading line is `heading`, up to the next heading of
    the same or a higher level."""
    lines = text.splitlines()
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    body = []
    for line in lines[start + 1 :]:
        hashes = len(line) - len(line.lstrip("#"))
        if 0 < hashes <= level and line[hashes : hashes + 1] == " ":
            break
        body.append(line)
    return "\n".join(body)


def tables(text: str) -> list[tuple[str, list[str]]]:
    """Each Markdown table of `text`: its header line and the first cell of each row."""
    found: list[tuple[str, list[str]]] = []
    rows: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            rows.append(line)
            continue
        if len(rows) > 2 and set(rows[1].replace("|", "").strip()) <= {"-", " "}:
            found.append((rows[0], [row.split("|")[1] for row in rows[2:]]))
        rows = []
    return found


def cell_codes(cell: str) -> list[str]:
    """The backquoted codes of a cell (it may name several: `a`, `b`)."""
    return re.findall(r"`([^`]+)`", cell)


def table_codes(text: str, after: str | None = None) -> frozenset[str]:
    """The codes of the first column of the first table in `text` (after the line `after`)."""
    if after is not None:
        lines = text.splitlines()
        text = "\n".join(lines[lines.index(after) + 1 :])
    found = tables(text)
    assert found, f"no table found{f' after {after!r}' if after else ''}"
    codes: set[str] = set()
    for cell in found[0][1]:
        named = cell_codes(cell)
        assert named and all(re.fullmatch(r"[a-z_]+", c) for c in named), f"not a code cell: {cell!r}"
        codes.update(named)
    return frozenset(codes)


@pytest.fixture(scope="module")
def protocol() -> str:
    return PROTOCOL.read_text(encoding="utf-8")


def test_protocol_documents_exactly_the_client_error_codes(protocol: str) -> None:
    documented = table_codes(section(protocol, "## `error`: the client sent something wrong"))
    assert documented == CLIENT, (sorted(CLIENT - documented), sorted(documented - CLIENT))


def test_protocol_documents_exactly_the_turn_failure_codes(protocol: str) -> None:
    tools = section(protocol, "### Tool errors the model sees")
    documented = table_codes(tools, after="`turn.failed` codes:")
    assert documented == TURN, (sorted(TURN - documented), sorted(documented - TURN))


def test_protocol_documents_exactly_the_tool_error_codes(protocol: str) -> None:
    documented = table_codes(section(protocol, "### Tool errors the model sees"))
    assert documented == TOOL, (sorted(TOOL - documented), sorted(documented - TOOL))


def test_the_approve_refusals_are_client_error_codes(protocol: str) -> None:
    approve = section(protocol, "### `approve`: answer a `tool.approval_required`")
    assert table_codes(approve, after="Refusals come as an `error` frame echoing `id`:") <= CLIENT


def test_the_gateway_readme_lists_the_client_error_codes() -> None:
    readme = (ROOT / "services" / "gateway" / "README.md").read_text(encoding="utf-8")
    documented = table_codes(readme, after="retry in the one just created.")
    assert documented == CLIENT, (sorted(CLIENT - documented), sorted(documented - CLIENT))


def test_the_tool_runner_readme_codes_are_tool_error_codes() -> None:
    readme = (ROOT / "services" / "tool-runner" / "README.md").read_text(encoding="utf-8")
    documented = table_codes(readme, after="A `ToolCompleted` error has one of these codes:")
    assert documented <= TOOL, sorted(documented - TOOL)


# ---- the sets themselves ---------------------------------------------------------------


def test_meanings_key_exactly_their_sets() -> None:
    assert set(CLIENT_ERROR_MEANINGS) == CLIENT
    assert set(TURN_FAILURE_MEANINGS) == TURN
    assert set(MEMORY_FAILURE_MEANINGS) == MEMORY
    assert set(TOOL_ERROR_MEANINGS) == TOOL
    for meanings in (CLIENT_ERROR_MEANINGS, TURN_FAILURE_MEANINGS, MEMORY_FAILURE_MEANINGS, TOOL_ERROR_MEANINGS):
        assert all(meaning.strip() and "\n" not in meaning for meaning in meanings.values())


def test_a_meanings_dict_out_of_sync_fails_at_import() -> None:
    with pytest.raises(AssertionError, match="missing \\['forbidden'\\]"):
        errors._check(MemoryFailureCode, {k: v for k, v in MEMORY_FAILURE_MEANINGS.items() if k != "forbidden"}, "x")
    with pytest.raises(AssertionError, match="extra \\['nope'\\]"):
        errors._check(MemoryFailureCode, {**MEMORY_FAILURE_MEANINGS, "nope": "?"}, "x")


def test_memory_tools_pass_memory_failures_through() -> None:
    assert MEMORY <= TOOL


def test_memory_failures_end_a_turn_as_memory_code() -> None:
    assert {code: f"memory_{code}" for code in MEMORY} == MEMORY_TURN_FAILURE
    assert set(MEMORY_TURN_FAILURE.values()) <= TURN


def test_every_client_frame_type_has_its_invalid_code() -> None:
    frame_types = {get_args(model.model_fields["type"].annotation)[0] for model in get_args(get_args(ClientFrame)[0])}
    assert set(INVALID_CLIENT_FRAME) == frame_types
    assert all(code == f"invalid_{kind.replace('.', '_')}" for kind, code in INVALID_CLIENT_FRAME.items())
    assert set(INVALID_CLIENT_FRAME.values()) <= CLIENT


# ---- the contract models ---------------------------------------------------------------


def error_frame(code: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": "m", "id": "x1"}


def turn_failed(code: str) -> dict[str, Any]:
    error = {"code": code, "message": "m"}
    return {"type": "turn.failed", "conversation_id": "c1", "turn_id": "t1", "seq": 7, "error": error}


def memory_failure(code: str) -> dict[str, Any]:
    return {"kind": "memory.failure", "code": code, "message": "m"}


def tool_completed(code: str) -> dict[str, Any]:
    return {
        "kind": "tool.completed",
        "call_id": "c1",
        "tool": "python",
        "ok": False,
        "output": "",
        "error": {"code": code, "message": "m"},
        "duration_ms": 3,
    }


def parse_error_frame(doc: dict[str, Any]) -> Any:
    return ErrorFrame.model_validate_json(json.dumps(doc))


def parse_server_frame(doc: dict[str, Any]) -> Any:
    return SERVER_FRAME.validate_json(json.dumps(doc))


def parse_memory_reply(doc: dict[str, Any]) -> Any:
    return MEMORY_REPLY.validate_json(json.dumps(doc))


def parse_tool_reply(doc: dict[str, Any]) -> Any:
    return TOOL_REPLY.validate_json(json.dumps(doc))


MODELS = [
    pytest.param(CLIENT, error_frame, parse_error_frame, id="error-frame"),
    pytest.param(TURN, turn_failed, parse_server_frame, id="turn.failed"),
    pytest.param(MEMORY, memory_failure, parse_memory_reply, id="memory.failure"),
    pytest.param(TOOL, tool_completed, parse_tool_reply, id="tool.completed"),
]


@pytest.mark.parametrize(("codes", "build", "parse"), MODELS)
def test_every_code_parses_and_goes_back_on_the_wire_unchanged(codes: frozenset[str], build: Any, parse: Any) -> None:
    for code in sorted(codes):
        doc = build(code)
        parsed = parse(doc)
        assert json.loads(parsed.model_dump_json(exclude_none=True)) == {k: v for k, v in doc.items() if v is not None}


@pytest.mark.parametrize(("codes", "build", "parse"), MODELS)
@pytest.mark.parametrize("bad", ["nope", "Forbidden", "", "memory_", "invalid_thing", "timeout "])
def test_an_unknown_code_is_rejected(codes: frozenset[str], build: Any, parse: Any, bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse(build(bad))
    assert any(e["type"] == "literal_error" and "code" in e["loc"] for e in info.value.errors())


def test_codes_of_one_set_are_not_taken_for_another() -> None:
    with pytest.raises(ValidationError):
        ErrorFrame(code="model_unavailable", message="m")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        parse_server_frame(turn_failed("rate_limited"))
    with pytest.raises(ValidationError):
        parse_memory_reply(memory_failure("memory_internal"))


# ---- what memory and the queues already hold --------------------------------------------

# Frames, results and replies as earlier versions wrote them (memory keeps frames and tool
# results for a long time; messages wait in queues across deploys). Every code that ever
# reached the wire is here, including ones no code path sends any more.
GOLDEN_FRAMES = [
    '{"type": "turn.failed", "conversation_id": "c", "turn_id": "t", "seq": 4,'
    ' "error": {"code": "memory_unsupported", "message": "memory.begin_turn is not implemented by memory yet"}}',
    '{"type": "turn.failed", "conversation_id": "c", "turn_id": "t", "seq": 9,'
    ' "error": {"code": "poison", "message": "the turn failed on repeated attempts"}}',
    '{"type": "turn.failed", "conversation_id": "c", "turn_id": "t", "error": {"code": "cancelled", "message": "x"}}',
    '{"type": "turn.failed", "conversation_id": "c", "turn_id": "t", "seq": 2,'
    ' "error": {"code": "memory_internal", "message": "unexpected reply memory.done"}}',
]
GOLDEN_LOG_ENTRIES = [
    '{"kind": "event.posted", "scope": {"tenant_id": "acme", "user_id": "alice", "conversation_id": "c"},'
    ' "turn_id": "t", "event_id": "t:end", "frame": {"type": "turn.failed", "conversation_id": "c", "turn_id": "t",'
    ' "error": {"code": "deadline_exceeded", "message": "x"}}}',
]
GOLDEN_TOOL_RESULTS = [
    '{"kind": "tool.completed", "call_id": "c1", "tool": "python", "ok": false,'
    ' "error": {"code": "crashed", "message": "killed by SIGXCPU"}, "duration_ms": 5012}',
    '{"kind": "tool.completed", "call_id": "c2", "tool": "delete_file", "ok": false,'
    ' "error": {"code": "interrupted", "message": "a worker died while running it"}}',
    '{"call_id": "c3", "tool": "remember", "ok": false, "error": {"code": "unsupported", "message": "not yet"}}',
]
GOLDEN_MEMORY_REPLIES = [
    '{"kind": "memory.failure", "code": "unsupported",'
    ' "message": "memory.get_approval is not implemented by memory yet"}',
]


@pytest.mark.parametrize("raw", GOLDEN_FRAMES)
def test_stored_frames_still_parse(raw: str) -> None:
    assert SERVER_FRAME.validate_json(raw).type == "turn.failed"


# `tool.finished` as reasoners wrote it before it carried the tool error code.
GOLDEN_TOOL_FINISHED = [
    '{"type": "tool.finished", "conversation_id": "c", "turn_id": "t", "seq": 6, "tool": "calculator",'
    ' "call_id": "call_1", "ok": false, "elapsed_ms": 0}',
    '{"type": "tool.finished", "conversation_id": "c", "turn_id": "t", "seq": 7, "tool": "calculator",'
    ' "call_id": "call_2", "ok": true, "elapsed_ms": 31}',
]


@pytest.mark.parametrize("raw", GOLDEN_TOOL_FINISHED)
def test_stored_tool_finished_frames_without_a_code_still_parse(raw: str) -> None:
    frame = SERVER_FRAME.validate_json(raw)
    assert frame.type == "tool.finished" and frame.error is None and frame.retry_after_ms is None
    assert json.loads(frame.model_dump_json()) == json.loads(raw)  # no `"error": null` added on the way


def tool_finished(code: str, retry_after_ms: int | None = None) -> dict[str, Any]:
    frame = {"type": "tool.finished", "conversation_id": "c", "turn_id": "t", "seq": 8, "tool": "calculator"}
    return {**frame, "call_id": "call_3", "ok": False, "elapsed_ms": 0, "error": code, "retry_after_ms": retry_after_ms}


def test_tool_finished_carries_every_tool_error_code_and_no_other() -> None:
    for code in sorted(TOOL):
        doc = tool_finished(code, 12_000 if code == "rate_limited" else None)
        parsed = parse_server_frame(doc)
        assert json.loads(parsed.model_dump_json(exclude_none=True)) == {k: v for k, v in doc.items() if v is not None}
    for bad in ("nope", "cancelled ", "model_unavailable", "text_too_long"):
        with pytest.raises(ValidationError):
            parse_server_frame(tool_finished(bad))
    for wait in (0, -5):  # "retry now" is no wait: a wait is at least 1 ms
        with pytest.raises(ValidationError):
            parse_server_frame(tool_finished("rate_limited", wait))


@pytest.mark.parametrize("raw", GOLDEN_LOG_ENTRIES)
def test_queued_log_entries_still_parse(raw: str) -> None:
    assert LOG_ENTRY.validate_json(raw).kind == "event.posted"


@pytest.mark.parametrize("raw", GOLDEN_TOOL_RESULTS)
def test_kept_tool_results_still_parse(raw: str) -> None:
    assert not ToolCompleted.model_validate_json(raw).ok


@pytest.mark.parametrize("raw", GOLDEN_MEMORY_REPLIES)
def test_memory_replies_still_parse(raw: str) -> None:
    assert MEMORY_REPLY.validate_json(raw).kind == "memory.failure"


def test_every_code_named_in_the_docs_is_known() -> None:
    """Every table headed `code` in docs/ and the READMEs, and every "code `x`" in their
    prose, names codes of these sets."""
    known = CLIENT | TURN | MEMORY | TOOL | errors.codes(errors.OpenAIErrorCode)
    texts = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", *sorted(ROOT.glob("services/*/README.md"))]
    prose = re.compile(r"\b(?:error )?codes?(?: is)?\s+`([a-z_]+)`|code=\"([a-z_]+)\"|`error\.code` is `([a-z_]+)`")
    seen: dict[str, str] = {}
    for path in texts:
        text, name = path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix()
        for match in prose.finditer(text):
            seen[match.group(1) or match.group(2) or match.group(3)] = name
        for header, cells in tables(text):
            if re.match(r"^\|\s*code\s*\|", header):
                seen.update((code, name) for cell in cells for code in cell_codes(cell))
    assert "poison" in seen and "resume_gap" in seen and "crashed" in seen  # the scan finds codes
    unknown = {(name, code) for code, name in seen.items() if code not in known}
    assert not unknown


def test_openai_md_lists_exactly_the_openai_error_codes() -> None:
    text = (ROOT / "docs" / "openai.md").read_text()
    section = text.split("## Errors", 1)[1]
    listed = set(re.findall(r"^\| `([a-z_]+)` \| \d{3} \|", section, flags=re.MULTILINE))
    assert listed == errors.codes(errors.OpenAIErrorCode)
