"""WebSocket mode on `/v1/responses` (docs/state.md): a session sends `response.create` messages and gets
the same events a stream would carry, as JSON text messages; `previous_response_id` continues from a
response of the same connection (kept in memory for it, stored too where `store` is on). A message with
a `stream_id` runs in its own lane, concurrently, its events tagged with that id; without one, turns run
in order. A failed continuation evicts what the session remembered of the chain it continued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import WebSocket, WebSocketDisconnect

from . import relay
from .errors import APIError, invalid
from .serving import check_sizes
from .state import TERMINAL, Turn, normalize_input
from .translate import new_response_id

if TYPE_CHECKING:
    from .serving import ResponsesService

log = logging.getLogger("modelyard")

# Chains a session remembers; the oldest go first (a long session does not grow without bound).
MAX_REMEMBERED = 256


class Session:
    """One WebSocket connection: its turns and what it remembers of their chains."""

    def __init__(self, service: ResponsesService, ws: WebSocket, scope: str, headers: dict[str, str]) -> None:
        self.service, self.ws, self.scope, self.headers = service, ws, scope, headers
        self.chains: dict[str, list[dict[str, Any]]] = {}  # response id -> every item up to its output
        self.lanes: set[asyncio.Task[None]] = set()
        self.send_lock = asyncio.Lock()

    async def run(self, idle_timeout: float, max_message: int) -> None:
        await self.ws.accept()
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(self.ws.receive_text(), idle_timeout or None)
                except TimeoutError:
                    await self.ws.close(code=1000, reason=f"idle for {idle_timeout:g} s")
                    return
                if max_message and len(raw) > max_message:
                    msg = f"The message is larger than the adapter's limit of {max_message} bytes."
                    await self.error(APIError(413, msg, code="request_too_large"))
                    continue
                await self.dispatch(raw)
        except WebSocketDisconnect:
            pass
        finally:
            for lane in self.lanes:
                lane.cancel()
            await asyncio.gather(*self.lanes, return_exceptions=True)

    async def dispatch(self, raw: str) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            await self.error(invalid(f"The message is not valid JSON: {exc}", code="invalid_json"))
            return
        if not isinstance(message, dict) or message.get("type") != "response.create":
            got = message.get("type") if isinstance(message, dict) else type(message).__name__
            await self.error(invalid(f"Unknown message type {got!r}: send 'response.create'.", "type"))
            return
        stream_id = message.pop("stream_id", None)
        if stream_id is None:
            await self.turn(message, None)
            return
        lane = asyncio.create_task(self.turn(message, str(stream_id)))
        self.lanes.add(lane)
        lane.add_done_callback(self.lanes.discard)

    async def send(self, events: list[dict[str, Any]], stream_id: str | None) -> None:
        async with self.send_lock:
            for event in events:
                if stream_id is not None:
                    event = {**event, "stream_id": stream_id}
                await self.ws.send_text(orjson.dumps(event).decode())

    async def error(self, err: APIError, stream_id: str | None = None) -> None:
        event: dict[str, Any] = {"type": "error", "status": err.status, **err.body()}
        await self.send([event], stream_id)

    async def turn(self, body: dict[str, Any], stream_id: str | None) -> None:
        body.pop("type", None)
        previous = body.get("previous_response_id")
        try:
            await self.respond(body, stream_id)
        except APIError as err:
            if isinstance(previous, str):
                self.chains.pop(previous, None)  # a failed continuation: forget the chain it continued
            await self.error(err, stream_id)

    async def respond(self, body: dict[str, Any], stream_id: str | None) -> None:
        service = self.service
        for field in ("stream", "background"):
            if body.get(field) is not None:
                raise invalid(f"'{field}' is not used over a WebSocket: every response streams its events.", field)
        check_sizes(body, service.settings, "input")
        service.settings.check_model(body)
        turn = await self.prepare(body)
        body["stream"] = True
        chat, _ = service.translate(body, turn)
        await service.backend.before_chat(service.upstream, chat)
        translator = chat.stream(new_response_id(), int(time.time()))
        path = service.backend.chat_url(chat.body)
        ctx, resp = await service.upstream.open("POST", path, chat.body, headers=self.headers)
        try:
            events = relay.translate_events(resp, translator, lambda c: service.backend.error(500, c))
            async for batch, last in events:
                if last:
                    await self.finished(turn, translator.response)
                if batch:
                    await self.send(batch, stream_id)
        finally:
            await ctx.__aexit__(None, None, None)

    async def prepare(self, body: dict[str, Any]) -> Turn:
        """The turn's history: from this session's memory where it knows the previous response, else the
        store (or, without one, nothing: an unknown id is a 404)."""
        state, previous = self.service.state, body.get("previous_response_id")
        history = self.chains.get(previous) if isinstance(previous, str) else None
        if state is not None:
            return await state.prepare(body, self.scope, history)
        previous = body.pop("previous_response_id", None)
        if previous is not None and history is None:
            msg = f"Previous response with id '{previous}' not found."
            raise APIError(404, msg, param="previous_response_id", code="previous_response_not_found")
        turn = Turn(self.scope, False, False, previous)  # `store` stays on the request: the translation says
        turn.input_items = normalize_input(body.get("input"))
        turn.history = history or []
        if history:
            body["input"] = history + turn.input_items
        return turn

    async def finished(self, turn: Turn, response: dict[str, Any]) -> None:
        """Remember the chain for the next turn (and store it, where the store is on)."""
        state = self.service.state
        if state is not None:
            await state.save(turn, response)
        if response["status"] in TERMINAL and response["status"] != "failed":
            self.chains[response["id"]] = turn.history + turn.input_items + list(response.get("output") or [])
            while len(self.chains) > MAX_REMEMBERED:
                self.chains.pop(next(iter(self.chains)))
        elif turn.previous_id:
            self.chains.pop(turn.previous_id, None)


async def serve_socket(service: ResponsesService, ws: WebSocket, scope: str, headers: dict[str, str]) -> None:
    settings = service.settings
    session = Session(service, ws, scope, headers)
    with contextlib.suppress(RuntimeError):  # the client went away mid-send
        await session.run(settings.ws_idle_timeout, settings.max_body_bytes)
