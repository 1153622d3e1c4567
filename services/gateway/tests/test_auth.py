"""Identity rules of the handshake: JWT mode and development mode."""

from __future__ import annotations

import time

import jwt
import pytest
from agentry_gateway.auth import AuthError, Identity, authenticate

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def token(claims: dict[str, object], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def status_of(path: str, authorization: str | None = None, *, audience: str | None = None) -> int:
    with pytest.raises(AuthError) as info:
        authenticate(path, authorization, secret=SECRET, audience=audience)
    return info.value.status


def test_header_token() -> None:
    tok = token({"sub": "alice", "tenant": "acme", "exp": int(time.time()) + 60})
    assert authenticate("/ws", f"Bearer {tok}", secret=SECRET, audience=None) == Identity("acme", "alice")


def test_query_token_and_default_tenant() -> None:
    tok = token({"sub": "bob"})
    assert authenticate(f"/ws?token={tok}", None, secret=SECRET, audience=None) == Identity("default", "bob")


def test_header_wins_over_query() -> None:
    good, other = token({"sub": "alice"}), token({"sub": "mallory"})
    assert authenticate(f"/ws?token={other}", f"bearer {good}", secret=SECRET, audience=None).user_id == "alice"


def test_missing_token() -> None:
    assert status_of("/ws") == 401
    assert status_of("/ws?user=alice") == 401  # the dev-mode parameter means nothing with a secret


def test_bad_tokens() -> None:
    assert status_of("/ws?token=garbage") == 401
    assert status_of("/ws", "Bearer " + token({"sub": "alice"}, secret="another-secret-0123456789abcdef-xyz")) == 401
    assert status_of("/ws", "Basic dXNlcjpwYXNz") == 401
    assert status_of("/ws", "Bearer ") == 401
    assert status_of("/ws", "Bearer " + token({"tenant": "acme"})) == 401  # no sub


def test_unsigned_token_refused() -> None:
    unsigned = jwt.encode({"sub": "alice"}, None, algorithm="none")
    assert status_of(f"/ws?token={unsigned}") == 401


def test_expired_token() -> None:
    expired = token({"sub": "alice", "exp": int(time.time()) - 10})
    assert status_of("/ws", f"Bearer {expired}") == 401


def test_audience() -> None:
    right = token({"sub": "alice", "aud": "agentry"})
    assert authenticate("/ws", f"Bearer {right}", secret=SECRET, audience="agentry").user_id == "alice"
    assert status_of("/ws", "Bearer " + token({"sub": "alice", "aud": "other"}), audience="agentry") == 401
    assert status_of("/ws", "Bearer " + token({"sub": "alice"}), audience="agentry") == 401
    # No audience configured: a token's aud claim is not checked.
    assert authenticate("/ws", f"Bearer {right}", secret=SECRET, audience=None).user_id == "alice"


def test_ids_must_match_scope_pattern() -> None:
    assert status_of("/ws", "Bearer " + token({"sub": "alice smith"})) == 400
    assert status_of("/ws", "Bearer " + token({"sub": "alice", "tenant": "a/b"})) == 400
    assert status_of("/ws", "Bearer " + token({"sub": 42})) in (400, 401)


def test_dev_mode() -> None:
    assert authenticate("/ws", None, secret=None, audience=None) == Identity("default", "dev")
    assert authenticate("/ws?user=alice", None, secret=None, audience=None) == Identity("default", "alice")
    assert authenticate("/ws?user=", None, secret=None, audience=None).user_id == "dev"
    with pytest.raises(AuthError) as info:
        authenticate("/ws?user=a%20b", None, secret=None, audience=None)
    assert info.value.status == 400
