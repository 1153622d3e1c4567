"""docs/contracts/ is what scripts/contracts.py makes of the models today, and the AsyncAPI
document is valid by the official AsyncAPI 3.0 schema (npm `@asyncapi/specs`, installed by
`make asyncapi-spec` into .cache/npm, which `make test` runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "docs" / "contracts"
SPEC = ROOT / ".cache" / "npm" / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0.json"


def load_asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((CONTRACTS / "asyncapi.yaml").read_text())
    return document


def spec_validator() -> Draft7Validator:
    if not SPEC.exists():
        pytest.fail(f"{SPEC.relative_to(ROOT)} is missing: run `make asyncapi-spec` (make test does)")
    return Draft7Validator(json.loads(SPEC.read_text()))


def test_regenerating_gives_the_committed_files() -> None:
    check = subprocess.run(
        [sys.executable, "scripts/contracts.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr


def test_the_asyncapi_document_is_valid_asyncapi_3() -> None:
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in spec_validator().iter_errors(load_asyncapi())]
    assert errors == []


def test_the_spec_check_does_catch_a_broken_document() -> None:
    document = load_asyncapi()
    document["operations"]["sendServerFrame"]["action"] = "publish"  # AsyncAPI 2 wording: invalid in 3.0
    del document["info"]["version"]
    assert len(list(spec_validator().iter_errors(document))) >= 2


def test_every_frame_of_the_models_is_in_the_frames_schema_and_real_frames_validate() -> None:
    schema = json.loads((CONTRACTS / "frames.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    frames = Draft202012Validator(schema)
    good = [
        {"type": "message", "text": "what is 37*91?"},
        {"type": "approve", "turn_id": "t-1", "call_id": "call_7", "args_sha256": "0" * 64, "approved": True},
        {"type": "message.delta", "conversation_id": "c", "turn_id": "t", "seq": 9, "text": "= 3367."},
        {
            "type": "turn.failed",
            "conversation_id": "c",
            "turn_id": "t",
            "seq": 10,
            "error": {"code": "cancelled", "message": "The turn was cancelled."},
        },
        {"type": "error", "code": "forbidden", "message": "not yours", "conversation_id": None, "id": None},
    ]
    for frame in good:
        assert list(frames.iter_errors(frame)) == [], frame
    bad = [
        {"type": "approve", "call_id": "call_7", "approved": "true"},
        {
            "type": "turn.failed",
            "conversation_id": "c",
            "turn_id": "t",
            "seq": 1,
            "error": {"code": "oops", "message": ""},
        },
        {"type": "no.such.frame"},
    ]
    for frame in bad:
        assert list(frames.iter_errors(frame)) != [], frame
