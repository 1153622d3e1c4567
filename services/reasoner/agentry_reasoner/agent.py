"""The agent loop of one turn: think, call tools, iterate, answer — within budgets.

No broker, socket or HTTP in here: the model, memory, tools and the event stream come in
as ports, so the loop runs the same against the real services and in unit tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from agentry_shared.contracts.chat import ChatMessage, to_openai
from agentry_shared.contracts.errors import ToolErrorCode, TurnFailureCode
from agentry_shared.contracts.frames import (
    FrameError,
    MessageDelta,
    MessageReset,
    ThinkingFinished,
    ThinkingStarted,
    ToolApprovalRequired,
    ToolFinished,
    ToolStarted,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    arguments_sha256,
)
from agentry_shared.contracts.memory import TurnBegun
from agentry_shared.contracts.tools import ToolCompleted, ToolDescriptor

from agentry_reasoner.answer_gate import AnswerGate
from agentry_reasoner.checkpoint import final_answer, unanswered_calls, with_results_for_unfinished_calls
from agentry_reasoner.coalesce import DeltaCoalescer
from agentry_reasoner.guardrails import check_call, checked_message, tool_error, tool_message
from agentry_reasoner.metrics import TOOL_CALL_REJECTIONS, TOOL_CALLS_PER_TURN
from agentry_reasoner.model import (
    AnswerReset,
    ContextTooLong,
    HiddenReasoning,
    Model,
    ModelError,
    ModelUnavailable,
    ReasoningDelta,
    StreamItem,
    TextDelta,
    ToolCall,
)
from agentry_reasoner.ports import Approvals, Events, Memory, Tools
from agentry_reasoner.window import trimmed, with_tool_outputs_halved

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    max_steps: int = 8
    max_tool_calls: int = 16
    max_parallel_tool_calls: int = 4
    tool_calls_per_minute: int = 0  # per user and tool; 0: no limit
    approval_timeout_s: float = 120.0
    delta_interval_s: float = 0.025
    delta_max_interval_s: float = 0.1
    delta_max_chars: int = 64


@dataclass(frozen=True)
class TurnOutcome:
    ok: bool
    text: str = ""
    code: TurnFailureCode | Literal["duplicate"] | None = None  # "duplicate": a turn already finished


class FrameIds(TypedDict):
    conversation_id: str
    turn_id: str


@dataclass
class ShownCall:
    """A call the client was shown (`tool.started`, or `tool.approval_required`) whose
    `tool.finished` has not gone out yet."""

    tool: str
    awaiting_approval: bool  # no decision yet: the call has not run


def unfinished_call_error(failure: TurnFailureCode, call: ShownCall) -> ToolErrorCode:
    """What a shown call ended by the turn's failure says: stopped by the user's cancel,
    never run when its approval was still open, otherwise it may or may not have run."""
    if failure == "cancelled":
        return "cancelled"
    return "not_approved" if call.awaiting_approval else "interrupted"


class TurnAborted(Exception):
    """Ends the turn with `turn.failed`; `code` is what the client sees."""

    def __init__(self, code: TurnFailureCode, message: str) -> None:
        super().__init__(message)
        self.code: TurnFailureCode = code


def valid_unicode(text: str) -> str:
    """`text` as UTF-8 can carry it: a UTF-16 surrogate pair that came as two code points
    joined into its character, a lone surrogate replaced with U+FFFD. JSON can spell a lone
    surrogate (`"\\ud800"`) and the SDK's decoder passes it on; no frame, log entry or
    store could hold it."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _is_high_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udbff"


def openai_tools(catalog: list[ToolDescriptor]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in catalog
    ]


class Turn:
    """One turn's state while the loop runs; `frame` fills the ids every frame carries."""

    def __init__(
        self,
        *,
        conversation_id: str,
        turn_id: str,
        system_prompt: str,
        model: Model,
        memory: Memory,
        tools: Tools,
        events: Events,
        budget: Budget,
        approvals: Approvals,
    ) -> None:
        self.ids = FrameIds(conversation_id=conversation_id, turn_id=turn_id)
        self.system_prompt = system_prompt
        self.model, self.memory, self.tools, self.events = model, memory, tools, events
        self.budget = budget
        self.approvals = approvals
        self.slots = asyncio.Semaphore(budget.max_parallel_tool_calls)
        self.produced: list[ChatMessage] = []  # what this turn adds to the conversation
        self.unrecorded: dict[int, str] = {}  # steps' reasoning, sent with the next checkpoint
        self.tool_calls_made = 0
        # By call id; a failed turn ends each with `tool.finished` (a client's chip for it
        # would otherwise show it running for good).
        self.unfinished: dict[str, ShownCall] = {}
        # The context as the model reads it, made once per turn: every step sends it again.
        self._sent_history: tuple[list[ChatMessage], list[dict[str, Any]]] | None = None

    async def run(self, begun: TurnBegun) -> TurnOutcome:
        """`begun` says which attempt this is: a later one resumes from the checkpoint."""
        if begun.state in ("completed", "failed"):
            return TurnOutcome(ok=begun.state == "completed", code="duplicate")
        await self.events.emit(TurnStarted(**self.ids))
        if begun.state == "cancelled":
            return await self.fail("cancelled", "The turn was cancelled.")
        if begun.attempt > 1:
            # The client may hold deltas of the attempt that died; tell it to drop them.
            await self.events.emit(MessageReset(reason="resumed", **self.ids))
        try:
            text = await self._loop()
        except TurnAborted as exc:
            return await self.fail(exc.code, str(exc))
        except (ModelUnavailable, ModelError) as exc:
            return await self.fail(exc.code, str(exc))
        reasoning, self.unrecorded = self.unrecorded, {}
        await self.events.complete(TurnCompleted(text=text, **self.ids), self.produced, reasoning)
        TOOL_CALLS_PER_TURN.observe(self.tool_calls_made)
        return TurnOutcome(ok=True, text=text)

    async def fail(self, code: TurnFailureCode, message: str) -> TurnOutcome:
        log.warning("turn failed", extra={"code": code, "reason": message})
        if self.produced:
            await self.checkpoint()
        for step, reasoning in self.unrecorded.items():  # nothing produced to go with it
            await self.memory.record_reasoning(step, reasoning)
        self.unrecorded = {}
        await self._end_unfinished_calls(code)
        await self.events.emit(TurnFailed(error=FrameError(code=code, message=message), **self.ids))
        TOOL_CALLS_PER_TURN.observe(self.tool_calls_made)
        return TurnOutcome(ok=False, code=code)

    async def _end_unfinished_calls(self, failure: TurnFailureCode) -> None:
        """Each call of this attempt the client saw start and not end gets its `tool.finished`
        (before `turn.failed`, which ends the turn). A later attempt of the turn shows its
        calls with frames of its own, so this never repeats one of another attempt's."""
        unfinished, self.unfinished = self.unfinished, {}
        for call_id, shown in unfinished.items():
            error = unfinished_call_error(failure, shown)
            await self.events.emit(ToolFinished(tool=shown.tool, call_id=call_id, ok=False, error=error, **self.ids))

    async def _show_started(self, call: ToolCall) -> None:
        self.unfinished[call.call_id] = ShownCall(call.name, awaiting_approval=False)
        await self.events.emit(ToolStarted(tool=call.name, call_id=call.call_id, **self.ids))

    async def _show_finished(self, frame: ToolFinished) -> None:
        # Forgotten before the emit: an emit cancelled after it took the frame has sent it.
        self.unfinished.pop(frame.call_id, None)
        await self.events.emit(frame)

    async def checkpoint(self) -> None:
        """Store what the turn produced so far, with the reasoning not yet recorded."""
        reasoning, self.unrecorded = self.unrecorded, {}
        await self.memory.append(self.produced, reasoning)

    async def _loop(self) -> str:
        context = await self.memory.context()
        history, self.produced = context.messages, list(context.produced)
        catalog = await self.tools.catalog()
        by_name = {t.name: t for t in catalog}
        tool_specs = openai_tools(catalog)
        resumed_answer = final_answer(self.produced)
        if resumed_answer is not None:
            # The answer was checkpointed but never announced: send it whole.
            await self.events.emit(MessageDelta(text=resumed_answer, **self.ids))
            return resumed_answer
        pending = unanswered_calls(self.produced)
        if pending:
            # Asked again: the tool-runners kept the results of those that ran.
            self.tool_calls_made = sum(len(m.tool_calls or []) for m in self.produced) - len(pending)
            await self._run_and_record(pending, by_name)
        self.tool_calls_made = sum(len(m.tool_calls or []) for m in self.produced)
        for step in range(sum(m.role == "assistant" for m in self.produced), self.budget.max_steps):
            text, calls, history = await self._fitted_step(step, history, tool_specs)
            if not calls and not text.strip():
                # An empty bubble and an empty assistant message in every later context say
                # nothing to the user; a reasoning model cut off while still thinking ends so.
                raise TurnAborted(
                    "model_error",
                    "The model ended its reply with neither an answer nor a tool call (cut off "
                    "by LLM_MAX_OUTPUT_TOKENS while it was still thinking?).",
                )
            if not calls:
                self.produced.append(ChatMessage(role="assistant", content=text))
                return text
            self.produced.append(
                ChatMessage(
                    role="assistant",
                    content=text or None,
                    tool_calls=[
                        {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                        for c in calls
                    ],
                )
            )
            if not all(c.name in by_name and by_name[c.name].pure for c in calls):
                await self.checkpoint()  # the calls are fixed before any runs
            # else pure functions only: running them again has no effect, so a resumed turn
            # may as well ask the model again; their step goes with the next checkpoint.
            await self._run_and_record(calls, by_name)
        raise TurnAborted(
            "step_limit",
            f"The agent stopped after {self.budget.max_steps} steps (REASONER_MAX_STEPS) without reaching an answer.",
        )

    async def _fitted_step(
        self, step: int, history: list[ChatMessage], tool_specs: list[dict[str, Any]]
    ) -> tuple[str, list[ToolCall], list[ChatMessage]]:
        """A model step; when the prompt does not fit the model's window, the older half of
        the conversation is left out and the step tried once more, then this turn's tool
        outputs are halved while any is long (then `context_too_long`). The halved outputs
        are what the turn keeps: the next turn would not fit with them whole either."""
        tried_shorter = False
        while True:
            messages = [{"role": "system", "content": self.system_prompt}, *self._as_sent(history)]
            messages += to_openai(self.produced)
            try:
                text, calls = await self._model_step(step, messages, tool_specs)
                return text, calls, history
            except ContextTooLong:
                shorter = None if tried_shorter else trimmed(history)
                if shorter is not None:
                    tried_shorter = True
                    log.warning("the context does not fit the model; leaving older messages out", extra={"step": step})
                    history = shorter
                    continue
                halved = with_tool_outputs_halved(self.produced)
                if halved is None:
                    raise
                log.warning("the context does not fit the model; halving tool outputs", extra={"step": step})
                self.produced = halved

    def _as_sent(self, history: list[ChatMessage]) -> list[dict[str, Any]]:
        """`history` in the model's format, converted once for all the turn's steps (for a
        long context, ~0.15 ms a step); a trimmed history is a new list, converted anew.
        Calls an earlier turn left without results (it was cancelled or failed while they
        ran) get one saying so: the model's API refuses calls without results."""
        if self._sent_history is None or self._sent_history[0] is not history:
            self._sent_history = (history, to_openai(with_results_for_unfinished_calls(history)))
        return self._sent_history[1]

    async def _run_and_record(self, calls: list[ToolCall], by_name: dict[str, ToolDescriptor]) -> None:
        """The results go with the next checkpoint (the next step's calls or the answer), not
        one of their own: until then the tool-runners keep them by call id, so a resumed
        turn asks again and gets them without running anything twice."""
        results = await self._run_tools(calls, by_name)
        for call, result in zip(calls, results, strict=True):
            self.produced.append(ChatMessage(role="tool", tool_call_id=call.call_id, content=tool_message(result)))

    async def _model_step(
        self, step: int, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> tuple[str, list[ToolCall]]:
        """One model call: thinking frames, the answer streamed through the gate, or calls.

        Thinking runs from the model's first sign of life until its first answer token or
        call; its text goes to the audit record only. Text is held while it may be the
        start of a tool call (answer_gate), and taken back with `message.reset` when the
        step turns out to be something else than the answer it looked like."""
        state = _StepState(self, step)
        try:
            async for item in self.model.stream(messages, tools):
                await state.take(item)
            await state.finish()
        except BaseException:
            # Cancelled or failed midway: what the coalescer holds was never seen, and is not
            # the end of any answer (a cancelled turn's client must get nothing more of it).
            await state.coalescer.discard()
            raise
        finally:
            await state.coalescer.close()
        if state.audit_text():
            self.unrecorded[step] = state.audit_text()  # goes with the step's checkpoint
        return "".join(state.text), state.calls

    def _call_id(self, step: int, index: int) -> str:
        """A call the server sent without an id: named by turn, step and index, so a
        resumed turn names it the same (tool results are cached by id)."""
        key = f"{self.ids['turn_id']}:{step}:{index}"
        return f"call_{hashlib.sha256(key.encode()).hexdigest()[:24]}"

    async def _run_tools(self, calls: list[ToolCall], by_name: dict[str, ToolDescriptor]) -> list[ToolCompleted]:
        """The calls of one step run in parallel (at most `max_parallel_tool_calls` at once);
        each ends in a result the model reads. Calls past the turn's budget are refused.
        One that raises (memory down, a bug) stops the others before the turn ends: they
        must not run on and report after its `turn.failed`."""
        allowed = max(0, self.budget.max_tool_calls - self.tool_calls_made)
        self.tool_calls_made += len(calls)
        limit = f"This turn already used its {self.budget.max_tool_calls} tool calls."
        tasks = [
            asyncio.ensure_future(
                self._run_tool(call, by_name) if i < allowed else self._refuse(call, "tool_limit", limit)
            )
            for i, call in enumerate(calls)
        ]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _refuse(
        self, call: ToolCall, reason: ToolErrorCode, message: str, retry_after_s: float | None = None
    ) -> ToolCompleted:
        """The call does not run: the model reads why (`message`), the client gets the code
        and, when waiting helps, how long (`retry_after_s`), never the message."""
        TOOL_CALL_REJECTIONS.labels(reason).inc()
        retry_after_ms = None if retry_after_s is None else max(1, math.ceil(retry_after_s * 1000))
        await self._show_started(call)
        await self._show_finished(
            ToolFinished(
                tool=call.name,
                call_id=call.call_id,
                ok=False,
                error=reason,
                retry_after_ms=retry_after_ms,
                **self.ids,
            )
        )
        return tool_error(call, reason, message)

    async def _run_tool(self, call: ToolCall, by_name: dict[str, ToolDescriptor]) -> ToolCompleted:
        checked = check_call(call, by_name)
        if isinstance(checked, ToolCompleted):
            return await self._refuse(
                call, checked.error.code if checked.error else "invalid_arguments", checked_message(checked)
            )
        tool, arguments = checked
        if self.budget.tool_calls_per_minute:
            wait = await self.tools.take_token(tool)
            if wait > 0:
                message = f"Too many {tool.name} calls; retry in {wait:.0f}s."
                return await self._refuse(call, "rate_limited", message, retry_after_s=wait)
        if tool.side_effect == "destructive" and not await self._approved(call, tool, arguments):
            message = f"The user did not approve this {tool.name} call."
            return await self._refuse(call, "not_approved", message)
        async with self.slots:
            started = time.monotonic()
            await self._show_started(call)
            result = await self.tools.call(tool, call.call_id, arguments)
            elapsed = int((time.monotonic() - started) * 1000)
        # The code the model reads (tool_message: a failure without an error reads as `failed`).
        failed = None if result.ok else (result.error.code if result.error else "failed")
        # A limit of the tool-runner's says when to retry, as the reasoner's own does (_refuse).
        retry_after_ms = result.retry_after_ms if failed == "rate_limited" else None
        await self._show_finished(
            ToolFinished(
                tool=call.name,
                call_id=call.call_id,
                ok=result.ok,
                elapsed_ms=elapsed,
                error=failed,
                retry_after_ms=retry_after_ms,
                **self.ids,
            )
        )
        return result

    async def _approved(self, call: ToolCall, tool: ToolDescriptor, arguments: dict[str, Any]) -> bool:
        decided = await self.approvals.decision(call.call_id, arguments)
        if decided is not None:
            return decided
        timeout = self.budget.approval_timeout_s
        self.unfinished[call.call_id] = ShownCall(tool.name, awaiting_approval=True)
        await self.events.emit(
            ToolApprovalRequired(
                tool=tool.name,
                call_id=call.call_id,
                arguments=arguments,
                args_sha256=arguments_sha256(arguments),
                expires_in_ms=int(timeout * 1000),
                **self.ids,
            )
        )
        approved = await self.approvals.ask(tool.name, call.call_id, arguments, timeout)
        if approved and (shown := self.unfinished.get(call.call_id)) is not None:
            shown.awaiting_approval = False  # it may run from now on
        return approved


class _StepState:
    """What one model step has produced so far, and what the client has been shown of it."""

    def __init__(self, turn: Turn, step: int) -> None:
        self.turn, self.step = turn, step
        self.reasoning: list[str] = []
        self.hidden_reasoning_tokens = 0  # reported by a provider that keeps its reasoning
        self.thinking_since: float | None = None
        self.thought = False
        self.text: list[str] = []
        self.split_pair = ""  # a delta's last code point, the first half of a surrogate pair
        self.sent = False  # some of `text` went to the client
        self.calls: list[ToolCall] = []
        self.gate = AnswerGate()
        budget = turn.budget
        self.coalescer = DeltaCoalescer(
            self._send_delta, budget.delta_interval_s, budget.delta_max_chars, budget.delta_max_interval_s
        )

    async def take(self, item: StreamItem) -> None:
        if isinstance(item, ReasoningDelta):
            await self._on_reasoning(item.text)
        elif isinstance(item, HiddenReasoning):
            self.hidden_reasoning_tokens = item.tokens
        elif isinstance(item, AnswerReset):
            await self._take_back(item.reason)
        else:
            await self._end_thinking()
            if isinstance(item, TextDelta):
                await self._on_text(item.text)
            else:
                self.calls = [
                    ToolCall(
                        valid_unicode(c.call_id) or self.turn._call_id(self.step, i),
                        valid_unicode(c.name),
                        valid_unicode(c.arguments),
                    )
                    for i, c in enumerate(item.calls)
                ]

    async def finish(self) -> None:
        """The stream ended: what the gate still holds is the answer, unless calls came."""
        await self._end_thinking()
        if self.split_pair:  # its second half never came
            self.split_pair = ""
            await self._on_text("\ufffd")
        rest = self.gate.rest()
        if self.calls:
            if self.sent:
                await self._take_back("tool_calls")
        elif rest:
            await self.coalescer.add(rest)

    def audit_text(self) -> str:
        """The step's reasoning as the audit records it (never sent to a client)."""
        text = valid_unicode("".join(self.reasoning))
        if not text and self.hidden_reasoning_tokens:
            return f"[reasoning hidden by the provider: {self.hidden_reasoning_tokens} tokens]"
        return text

    async def _send_delta(self, piece: str, last: bool) -> None:
        # The stream's last piece may wait for the frame that follows it (the turn's end).
        await self.turn.events.emit(MessageDelta(text=piece, **self.turn.ids), hold=last)

    async def _on_reasoning(self, text: str) -> None:
        if not self.thought:
            self.thought, self.thinking_since = True, time.monotonic()
            await self.turn.events.emit(ThinkingStarted(step=self.step, **self.turn.ids))
        self.reasoning.append(text)

    async def _on_text(self, text: str) -> None:
        text, self.split_pair = self.split_pair + text, ""
        if text and _is_high_surrogate(text[-1]):  # its pair may open the next delta
            text, self.split_pair = text[:-1], text[-1]
        text = valid_unicode(text)
        if not text:
            return
        self.text.append(text)
        piece = self.gate.offer(text)
        if piece:
            self.sent = True
            await self.coalescer.add(piece)

    async def _end_thinking(self) -> None:
        if self.thinking_since is None:
            return
        elapsed = int((time.monotonic() - self.thinking_since) * 1000)
        self.thinking_since = None
        await self.turn.events.emit(ThinkingFinished(step=self.step, elapsed_ms=elapsed, **self.turn.ids))

    async def _take_back(self, reason: str) -> None:
        self.text.clear()
        self.split_pair = ""
        self.gate.reset()
        await self.coalescer.discard()
        if self.sent:
            await self.turn.events.emit(MessageReset(reason=reason, **self.turn.ids))
        self.sent = False
