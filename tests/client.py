"""Helpers of the cross-service tests: over `agentry_client` (the project's Python client),
and over a raw socket for the tests that send what no client library would (bad frames,
protocol edge cases)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agentry_client import AgentryClient, frame_dict
from websockets.asyncio.client import ClientConnection

TERMINAL = {"turn.completed", "turn.failed"}


async def next_frame(ws: ClientConnection, timeout: float = 30.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(raw, str), "server frames are text"
    frame: dict[str, Any] = json.loads(raw)
    return frame


async def send(ws: ClientConnection, frame: dict[str, Any] | str) -> None:
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))


async def approve(ws: ClientConnection, required: dict[str, Any], approved: bool, **fields: Any) -> None:
    """Answer a `tool.approval_required` frame, echoing what names the call and its arguments."""
    echoed = {key: required[key] for key in ("conversation_id", "turn_id", "call_id", "args_sha256")}
    await send(ws, {"type": "approve", **echoed, "approved": approved, **fields})


async def until_turn_ends(ws: ClientConnection, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Frames up to and with the end of the next turn that ends on this socket."""
    frames: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await next_frame(ws, max(0.1, deadline - loop.time()))
        frames.append(frame)
        if frame["type"] in TERMINAL:
            return frames


async def converse(
    ws: ClientConnection, text: str, conversation_id: str | None = None, client_id: str | None = None
) -> list[dict[str, Any]]:
    message: dict[str, Any] = {"type": "message", "text": text}
    if conversation_id:
        message["conversation_id"] = conversation_id
    if client_id:
        message["id"] = client_id
    await send(ws, message)
    return await until_turn_ends(ws)


def answer(frames: list[dict[str, Any]]) -> str:
    end = frames[-1]
    assert end["type"] == "turn.completed", end
    text: str = end["text"]
    return text


async def converse_with(
    client: AgentryClient,
    text: str,
    conversation_id: str | None = None,
    client_id: str | None = None,
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """`converse` through agentry_client: the turn's frames, as the JSON objects they came as."""
    turn = await client.send(text, conversation_id, id=client_id)
    async with asyncio.timeout(timeout):
        await turn.wait()
    return [frame_dict(frame) for frame in turn.frames]
