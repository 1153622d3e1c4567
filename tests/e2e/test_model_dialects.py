"""Every server dialect of the offline model through the whole stack: the calculator is
called, the answer arrives, no client frame carries the thinking, the audit record does.

One stack serves every dialect: a `[[dialect:NAME]]` hook in the message picks the wire
format the offline model speaks for that turn (OFFLINE_MODEL_DIALECT sets the default).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agentry_offline_model.dialects import DIALECTS
from agentry_offline_model.rules import REASONING_SENTINEL
from websockets.asyncio.client import connect

from tests.stack import BIN, Stack

pytestmark = pytest.mark.e2e

HIDDEN_REASONING = {"openai-reasoning"}  # the provider keeps its reasoning to itself
# A reply that starts inside the thinking is a property of the model's chat template,
# which the reasoner learns from the model's replies: one model does not switch to it
# between turns, so it gets a stack of its own (below).
ON_THE_SHARED_STACK = [d for d in DIALECTS if d != "open-think"]


async def turn_frames(stack: Stack, text: str) -> tuple[list[str], list[dict[str, Any]]]:
    raw_frames: list[str] = []
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"type": "message", "text": text}))
        while True:
            raw = await asyncio.wait_for(ws.recv(), 60)
            assert isinstance(raw, str)
            raw_frames.append(raw)
            if json.loads(raw)["type"] in ("turn.completed", "turn.failed"):
                return raw_frames, [json.loads(r) for r in raw_frames]


def audited_reasoning(stack: Stack, turn_id: str) -> list[str]:
    """The turn's reasoning as an operator reads it (`agentry-memory-admin reasoning`)."""
    command = [
        str(BIN / "agentry-memory-admin"),
        "reasoning",
        "--tenant",
        "default",
        "--user",
        "dev",
        "--turn",
        turn_id,
    ]
    done = subprocess.run(command, env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [json.loads(line)["text"] for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("dialect", ON_THE_SHARED_STACK)
async def test_every_dialect_answers_with_the_calculator_and_keeps_thinking_private(stack: Stack, dialect: str) -> None:
    raw, frames = await turn_frames(stack, f"what is 37*91? [[dialect:{dialect}]]")
    end = frames[-1]
    assert end["type"] == "turn.completed", end
    assert "3367" in end["text"]
    assert any(f["type"] == "tool.finished" and f["tool"] == "calculator" and f["ok"] for f in frames)
    assert any(f["type"] == "thinking.started" for f in frames)
    for frame in raw:
        assert REASONING_SENTINEL not in frame
        assert "<think>" not in frame and "reasoning_content" not in frame
        assert "hidden by the provider" not in frame
    reasoning = audited_reasoning(stack, end["turn_id"])
    if dialect in HIDDEN_REASONING:
        # Only the count of reasoning tokens, from the usage the reasoner asks for.
        assert any(step.startswith("[reasoning hidden by the provider: ") for step in reasoning), reasoning
    else:
        assert any(REASONING_SENTINEL in step for step in reasoning), reasoning


@pytest.mark.parametrize("dialect", ["llamacpp", "openrouter", "vllm", "inline-think"])
async def test_an_error_event_mid_stream_is_retried_never_internal(stack: Stack, dialect: str) -> None:
    _, frames = await turn_frames(stack, f"what is 37*91? [[dialect:{dialect}]] [[stream-error]]")
    end = frames[-1]
    # The offline model fails only the first of identical requests: the retry gets the answer.
    assert end["type"] == "turn.completed" and "3367" in end["text"], end


@pytest.mark.parametrize("fault", ["call-no-id", "call-stray-brace"])
async def test_odd_tool_call_shapes_still_run_the_calculator(stack: Stack, fault: str) -> None:
    _, frames = await turn_frames(stack, f"what is 37*91? [[dialect:ollama]] [[{fault}]]")
    assert frames[-1]["type"] == "turn.completed" and "3367" in frames[-1]["text"], frames[-1]
    assert not any(f["type"] == "message.delta" and "{" in f["text"] for f in frames)


@pytest.fixture(scope="module")
def open_think_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A model whose chat template opens `<think>` behind a server with no reasoning
    parser (DeepSeek-R1 distills on vLLM or llama.cpp), served under a name that does
    not say so: the reasoner cannot know it before the first reply."""
    s = Stack(Path(tmp_path_factory.mktemp("openthink")), LLM_MODEL="house-model@open-think")
    try:
        s.start_all()
        yield s
    finally:
        s.close()


async def test_a_model_whose_template_opens_the_thinking_never_shows_it_not_even_first(open_think_stack: Stack) -> None:
    """Before: the reasoner's first reply from such a model streamed its thinking to the
    client until the `</think>` came, then took it back with `message.reset`."""
    for _ in range(2):  # the first turn of a fresh reasoner, then one with the model learned
        raw, frames = await turn_frames(open_think_stack, "what is 37*91?")
        end = frames[-1]
        assert end["type"] == "turn.completed" and "3367" in end["text"], end
        assert not any(f["type"] == "message.reset" for f in frames)
        for frame in raw:
            assert REASONING_SENTINEL not in frame and "</think>" not in frame
        assert any(REASONING_SENTINEL in step for step in audited_reasoning(open_think_stack, end["turn_id"]))
