"""Every line a service writes to stderr is JSON, also when it crashes: on a bad setting
(before run_service), or inside it (no broker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def crash(script: str, **env: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [str(BIN / script)],
        env={**os.environ, "AUTH_DEV_IDENTITY": "true", **env},
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert lines, "a crash says something"
    return [json.loads(line) for line in lines]  # raises on any line that is not JSON


@pytest.mark.parametrize(
    ("script", "env"),
    [
        ("agentry-gateway", {"AGENTRY_PARTITIONS": "0"}),
        ("agentry-offline-model", {"OFFLINE_MODEL_DIALECT": "no-such-server"}),
    ],
)
def test_a_bad_setting_is_one_json_line(script: str, env: dict[str, str]) -> None:
    (line,) = crash(script, **env)
    assert line["level"] == "critical" and line["msg"] == "crashed"
    assert "ValidationError" in str(line["error"]) and "Traceback" in str(line["exc"])
    assert line["service"] == script.removeprefix("agentry-")


def test_a_crash_inside_the_service_is_json(tmp_path: Path) -> None:
    lines = crash(
        "agentry-memory",
        AMQP_URL="amqp://guest:guest@127.0.0.1:1/",
        MEMORY_DATA_DIR=str(tmp_path),
        MEMORY_PORT="0",
    )
    assert lines[-1]["msg"] == "crashed" and lines[-1]["service"] == "memory"
