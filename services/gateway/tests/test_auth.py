"""Identity rules of the handshake: JWT (HS256) mode and development mode."""

from __future__ import annotations

import time
from collections.abc import Mapping

import jwt
import pytest
from agentry_gateway.auth import AuthError, Identity, Policy, RefusalReason, decode, dev_identity, token_of
from agentry_gateway.authenticator import Authenticator, SecretVerifier

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def token(claims: Mapping[str, object], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(dict(claims), secret, algorithm=algorithm)


def authenticate(path: str, authorization: str | None = None, *, policy: Policy | None = None) -> Identity:
    """The identity an HS256 gateway would give a handshake (pure: no I/O in SecretVerifier)."""
    headers = [authorization] if authorization is not None else []
    return decode(token_of(path, headers), SECRET, ["HS256"], policy or Policy())


def refused(path: str, authorization: str | None = None, *, policy: Policy | None = None) -> tuple[int, RefusalReason]:
    with pytest.raises(AuthError) as info:
        authenticate(path, authorization, policy=policy)
    return info.value.status, info.value.reason


def test_header_token() -> None:
    exp = int(time.time()) + 60
    identity = authenticate("/ws", "Bearer " + token({"sub": "alice", "tenant": "acme", "exp": exp}))
    assert identity == Identity("acme", "alice") and identity.expires_at == exp


def test_query_token_and_default_tenant() -> None:
    tok = token({"sub": "bob"})
    assert authenticate(f"/ws?token={tok}") == Identity("default", "bob")


def test_header_wins_over_query() -> None:
    good, other = token({"sub": "alice"}), token({"sub": "mallory"})
    assert authenticate(f"/ws?token={other}", f"bearer {good}").user_id == "alice"


def test_missing_token() -> None:
    assert refused("/ws") == (401, "missing_token")
    assert refused("/ws?user=alice") == (401, "missing_token")  # the dev-mode parameter means nothing here


def test_bad_tokens() -> None:
    assert refused("/ws?token=garbage") == (401, "invalid_token")
    other = token({"sub": "alice"}, secret="another-secret-0123456789abcdef-xyz")
    assert refused("/ws", f"Bearer {other}") == (401, "invalid_token")
    assert refused("/ws", "Basic dXNlcjpwYXNz") == (401, "malformed_header")
    assert refused("/ws", "Bearer ") == (401, "malformed_header")
    assert refused("/ws", "Bearer " + token({"tenant": "acme"})) == (401, "bad_claims")  # no sub
    with pytest.raises(AuthError) as info:
        token_of("/ws", ["Bearer a", "Bearer b"])
    assert (info.value.status, info.value.reason) == (400, "malformed_header")


def test_unsigned_token_refused() -> None:
    unsigned = jwt.encode({"sub": "alice"}, "", algorithm="none")
    assert refused(f"/ws?token={unsigned}") == (401, "bad_algorithm")


def test_expired_token() -> None:
    expired = token({"sub": "alice", "exp": int(time.time()) - 10})
    assert refused("/ws", f"Bearer {expired}") == (401, "expired")
    # Within the leeway: clocks disagree a little.
    assert authenticate("/ws", f"Bearer {expired}", policy=Policy(leeway=30)).user_id == "alice"


@pytest.mark.parametrize("exp", ["4102444800", True, "soon", [1], None])
def test_exp_must_be_a_number(exp: object) -> None:
    """PyJWT takes int() of exp: a string exp far in the future would verify."""
    status, reason = refused("/ws", "Bearer " + token({"sub": "alice", "exp": exp}))
    assert status == 401 and reason in ("bad_claims", "invalid_token", "expired")


def test_string_exp_refused_as_bad_claims() -> None:
    assert refused("/ws", "Bearer " + token({"sub": "alice", "exp": "4102444800"})) == (401, "bad_claims")
    assert refused("/ws", "Bearer " + token({"sub": "alice", "nbf": "0"})) == (401, "bad_claims")
    assert authenticate("/ws", "Bearer " + token({"sub": "alice", "exp": time.time() + 60.5})).user_id == "alice"


def test_audience_and_issuer() -> None:
    right = token({"sub": "alice", "aud": "agentry", "iss": "https://idp.example"})
    policy = Policy(audience="agentry", issuer="https://idp.example")
    assert authenticate("/ws", f"Bearer {right}", policy=policy).user_id == "alice"
    wrong_aud = token({"sub": "alice", "aud": "other", "iss": "https://idp.example"})
    assert refused("/ws", f"Bearer {wrong_aud}", policy=policy) == (401, "wrong_audience")
    wrong_iss = token({"sub": "alice", "aud": "agentry", "iss": "https://evil.example"})
    assert refused("/ws", f"Bearer {wrong_iss}", policy=policy) == (401, "wrong_issuer")
    assert refused("/ws", "Bearer " + token({"sub": "alice", "aud": "agentry"}), policy=policy) == (401, "bad_claims")
    assert refused("/ws", "Bearer " + token({"sub": "alice"}), policy=Policy(audience="agentry"))[0] == 401
    # No audience configured: a token's aud claim is not checked.
    assert authenticate("/ws", f"Bearer {right}").user_id == "alice"


def test_ids_must_match_scope_pattern() -> None:
    assert refused("/ws", "Bearer " + token({"sub": "alice smith"})) == (400, "invalid_id")
    assert refused("/ws", "Bearer " + token({"sub": "alice", "tenant": "a/b"})) == (400, "invalid_id")
    # Authentic but unusable: a fresh token of the same kind would not help.
    assert refused("/ws", "Bearer " + token({"sub": "alice", "tenant": 42})) == (400, "bad_claims")
    assert refused("/ws", "Bearer " + token({"sub": 42})) == (401, "invalid_token")  # PyJWT checks sub itself


def test_dev_mode() -> None:
    assert dev_identity("/ws") == Identity("default", "dev")
    assert dev_identity("/ws?user=alice") == Identity("default", "alice")
    assert dev_identity("/ws?user=").user_id == "dev"
    with pytest.raises(AuthError) as info:
        dev_identity("/ws?user=a%20b")
    assert info.value.status == 400


async def test_reauth_rules() -> None:
    authenticator = Authenticator(SecretVerifier(SECRET, Policy()))
    later = int(time.time()) + 600
    current = Identity("acme", "alice", expires_at=time.time() + 5)
    fresh = await authenticator.reauth(current, token({"sub": "alice", "tenant": "acme", "exp": later}), "test")
    assert fresh == current and fresh.expires_at == later
    for claims in ({"sub": "mallory", "tenant": "acme"}, {"sub": "alice", "tenant": "other"}):
        with pytest.raises(AuthError) as info:
            await authenticator.reauth(current, token(claims), "test")
        assert info.value.reason == "other_identity"
    with pytest.raises(AuthError) as info:
        await Authenticator(None).reauth(current, token({"sub": "alice"}), "test")
    assert info.value.reason == "no_tokens"
