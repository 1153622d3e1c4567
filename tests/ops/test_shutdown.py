"""Every service stops cleanly on SIGTERM after real work: exit 0, its last line `stopped`
(run_service's, after the service returned: work drained, connections closed).

tests/faults/test_shutdown_and_deadlines.py covers the reasoner mid-turn; this covers all
five after a turn with a tool call, stopped in the order a rollout might (clients' side first).
"""

from __future__ import annotations

import json
from pathlib import Path

from websockets.asyncio.client import connect

from tests.client import converse
from tests.stack import ORDER, Stack


async def test_every_service_exits_zero_on_sigterm(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        stack.start_all()
        async with connect(stack.ws_url) as ws:
            frames = await converse(ws, "what is 37*91?")
        assert frames[-1]["type"] == "turn.completed", frames[-1]
        codes = {proc.name: stack.terminate(proc, timeout=30) for proc in reversed(list(stack.procs))}
        assert codes == dict.fromkeys(ORDER, 0)
        for proc in stack.procs:
            last = json.loads(proc.log_path.read_text().strip().splitlines()[-1])
            assert last["msg"] == "stopped", (proc.name, last)
    finally:
        stack.close()
