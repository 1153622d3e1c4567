"""Timestamps for `bench timeline`, loaded into each service by Python's `site` when this
folder is on PYTHONPATH and `AGENTRY_PROBE_DIR` is set (never in production: only the
bench sets either).

Each process appends lines `<monotonic ns> <service> <event> <turn_id> <call_id> <detail>`
to its own file: every AMQP publish (`pub>` when handed to aiormq, `pub<` when confirmed),
every delivery (`dlv`, once its body is read), and the entry and exit of the functions in
`TIMED`. CLOCK_MONOTONIC is one clock for every process of the machine, so the files
merge into one timeline without tracing's own cost (the OTLP timeline overstated each
step: docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

# (module, class, method, label): coroutine functions and async generators are timed at
# entry (`label>`), first item (`label1`, generators) and exit (`label<`); plain functions
# likewise (they run on whatever thread calls them).
TIMED = [
    ("agentry_gateway.connection", "ClientSession", "_handle", "gw.frame"),
    ("agentry_gateway.fanout", "Fanout", "_on_message", "gw.fanout"),
    ("agentry_memory.log.consumer", "LogConsumer", "handle", "mem.entry"),
    ("agentry_memory.log.sequencer", "ConversationLog", "ingest", "mem.ingest"),
    ("agentry_memory.context.assembler", "ContextAssembler", "assemble", "mem.context"),
    ("agentry_memory.store.sqlite.base", "SqliteBase", "_commit_group", "mem.commit"),
    ("agentry_reasoner.handlers", "TurnConsumer", "_on_message", "rs.turn"),
    ("agentry_reasoner.agent", "Turn", "_model_step", "rs.step"),
    ("agentry_reasoner.model.openai_chat", "OpenAIModel", "stream", "rs.model"),
    ("agentry_reasoner.broker_ports", "BrokerEvents", "emit", "rs.emit"),
    ("agentry_tool_runner.calls.handlers", "ToolCallConsumer", "_handle", "tr.call"),
]

_TURN = re.compile(rb'"turn_id":"([^"]+)"')
_CALL = re.compile(rb'"call_id":"([^"]+)"')


class Stamps:
    def __init__(self, folder: str) -> None:
        self.service = os.path.basename(sys.argv[0]).removeprefix("agentry-")
        path = os.path.join(folder, f"{self.service}-{os.getpid()}.txt")
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 (open for the process's life)

    def __call__(self, event: str, body: bytes = b"", detail: str = "-") -> None:
        turn = _TURN.search(body)
        call = _CALL.search(body)
        turn_id = turn.group(1).decode() if turn else "-"
        call_id = call.group(1).decode() if call else "-"
        self.file.write(f"{time.monotonic_ns()} {self.service} {event} {turn_id} {call_id} {detail}\n")


def timed(stamp: Stamps, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def generator(*args: Any, **kwargs: Any) -> Any:
            stamp(label + ">")
            first = True
            async for item in fn(*args, **kwargs):
                if first:
                    stamp(label + "1", detail=type(item).__name__)
                    first = False
                yield item
            stamp(label + "<")

        return generator
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coroutine(*args: Any, **kwargs: Any) -> Any:
            kind = getattr(args[1], "type", None) if len(args) > 1 else None  # a frame's type
            detail = kind if isinstance(kind, str) else "-"
            stamp(label + ">", detail=detail)
            try:
                return await fn(*args, **kwargs)
            finally:
                stamp(label + "<", detail=detail)

        return coroutine

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        stamp(label + ">")
        try:
            return fn(*args, **kwargs)
        finally:
            stamp(label + "<")

    return plain


def probe_amqp(stamp: Stamps) -> None:
    import aiormq.channel

    channel = aiormq.channel.Channel
    publish, read = channel.basic_publish, channel._read_content

    async def basic_publish(self: Any, body: bytes, *args: Any, **kwargs: Any) -> Any:
        exchange = str(kwargs.get("exchange", "")).rsplit(".", 1)[-1]
        stamp("pub>", body, exchange)
        try:
            return await publish(self, body, *args, **kwargs)
        finally:
            stamp("pub<", body, exchange)

    async def read_content(self: Any, frame: Any, header: Any) -> Any:
        message = await read(self, frame, header)
        stamp("dlv", message.body, str(getattr(frame, "exchange", "") or "").rsplit(".", 1)[-1])
        return message

    channel.basic_publish = basic_publish  # type: ignore[method-assign]
    channel._read_content = read_content  # type: ignore[method-assign]


class TimeOnImport(importlib.abc.MetaPathFinder):
    """Wraps the `TIMED` methods of a module as it is first imported."""

    def __init__(self, stamp: Stamps) -> None:
        self.stamp = stamp
        self.pending: dict[str, list[tuple[str, str, str]]] = {}
        for module, cls, method, label in TIMED:
            self.pending.setdefault(module, []).append((cls, method, label))

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.pending:
            return None
        sys.meta_path.remove(self)  # let the normal finders find it
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader, wanted = spec.loader, self.pending.pop(fullname)
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            for cls, method, label in wanted:
                owner = getattr(module, cls)
                setattr(owner, method, timed(self.stamp, owner.__dict__[method], label))

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if folder := os.environ.get("AGENTRY_PROBE_DIR"):
    _stamp = Stamps(folder)
    probe_amqp(_stamp)
    sys.meta_path.insert(0, TimeOnImport(_stamp))
