"""RS256/ES256 tokens against a JWKS served over real local HTTP (and from a file):
rotation, the refetch rate limit, issuer/audience/leeway, algorithm confusion, and a
gateway that refuses over the wire and counts it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import jwt
import pytest
from agentry_gateway import metrics
from agentry_gateway.auth import AuthError, Identity, Policy, RefusalReason
from agentry_gateway.authenticator import Authenticator, JwksVerifier
from agentry_gateway.jwks import KeySet, file_fetch, url_fetch
from agentry_shared.ops import metrics_response_body
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

if TYPE_CHECKING:
    from services.gateway.tests.conftest import Broker, StartGateway

ISSUER = "https://idp.test"
AUDIENCE = "agentry"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass
class Signer:
    kid: str
    key: PrivateKey
    alg: str

    def jwk(self) -> dict[str, Any]:
        if isinstance(self.key, rsa.RSAPrivateKey):
            text = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key())
        else:
            text = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key())
        data: dict[str, Any] = json.loads(text)
        return {**data, "kid": self.kid, "use": "sig", "alg": self.alg}

    def token(self, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        body = {"sub": "alice", "tenant": "acme", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}
        body.update(claims)
        fields = {k: v for k, v in {"kid": self.kid, **(headers or {})}.items() if v is not None}
        return jwt.encode(body, self.key, algorithm=self.alg, headers=fields)


def rsa_signer(kid: str) -> Signer:
    return Signer(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


def ec_signer(kid: str) -> Signer:
    return Signer(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")


@dataclass
class Issuer:
    """A JWKS endpoint on a real local HTTP server; `signers` is what it publishes."""

    signers: list[Signer]
    requests: int = 0
    extra_keys: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def document(self) -> bytes:
        return json.dumps({"keys": [s.jwk() for s in self.signers] + self.extra_keys}).encode()


@pytest.fixture(scope="module")
def signers() -> dict[str, Signer]:
    return {"rsa1": rsa_signer("rsa1"), "rsa2": rsa_signer("rsa2"), "ec1": ec_signer("ec1")}


@pytest.fixture
def issuer(signers: dict[str, Signer]) -> Iterator[Issuer]:
    state = Issuer([signers["rsa1"], signers["ec1"]])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            body = state.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def verifier(
    issuer: Issuer, *, refetch: float = 30.0, leeway: float = 0.0, clock: Callable[[], float] = time.monotonic
) -> JwksVerifier:
    keys = KeySet(url_fetch(issuer.url), refetch_seconds=refetch, max_age_seconds=600, clock=clock)
    return JwksVerifier(keys, Policy(audience=AUDIENCE, issuer=ISSUER, leeway=leeway, require_exp=True))


async def reason_of(verify: JwksVerifier, token: str) -> RefusalReason:
    with pytest.raises(AuthError) as info:
        await verify.verify(token)
    return info.value.reason


async def test_rs256_and_es256_verify(issuer: Issuer, signers: dict[str, Signer]) -> None:
    verify = verifier(issuer)
    assert await verify.verify(signers["rsa1"].token()) == Identity("acme", "alice")
    assert await verify.verify(signers["ec1"].token(sub="bob")) == Identity("acme", "bob")
    assert issuer.requests == 1  # cached


async def test_rotation_refetches_on_unknown_kid_rate_limited(issuer: Issuer, signers: dict[str, Signer]) -> None:
    # The key set's own clock, moved by hand: a slow machine signing the flood's 20 tokens
    # must not look like the refetch interval passing (it once did, in a CI run at feb7ba5).
    now = [1000.0]
    verify = verifier(issuer, refetch=0.5, clock=lambda: now[0])
    await verify.verify(signers["rsa1"].token())
    issuer.signers = [signers["rsa2"]]  # the issuer rotates
    assert await reason_of(verify, signers["rsa2"].token()) == "unknown_key"  # fetched just now: not yet
    assert issuer.requests == 1
    now[0] += 0.6
    assert (await verify.verify(signers["rsa2"].token())).user_id == "alice"
    assert issuer.requests == 2
    # A flood of unknown kids: one refetch per interval, not one per token.
    stranger = Signer("nobody", signers["rsa1"].key, "RS256")
    reasons = await asyncio.gather(*(reason_of(verify, stranger.token()) for _ in range(20)))
    assert set(reasons) == {"unknown_key"} and issuer.requests == 2
    now[0] += 0.6
    assert await reason_of(verify, stranger.token()) == "unknown_key"
    assert issuer.requests == 3
    # The removed key no longer verifies once the set was refetched.
    assert await reason_of(verify, signers["rsa1"].token()) == "unknown_key"


async def test_issuer_audience_leeway(issuer: Issuer, signers: dict[str, Signer]) -> None:
    rsa1 = signers["rsa1"]
    verify = verifier(issuer)
    assert await reason_of(verify, rsa1.token(iss="https://evil.test")) == "wrong_issuer"
    assert await reason_of(verify, rsa1.token(aud="someone-else")) == "wrong_audience"
    assert await reason_of(verify, rsa1.token(exp=int(time.time()) - 10)) == "expired"
    assert await reason_of(verify, rsa1.token(exp="4102444800")) == "bad_claims"
    no_exp = jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE}, rsa1.key, "RS256", headers={"kid": "rsa1"})
    assert await reason_of(verify, no_exp) == "bad_claims"  # JWKS mode: exp required
    lenient = verifier(issuer, leeway=30)
    assert (await lenient.verify(rsa1.token(exp=int(time.time()) - 10))).user_id == "alice"
    assert (await lenient.verify(rsa1.token(nbf=int(time.time()) + 10))).user_id == "alice"
    assert await reason_of(lenient, rsa1.token(nbf=int(time.time()) + 60)) == "not_yet_valid"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_algorithm_confusion_refused(issuer: Issuer, signers: dict[str, Signer]) -> None:
    rsa1 = signers["rsa1"]
    verify = verifier(issuer)
    public_pem = rsa1.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"sub": "mallory", "tenant": "acme", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}
    # HS256 "signed" with the public key, built by hand (PyJWT refuses to encode it).
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa1"}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    assert await reason_of(verify, f"{header}.{payload}.{signature}") == "bad_algorithm"
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": "rsa1"})
    assert await reason_of(verify, unsigned) == "bad_algorithm"
    # ES256 header on the RSA key's kid: the key decides the algorithm, not the token.
    mismatched = jwt.encode(claims, signers["ec1"].key, algorithm="ES256", headers={"kid": "rsa1"})
    assert await reason_of(verify, mismatched) == "bad_algorithm"
    # A symmetric key slipped into the JWKS verifies nothing.
    issuer.extra_keys = [{"kty": "oct", "kid": "shared", "k": b64(b"x" * 32), "alg": "HS256"}]
    hs = jwt.encode(claims, b"x" * 32, algorithm="HS256", headers={"kid": "shared"})
    assert await reason_of(verifier(issuer), hs) == "bad_algorithm"


async def test_jwks_unreachable_then_file(tmp_path: Path, signers: dict[str, Signer]) -> None:
    down = KeySet(url_fetch("http://127.0.0.1:9/jwks.json", timeout=1), refetch_seconds=30, max_age_seconds=600)
    verify = JwksVerifier(down, Policy(audience=AUDIENCE, issuer=ISSUER, require_exp=True))
    with pytest.raises(AuthError) as info:
        await verify.verify(signers["rsa1"].token())
    assert (info.value.status, info.value.reason) == (503, "keys_unavailable")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [signers["ec1"].jwk()]}))
    keys = KeySet(file_fetch(path), refetch_seconds=30, max_age_seconds=600)
    from_file = JwksVerifier(keys, Policy(audience=AUDIENCE, issuer=ISSUER, require_exp=True))
    assert (await from_file.verify(signers["ec1"].token())).user_id == "alice"
    # No kid, and the set has one key: that one.
    assert (await from_file.verify(signers["ec1"].token(headers={"kid": None}))).user_id == "alice"


async def test_the_fetch_never_blocks_the_loop(issuer: Issuer, signers: dict[str, Signer]) -> None:
    """The fetch answers only once the event loop has run a callback while it waits: a
    fetch made on the loop's own thread would wait in vain (and say so)."""
    loop_ran = threading.Event()

    def slow() -> bytes:
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).add_done_callback(lambda _: loop_ran.set())
        assert loop_ran.wait(5), "the event loop stood still while the keys were fetched"
        return issuer.document()

    loop = asyncio.get_running_loop()
    keys = KeySet(slow, refetch_seconds=30, max_age_seconds=600)
    verify = JwksVerifier(keys, Policy(audience=AUDIENCE, issuer=ISSUER, require_exp=True))
    assert (await verify.verify(signers["rsa1"].token())).user_id == "alice"
    assert loop_ran.is_set()


def refusals(reason: str) -> float:
    value: float = metrics.AUTH_REFUSALS.labels(reason)._value.get()
    return value


async def test_gateway_refuses_counts_and_logs(
    issuer: Issuer,
    signers: dict[str, Signer],
    broker: Broker,
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway, url = await start_gateway(
        auth_dev_identity=False, auth_jwks_url=issuer.url, auth_jwt_issuer=ISSUER, auth_jwt_audience=AUDIENCE
    )
    assert isinstance(gateway.authenticator, Authenticator)
    before = {reason: refusals(reason) for reason in ("expired", "wrong_issuer", "missing_token")}
    bad = signers["rsa1"].token(exp=int(time.time()) - 120)
    for headers in ({"Authorization": f"Bearer {bad}"}, {}):
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, additional_headers=headers):
                pass
        assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        async with connect(f"{url}?token={signers['ec1'].token(iss='https://evil.test')}"):
            pass
    assert refusals("expired") == before["expired"] + 1
    assert refusals("wrong_issuer") == before["wrong_issuer"] + 1
    assert refusals("missing_token") == before["missing_token"] + 1
    lines = [r for r in caplog.records if r.getMessage() == "authentication refused"]
    assert {getattr(r, "reason", None) for r in lines} >= {"expired", "wrong_issuer", "missing_token"}
    assert all(str(getattr(r, "client", "")).startswith("127.0.0.1:") for r in lines)
    assert not any(bad in r.getMessage() or bad in str(r.__dict__) for r in caplog.records)
    async with connect(url, additional_headers={"Authorization": f"Bearer {signers['ec1'].token()}"}) as ws:
        await ws.send(json.dumps({"type": "message", "text": "signed by the issuer"}))
        turn = await broker.log.next()
        assert (turn.scope.tenant_id, turn.scope.user_id) == ("acme", "alice")


def test_every_reason_exported_at_zero() -> None:
    body = metrics_response_body()[0].decode()
    for reason in get_args(RefusalReason):
        assert f'agentry_gateway_auth_refusals_total{{reason="{reason}"}}' in body
