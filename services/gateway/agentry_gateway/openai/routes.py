"""The OpenAI-compatible HTTP endpoint: `GET /v1/models`, `POST /v1/chat/completions`.

An aiohttp application served on the gateway's port (`front` hands it the `/v1`
connections). A request is a turn: who asks (as on the WebSocket), which conversation
(`x-agentry-conversation-id`), the claim, the publish, then the turn's frames from the
fan-out, streamed as chunks or gathered into one completion. A request that goes away
before its turn ended cancels the turn (memory's cancel, as the WebSocket's `cancel`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from agentry_shared.contracts.errors import OpenAIErrorCode
from agentry_shared.contracts.frames import Approve
from agentry_shared.contracts.scope import Scope
from agentry_shared.logs import bind_context
from agentry_shared.settings import GatewaySettings
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from agentry_gateway.auth import AuthError, Identity
from agentry_gateway.authenticator import Authenticator, peer
from agentry_gateway.fanout import Fanout
from agentry_gateway.inbound import Rejected
from agentry_gateway.intake import Intake
from agentry_gateway.memory_client import MemoryClient
from agentry_gateway.openai import request as chat_request
from agentry_gateway.openai import translate
from agentry_gateway.openai.errors import OpenAIError, from_auth, from_rejected, from_turn_failure
from agentry_gateway.openai.limits import Limits
from agentry_gateway.openai.turn import IDLE, Canceller, Liveness, TurnWatch

log = logging.getLogger(__name__)

CONVERSATION_HEADER = "x-agentry-conversation-id"
USER_HEADER = "x-agentry-user"
APPROVALS_HEADER = "x-agentry-approvals"
KEEPALIVE_SECONDS = 15.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Parts:
    """What the endpoint shares with the WebSocket side of the gateway."""

    fanout: Fanout
    intake: Intake
    memory: MemoryClient
    authenticator: Authenticator
    bus_alive: Liveness


@dataclass
class Turn:
    identity: Identity
    chat: chat_request.ChatRequest
    scope: Scope
    text: str
    new: bool
    waits_for_approvals: bool
    turn_id: str = ""
    ended: bool = False


class Endpoint:
    def __init__(self, settings: GatewaySettings, parts: Parts) -> None:
        self._settings = settings
        self._parts = parts
        self._model = settings.gateway_openai_model_name
        self._limits = Limits(settings.gateway_max_frames_per_second, settings.gateway_max_sockets_per_user)
        self._canceller = Canceller(parts.memory)
        self._created = int(time.time())
        app = web.Application(client_max_size=settings.gateway_max_frame_bytes, middlewares=[self._errors])
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # handler_cancellation: a client that disconnects cancels its handler (and so its turn).
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()

    def protocol(self) -> asyncio.Protocol:
        """A new HTTP connection's protocol (for `front.split_connection`)."""
        server = self._runner.server
        assert server is not None, "start() first"
        return server()

    async def stop(self, grace: float) -> None:
        """Closes open requests (their turns are cancelled), then waits for the cancels."""
        server = self._runner.server
        if server is not None:
            await server.shutdown(grace)
        await self._runner.cleanup()
        await self._canceller.drain()

    # ---- plumbing -------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except OpenAIError as exc:
            response = exc.response()
        except web.HTTPRequestEntityTooLarge:
            limit = self._settings.gateway_max_frame_bytes
            message = f"the body is over GATEWAY_MAX_FRAME_BYTES ({limit} bytes)"
            response = OpenAIError(413, "request_too_large", message).response()
        except web.RequestPayloadError as exc:
            # The client's bytes, not the gateway: a Content-Encoding they are not in, a
            # broken chunked framing. The rest of the body is not read (aiohttp would
            # otherwise read it after the response, meet the error again and log it).
            request.content.feed_eof()
            response = OpenAIError(400, "invalid_request", f"the body could not be read: {_why(exc)}").response()
        except web.HTTPException as exc:
            code: OpenAIErrorCode = "not_found" if exc.status == 404 else "invalid_request"
            response = OpenAIError(exc.status, code, exc.reason).response()
        except Exception:
            log.exception("openai request failed")
            response = OpenAIError(500, "internal", "the gateway failed on this request; it was not done").response()
        if not response.prepared:
            # One request per connection: a reused connection would stay with this app and
            # could not reach the WebSocket side's routes (front.py).
            response.force_close()
        return response

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        raise OpenAIError(
            404, "not_found", f"no {request.method} {request.path} here: /v1/models, /v1/chat/completions"
        )

    async def _identity(self, request: web.Request) -> Identity:
        """As the WebSocket's handshake; the development identity also from `x-agentry-user`."""
        path = request.path_qs
        user = request.headers.get(USER_HEADER)
        if user and "user" not in request.query:
            path = "/v1?" + urlencode({"user": user})
        try:
            authorization = request.headers.getall("Authorization", [])
            return await self._parts.authenticator.handshake(path, authorization, peer(request.remote))
        except AuthError as exc:
            raise from_auth(exc) from exc

    # ---- routes ---------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self._identity(request)
        model = {"id": self._model, "object": "model", "created": self._created, "owned_by": "agentry"}
        return web.json_response({"object": "list", "data": [model]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        identity = await self._identity(request)
        user = (identity.tenant_id, identity.user_id)
        self._limits.admit(user)
        with self._limits.holding(user):
            chat = chat_request.parse(await request.read(), self._model)
            turn = self._turn(request, identity, chat)
            with bind_context(conversation_id=turn.scope.conversation_id):
                return await self._run(request, turn)

    def _turn(self, request: web.Request, identity: Identity, chat: chat_request.ChatRequest) -> Turn:
        named = request.headers.get(CONVERSATION_HEADER) or chat.conversation_id
        try:
            scope = Scope(
                tenant_id=identity.tenant_id, user_id=identity.user_id, conversation_id=named or uuid.uuid4().hex
            )
        except ValidationError as exc:
            raise OpenAIError(404, "not_found", "no such conversation", param=CONVERSATION_HEADER) from exc
        max_chars = self._settings.gateway_max_text_chars
        text = chat_request.turn_text(chat, new_conversation=named is None, max_chars=max_chars)
        waits = request.headers.get(APPROVALS_HEADER, "").strip().lower() == "wait"
        return Turn(identity, chat, scope, text, new=named is None, waits_for_approvals=waits)

    async def _run(self, request: web.Request, turn: Turn) -> web.StreamResponse:
        """Claim, follow the conversation, publish; then answer. Cancels the turn if this
        request ends (client gone, gateway stopping) before the turn does."""
        parts = self._parts
        watch = TurnWatch(
            parts.fanout,
            turn.scope.conversation_id,
            max_frames=self._settings.gateway_send_queue_frames,
            idle_seconds=KEEPALIVE_SECONDS,
        )
        claimed = False
        try:
            await parts.memory.claim(turn.scope, new=turn.new)
            claimed = True
            await watch.subscribe()
            turn.turn_id = await parts.intake.publish(turn.scope, turn.text, None)
        except Rejected as exc:
            await watch.close()
            error = from_rejected(exc)
            if claimed and not (turn.new and await self._abandon(turn.scope)):
                error.headers.update(self._headers(turn))  # it exists: the client may retry in it
            raise error from exc
        except BaseException:
            # The request went away (or failed) before the turn was published: nothing to
            # cancel, but the conversation must not stay followed by a watch no one reads.
            await asyncio.shield(watch.close())
            raise
        try:
            if turn.chat.stream:
                return await self._stream(request, turn, watch)
            return await self._complete(turn, watch)
        except OpenAIError as exc:
            # The turn is in its conversation now, failed or not: the client may resume it.
            exc.headers.update(self._headers(turn))
            raise
        finally:
            if not turn.ended:
                self._canceller.cancel(turn.identity.tenant_id, turn.identity.user_id, turn.turn_id)
            await asyncio.shield(watch.close())

    async def _frames(self, turn: Turn, watch: TurnWatch) -> Any:
        """The turn's frames (and IDLE), approvals it asks for denied unless it waits."""
        async for item in watch.frames(turn.turn_id, self._parts.bus_alive):
            if isinstance(item, dict):
                if item.get("type") in ("turn.completed", "turn.failed"):
                    turn.ended = True
                elif item.get("type") == "tool.approval_required" and not turn.waits_for_approvals:
                    await self._deny(turn, item)
            yield item

    async def _deny(self, turn: Turn, frame: dict[str, Any]) -> None:
        try:
            decision = Approve(
                type="approve",
                conversation_id=turn.scope.conversation_id,
                turn_id=turn.turn_id,
                call_id=frame["call_id"],
                args_sha256=frame["args_sha256"],
                approved=False,
            )
            await self._parts.memory.decide(turn.identity.tenant_id, turn.identity.user_id, decision)
        except (Rejected, KeyError, ValidationError):
            # Undecided, the call is denied anyway when its approval expires.
            log.warning("could not deny a tool call; it expires instead", extra={"turn_id": turn.turn_id})

    async def _abandon(self, scope: Scope) -> bool:
        """The conversation created for a request that was then refused (over a turn
        budget, `unavailable`) goes again, as on the socket: each retry would otherwise
        leave an empty one toward MEMORY_MAX_CONVERSATIONS_PER_USER. False: memory kept it
        (a turn got in after all) or did not answer."""
        try:
            return await self._parts.memory.abandon(scope)
        except Rejected:
            log.warning("a refused request's new conversation could not be abandoned", exc_info=True)
            return False

    def _headers(self, turn: Turn) -> dict[str, str]:
        return {CONVERSATION_HEADER: turn.scope.conversation_id}

    async def _complete(self, turn: Turn, watch: TurnWatch) -> web.StreamResponse:
        try:
            async for item in self._frames(turn, watch):
                if not isinstance(item, dict) or item.get("type") not in ("turn.completed", "turn.failed"):
                    continue
                if item["type"] == "turn.failed":
                    raise from_turn_failure(item.get("error"))
                body = translate.completion(
                    f"chatcmpl-{turn.turn_id}", int(time.time()), self._model, str(item.get("text", "")), turn.text
                )
                return web.json_response(body, headers=self._headers(turn))
        except Rejected as exc:
            raise from_rejected(exc) from exc
        raise OpenAIError(500, "internal", "the turn's frames ended without its end")

    async def _stream(self, request: web.Request, turn: Turn, watch: TurnWatch) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                **self._headers(turn),
            }
        )
        response.force_close()
        await response.prepare(request)
        translator = translate.Translator(
            translate.Chunks(f"chatcmpl-{turn.turn_id}", int(time.time()), self._model),
            prompt=turn.text,
            include_usage=turn.chat.include_usage,
            waits_for_approvals=turn.waits_for_approvals,
        )
        await _send(response, translator.start())
        try:
            async for item in self._frames(turn, watch):
                if item is IDLE:
                    await response.write(b": keep-alive\n\n")
                elif isinstance(item, dict):
                    await _send(response, self._events(translator, item))
        except Rejected as exc:
            await response.write(from_rejected(exc).sse())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    @staticmethod
    def _events(translator: translate.Translator, frame: dict[str, Any]) -> list[dict[str, Any]]:
        if frame.get("type") == "turn.failed":
            return [from_turn_failure(frame.get("error")).body()]
        return translator.on(frame)


def _why(exc: web.RequestPayloadError) -> str:
    cause = exc.__cause__
    return cause.message if isinstance(cause, HttpProcessingError) else "malformed"


async def _send(response: web.StreamResponse, events: list[dict[str, Any]]) -> None:
    for event in events:
        await response.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
