"""Fail closed: a gateway that cannot verify tokens refuses to start, naming the variable."""

from __future__ import annotations

import pytest
from agentry_shared.settings import GatewaySettings
from pydantic import ValidationError

SECRET = "s3cret-for-tests-only-0123456789abcdef"
AUTH_VARS = ("AUTH_JWT_SECRET", "AUTH_DEV_IDENTITY", "AUTH_JWKS_URL", "AUTH_JWKS_FILE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AUTH_VARS:
        monkeypatch.delenv(name, raising=False)


def refusal(**values: object) -> str:
    with pytest.raises(ValidationError) as info:
        GatewaySettings(**values)  # type: ignore[arg-type]
    return str(info.value)


def test_empty_secret_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Kubernetes Secret whose key exists but is empty: not "no authentication"."""
    monkeypatch.setenv("AUTH_JWT_SECRET", "")
    assert "AUTH_JWT_SECRET is set but empty" in refusal()
    monkeypatch.setenv("AUTH_JWT_SECRET", "  ")
    assert "AUTH_JWT_SECRET" in refusal()
    # Not even with the development identity asked for: the operator meant a secret.
    monkeypatch.setenv("AUTH_DEV_IDENTITY", "true")
    assert "AUTH_JWT_SECRET" in refusal()


def test_no_key_refuses_to_start_unless_dev_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal()
    assert "AUTH_JWT_SECRET" in message and "AUTH_DEV_IDENTITY" in message
    monkeypatch.setenv("AUTH_DEV_IDENTITY", "true")
    assert GatewaySettings().auth_dev_identity
    monkeypatch.setenv("AUTH_DEV_IDENTITY", "false")
    assert "AUTH_DEV_IDENTITY" in refusal()


def test_short_secret_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_JWT_SECRET", "short")
    assert "at least 32 bytes" in refusal()
    monkeypatch.setenv("AUTH_JWT_SECRET", SECRET)
    settings = GatewaySettings()
    assert settings.auth_jwt_secret is not None and not settings.auth_dev_identity
