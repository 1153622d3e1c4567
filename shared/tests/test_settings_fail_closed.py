"""Settings fail closed for every service: a refusal never repeats a secret (it is logged as
the crash), and a secret that is set but empty refuses to start instead of meaning a default."""

from __future__ import annotations

import pytest
from agentry_shared.settings import GatewaySettings, MemorySettings, ReasonerSettings, ToolRunnerSettings
from pydantic import ValidationError

# 31 bytes: one short of an HS256 key, so the gateway refuses it.
SHORT_SECRET = "Zq9xK3mP7vR2tY8wB4nL6hJ1cF5dGs0"
AUTH_VARS = ("AUTH_JWT_SECRET", "AUTH_DEV_IDENTITY", "AUTH_JWKS_URL", "AUTH_JWKS_FILE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*AUTH_VARS, "AMQP_URL", "MONGODB_URL"):
        monkeypatch.delenv(name, raising=False)


def refusal(settings: type[object]) -> str:
    with pytest.raises(ValidationError) as info:
        settings()
    return str(info.value)


def test_a_refused_secret_is_not_repeated_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic quotes the input in its errors (about 50 characters of it): here most of
    the secret, which the crash log would then write to stderr."""
    monkeypatch.setenv("AUTH_JWT_SECRET", SHORT_SECRET)
    message = refusal(GatewaySettings)
    assert "AUTH_JWT_SECRET must be at least 32 bytes" in message
    assert SHORT_SECRET[:4] not in message and SHORT_SECRET[-8:] not in message
    monkeypatch.setenv("AUTH_JWKS_URL", "https://idp.example/jwks")
    monkeypatch.setenv("AMQP_URL", "amqp://agentry-gateway:broker-password-1234@rabbitmq/")
    message = refusal(GatewaySettings)
    assert "set only one of" in message
    assert "broker-password" not in message and SHORT_SECRET[-8:] not in message


@pytest.mark.parametrize("settings", [GatewaySettings, ReasonerSettings, MemorySettings, ToolRunnerSettings])
def test_empty_broker_url_refuses_to_start(settings: type[object], monkeypatch: pytest.MonkeyPatch) -> None:
    """A Secret whose AMQP_URL is empty must not mean the default: guest, every permission."""
    monkeypatch.setenv("AUTH_DEV_IDENTITY", "true")
    monkeypatch.setenv("AMQP_URL", "")
    assert "AMQP_URL is set but empty" in refusal(settings)
    monkeypatch.setenv("AMQP_URL", " ")
    assert "AMQP_URL is set but empty" in refusal(settings)


def test_empty_mongodb_url_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty MONGODB_URL must not mean the embedded store: replicas that each keep their
    own file (k8s/mongodb makes the variable required precisely to avoid that)."""
    monkeypatch.setenv("MONGODB_URL", "")
    assert "MONGODB_URL is set but empty" in refusal(MemorySettings)
    monkeypatch.setenv("MONGODB_URL", " ")
    assert "MONGODB_URL is set but empty" in refusal(MemorySettings)
    monkeypatch.delenv("MONGODB_URL")
    assert MemorySettings().mongodb_url is None  # unset: the embedded store, as documented
