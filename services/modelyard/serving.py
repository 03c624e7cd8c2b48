"""The serving layer: one object per API surface, built once per app with (backend, upstream) and kept on
`app.state` (as vLLM's `entrypoints/openai` keeps its `serving_*` objects). Routes (routes.py) are thin:
read the body, call a service. A service owns the order in which the backend hooks run (backends/base.py
lists them) and turns the upstream's reply (upstream.py: a good reply or an `APIError`) into ours.

A new API surface (Anthropic's `/v1/messages`, say) is one more service here and its routes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi.responses import Response

from . import metrics, native_store, relay
from .backends import Backend
from .calls import current
from .errors import APIError, invalid
from .state import OPEN_SCOPE, TERMINAL, StateService, Turn
from .translate import (
    StreamTranslator,
    Translation,
    check_responses_request,
    new_response_id,
    responses_to_chat,
    sizes,
)
from .upstream import Upstream

log = logging.getLogger("modelyard")

JSON = "application/json"
DROPPED_HEADER = "x-modelyard-dropped-params"
VERSION_HEADER = "x-modelyard-policy-version"  # the policy version that produced the reply (gate.py)
# Responses request fields that concern generation alone: refused on input_tokens, as OpenAI's
# TokenCountsBody has none of them.
NOT_COUNTED = (
    "stream", "stream_options", "background", "store", "max_output_tokens", "max_tool_calls", "temperature",
    "top_p", "top_logprobs", "include", "service_tier", "prompt_cache_key", "safety_identifier", "user", "prompt",
)  # fmt: skip


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def not_served(backend: str, route: str, why: str) -> APIError:
    """A 400 for a /v1/responses/<route> this backend's upstream cannot serve (never a fake answer)."""
    msg = f"POST /v1/responses/{route} is not supported on the {backend} backend: {why}."
    return APIError(400, msg, code="unsupported_endpoint")


def check_sizes(body: dict[str, Any], settings: Any, items_key: str) -> None:
    """Bounds on what one request may carry (MODELYARD_MAX_INPUT_ITEMS, MODELYARD_MAX_TOOLS) and the list
    fields' types, before any translation work (translate/sizes.py)."""
    sizes.check_sizes(body, settings.max_input_items, settings.max_tools, items_key)


class Serving:
    """What every surface shares: the backend, its upstream, and a reply relayed as the upstream sent it."""

    def __init__(self, backend: Backend, upstream: Upstream) -> None:
        self.backend, self.upstream, self.name = backend, upstream, backend.name
        self.settings = backend.settings
        self._last_ready: tuple[bool, str] = (True, "")

    def stamped(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        """Reply headers with the policy version in force when the generation was dispatched."""
        version = self.upstream.gate.version
        return {**(headers or {}), VERSION_HEADER: version} if version else headers or {}

    async def relay(self, method: str, path: str, body: Any, headers: dict[str, str], params: Any = None) -> Response:
        """The upstream's 200 JSON reply passed on as it is (its usage counted)."""
        reply = await self.upstream.call(method, path, body, headers=headers, params=params)
        metrics.count_usage(self.name, reply.json)
        if (call := current()) is not None:
            call.answered(reply.json)
        return Response(reply.content, media_type=JSON, headers=self.stamped())

    async def relay_stream(
        self,
        path: str,
        body: Any,
        headers: dict[str, str],
        method: str = "POST",
        params: Any = None,
        strip_usage: bool = False,
    ) -> Response:
        ctx, resp = await self.upstream.open(method, path, body, headers=headers, params=params)
        return relay.relayed(ctx, resp, self.stamped(), strip_usage=strip_usage)

    async def models(self, headers: dict[str, str]) -> Response:
        return await self.relay("GET", self.backend.models_path, None, headers)

    async def readiness(self) -> Response:
        ok, detail = await self.upstream.readiness()
        if (ok, detail) != self._last_ready:  # said once per change, not on every health check
            self._last_ready = (ok, detail)
            if ok:
                log.info("upstream ready: %s", detail, extra={"backend": self.name})
            else:
                log.warning("upstream not ready: %s", detail, extra={"backend": self.name})
        body = {"status": "ready" if ok else "not_ready", "backend": self.name, "upstream": detail}
        return json_response(body, 200 if ok else 503)


class ChatService(Serving):
    """`POST /v1/chat/completions`: relayed as it is, after the backend's last touches."""

    async def create(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        backend = self.backend
        check_sizes(body, self.settings, "messages")
        self.settings.check_model(body)
        # Usage is counted for every stream (docs/capture-and-usage.md): asked for upstream even when the
        # client did not ask, and its chunk then taken out of what the client gets.
        stream, options = body.get("stream"), body.get("stream_options")
        asked = isinstance(options, dict) and options.get("include_usage") is True
        forced = bool(stream) and not asked and (options is None or isinstance(options, dict))  # else: its 400
        if forced:
            body["stream_options"] = {**(options or {}), "include_usage": True}
        backend.prepare_chat(body)
        with metrics.track(self.name, "chat"):
            if stream:
                return await self.relay_stream(backend.chat_url(body), body, headers, strip_usage=forced)
            return await self.relay("POST", backend.chat_url(body), body, headers)


class ResponsesService(Serving):
    """`/v1/responses`: relayed to a backend that serves it, else translated over chat completions; with
    a store (state.py), `previous_response_id`, `conversation`, `store` and `background` are honoured."""

    state: StateService | None = None  # set at start when MODELYARD_STORE_URL names a store

    async def create(self, body: dict[str, Any], headers: dict[str, str], scope: str = OPEN_SCOPE) -> Response:
        check_sizes(body, self.settings, "input")
        self.settings.check_model(body)
        with metrics.track(self.name, "responses"):
            if self.backend.native_responses:
                if self.local_native():
                    return await self.native_local(body, headers, scope)
                return await self.native(body, headers)
            turn = await self.state.prepare(body, scope) if self.state else None
            if turn is not None and turn.background:
                return await self.background(body, headers, turn)
            return await self.translated(body, headers, turn)

    def overflows(self, err: APIError) -> bool:
        return err.code == "context_length_exceeded" and self.backend.options.context_overflow == "incomplete"

    def local_native(self) -> bool:
        """A native backend whose stored responses and chains are the local store's: MODELYARD_NATIVE_STATE=local,
        or a provider that stores nothing (OpenRouter) where a store is set."""
        backend = self.backend
        if self.state is None or not backend.native_responses:
            return False
        return not backend.stored_responses or self.settings.native_state == "local"

    async def native_local(self, body: dict[str, Any], headers: dict[str, str], scope: str) -> Response:
        """The native relay over the local store (native_store.py): the chain rebuilt here goes upstream as the
        whole input with store: false."""
        assert self.state is not None
        if body.get("background") is True:  # the background runner runs translated streams only
            msg = f"background: true is not supported on the {self.name} backend's native Responses relay over the "
            raise invalid(
                msg + "local store; leave it out and stream, or use MODELYARD_NATIVE_STATE=provider.", "background"
            )
        turn = await self.state.prepare(body, scope)
        if turn.history:
            body["input"] = native_store.upstream_input(body["input"])
        body["store"] = False  # the provider keeps nothing: the chain is ours
        return await self.native(body, headers, turn)

    async def native(self, body: dict[str, Any], headers: dict[str, str], turn: Turn | None = None) -> Response:
        check_responses_request(body)  # the value checks every backend applies
        body.pop("client_metadata", None)  # the harness's session ids (Codex): never sent upstream
        self.backend.prepare_responses(body)
        try:
            if turn is not None:
                return await self.native_stored(body, headers, turn)
            if body.get("stream"):
                return await self.relay_stream(self.backend.responses_path, body, headers)
            return await self.relay("POST", self.backend.responses_path, body, headers)
        except APIError as err:
            if not self.overflows(err):
                raise
            chat = Translation({}, [], echo={"model": body.get("model")}, opts=self.backend.options)
            if turn is not None:
                turn.echo(chat.echo)
            return await self.overflow(chat, bool(body.get("stream")), err, turn, {})

    async def native_stored(self, body: dict[str, Any], headers: dict[str, str], turn: Turn) -> Response:
        """The provider's Response (or stream) stored here under the id it gave, before the client hears its end."""
        assert self.state is not None
        path, done = self.backend.responses_path, functools.partial(self.state.save, turn)
        if body.get("stream"):
            ctx, resp = await self.upstream.open("POST", path, body, headers=headers)
            return native_store.stream(ctx, resp, turn, done, self.stamped())
        reply = await self.upstream.call("POST", path, body, headers=headers)
        metrics.count_usage(self.name, reply.json)
        out = turn.echo(dict(reply.json))
        if (call := current()) is not None:
            call.answered(out)
        await done(out)
        return json_response(out, headers=self.stamped())

    def translate(self, body: dict[str, Any], turn: Turn | None) -> tuple[Translation, dict[str, str]]:
        """Hooks 1-3 (backends/base.py): the chat request, and the header naming what was dropped."""
        backend = self.backend
        extras = backend.take_extras(body)  # 1
        chat = responses_to_chat(body, backend.options)  # 2
        chat.body.update(extras)
        backend.prepare_chat(chat.body)  # 3
        if turn is not None:
            turn.echo(chat.echo)  # every Response of this request says what was done with it
        return chat, {DROPPED_HEADER: ",".join(chat.dropped)} if chat.dropped else {}

    async def translated(self, body: dict[str, Any], headers: dict[str, str], turn: Turn | None) -> Response:
        """The backend hooks in their order (backends/base.py), then the upstream, then the reply."""
        backend = self.backend
        chat, dropped = self.translate(body, turn)
        try:
            await backend.before_chat(self.upstream, chat)  # 4
            path = backend.chat_url(chat.body)  # 5
            if body.get("stream"):
                translator = chat.stream(new_response_id(), int(time.time()))
                ctx, resp = await self.upstream.open("POST", path, chat.body, headers=headers)
                done = functools.partial(self.state.save, turn) if self.state and turn else None
                self.versioned(translator.response)
                stamped = self.stamped(dropped)
                return relay.translated(ctx, resp, translator, lambda c: backend.error(500, c), stamped, done)
            reply = await self.upstream.call("POST", path, chat.body, headers=headers)
        except APIError as err:
            if self.overflows(err):
                return await self.overflow(chat, bool(body.get("stream")), err, turn, dropped)
            err.headers.update(dropped)  # what was dropped is said on an error reply too
            raise
        metrics.count_usage(self.name, reply.json)
        out = chat.reply(reply.json, response_id=new_response_id(), created_at=int(time.time()))
        self.versioned(out)
        if (call := current()) is not None:
            call.answered(out)
        if self.state and turn:
            await self.state.save(turn, out)
        return json_response(out, headers=self.stamped(dropped))

    def versioned(self, response: dict[str, Any]) -> None:
        """A Response says which policy version produced it in its metadata (once a resume named one)."""
        version = self.upstream.gate.version
        if version:
            response["metadata"] = {**(response.get("metadata") or {}), "policy_version": version}

    async def overflow(
        self, chat: Translation, stream: bool, err: APIError, turn: Turn | None, headers: dict[str, str]
    ) -> Response:
        """context_overflow="incomplete" (NeMo Gym's behaviour): an input the model has no room for is an
        `incomplete` Response with no output, streamed or not as asked, instead of a 400."""
        log.info(
            "context overflow answered as an incomplete response", extra={"backend": self.name, "why": err.message}
        )
        events = chat.overflow_events(response_id=new_response_id(), created_at=int(time.time()))
        if self.state and turn:
            await self.state.save(turn, events[-1]["response"])
        if stream:
            body = relay.sse_events(events)
            return Response(body, media_type="text/event-stream", headers={**relay.SSE_HEADERS, **headers})
        return json_response(events[-1]["response"], headers=headers)

    # -- POST /v1/responses/input_tokens and /v1/responses/compact --------------------------------------
    async def input_tokens(self, body: dict[str, Any], headers: dict[str, str], scope: str = OPEN_SCOPE) -> Response:
        """The input's token count: relayed where the upstream counts (OpenAI, Azure), else the prompt the
        request translates to, rendered and tokenized by the engine (vLLM's /tokenize)."""
        backend = self.backend
        check_sizes(body, self.settings, "input")
        self.settings.check_model(body)
        check_responses_request(body)
        with metrics.track(self.name, "input_tokens"):
            if "input_tokens" in backend.responses_routes:
                if self.local_native():  # previous_response_id, conversation: the local chain in front
                    assert self.state is not None
                    if (await self.state.prepare(body, scope)).history:
                        body["input"] = native_store.upstream_input(body["input"])
                return await self.native_route("input_tokens", body, headers)
            counter = getattr(backend, "count_tokens", None)  # the same counter as /v1/messages/count_tokens
            if counter is None:
                raise not_served(self.name, "input_tokens", "its upstream has no tokenizer endpoint")
            for key in NOT_COUNTED:
                if body.get(key) is not None:
                    raise invalid(f"Unknown parameter for input_tokens: '{key}'.", key, "unknown_parameter")
            if self.state is not None:  # previous_response_id, conversation: their history in front
                await self.state.prepare(body, scope)
            chat, dropped = self.translate(body, None)  # as generation translates it
            await backend.before_chat(self.upstream, chat)  # echoed token ids fix the prompt (vLLM)
            count = await counter(self.upstream, chat.body)
            return json_response({"object": "response.input_tokens", "input_tokens": count}, headers=dropped)

    async def compact(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        """A compacted conversation, from an upstream that compacts (OpenAI, Azure); refused elsewhere."""
        if "compact" not in self.backend.responses_routes:
            raise not_served(self.name, "compact", "conversation compaction needs OpenAI's or Azure's Responses API")
        check_sizes(body, self.settings, "input")
        self.settings.check_model(body)
        check_responses_request(body)
        with metrics.track(self.name, "compact"):
            return await self.native_route("compact", body, headers)

    async def native_route(self, route: str, body: dict[str, Any], headers: dict[str, str]) -> Response:
        """POST /responses/<route> relayed as it is, after the backend's touches (Azure: the deployment)."""
        body.pop("client_metadata", None)  # the harness's session ids: never sent upstream
        self.backend.prepare_responses(body)
        return await self.relay("POST", f"{self.backend.responses_path}/{route}", body, headers)

    # -- background mode --------------------------------------------------------------------------------
    async def background(self, body: dict[str, Any], headers: dict[str, str], turn: Turn) -> Response:
        """Created `queued` and run in this adapter, apart from the client's connection: polled with GET,
        cancelled with /cancel; with `stream`, the events go to the client as they come and to the store,
        where `GET ?stream=true&starting_after=N` resumes them."""
        assert self.state is not None
        client_stream = bool(body.get("stream"))
        body["stream"] = True  # the engine streams either way: the events are what is stored
        chat, dropped = self.translate(body, turn)  # a bad request is a 400 now, not a failed response later
        translator = chat.stream(new_response_id(), int(time.time()))
        queued = dict(translator.response, status="queued", output=[])
        await self.state.save(turn, queued)
        feed: asyncio.Queue[list[dict[str, Any]] | None] | None = asyncio.Queue() if client_stream else None
        rid = queued["id"]
        self.state.tasks[rid] = asyncio.create_task(self._run(chat, headers, translator, turn, feed), name=rid)
        if feed is None:
            return json_response(queued, headers=dropped)
        return relay.EventStream(_drain(feed), media_type="text/event-stream", headers={**relay.SSE_HEADERS, **dropped})

    async def _run(
        self, chat: Translation, headers: dict[str, str], translator: StreamTranslator, turn: Turn,
        feed: asyncio.Queue[list[dict[str, Any]] | None] | None,
    ) -> None:  # fmt: skip
        state, backend, rid = self.state, self.backend, translator.response["id"]
        assert state is not None
        ctx = None
        try:
            await backend.before_chat(self.upstream, chat)
            ctx, resp = await self.upstream.open("POST", backend.chat_url(chat.body), chat.body, headers=headers)
            running = False
            async for events, last in relay.translate_events(resp, translator, lambda c: backend.error(500, c)):
                if last or not running:  # stored as in_progress once the engine answers, then as it ended
                    running = True
                    await state.save(turn, translator.response)
                await self._publish(rid, events, feed)
        except APIError as err:
            if self.overflows(err) and not translator.response["output"]:  # nothing streamed yet: incomplete
                events = chat.overflow_events(response_id=rid, created_at=translator.response["created_at"])
                await state.save(turn, events[-1]["response"])
                await self._publish(rid, events, feed)
                return
            await self._publish(rid, translator.fail(err.message, err.code or "server_error"), feed)
            await state.save(turn, translator.response)
        except asyncio.CancelledError:
            raise  # cancel() or delete() stores what became of it
        except Exception:
            log.exception("background response %s failed", rid)
            await self._publish(rid, translator.fail("Internal error in the modelyard adapter."), feed)
            await state.save(turn, translator.response)
        finally:
            if ctx is not None:
                await ctx.__aexit__(None, None, None)
            if feed is not None:
                feed.put_nowait(None)
            state.tasks.pop(rid, None)

    async def _publish(self, rid: str, events: list[dict[str, Any]], feed: asyncio.Queue | None) -> None:
        if not events:
            return
        assert self.state is not None
        await self.state.store.add_events(rid, events)
        if feed is not None:
            feed.put_nowait(events)

    # -- stored responses ---------------------------------------------------------------------------------
    async def stored(
        self, method: str, sub: str, params: Any, headers: dict[str, str], scope: str = OPEN_SCOPE
    ) -> Response:
        """GET/DELETE /v1/responses/{id}, cancel, input_items: from the local store, or relayed where the
        upstream keeps responses (OpenAI, Azure)."""
        backend = self.backend
        if backend.native_responses and backend.stored_responses and not self.local_native():
            path = backend.responses_path + sub
            if method == "GET" and params.get("stream") == "true":  # resume a background stream
                return await self.relay_stream(path, None, headers, method="GET", params=params)
            return await self.relay(method, path, None, headers, params)
        if self.state is None:
            msg = f"The {self.name} backend does not store responses: send the whole conversation as input instead."
            raise APIError(404, msg, code="response_not_found")
        return await self.local(method, sub, params, scope)

    async def local(self, method: str, sub: str, params: Any, scope: str) -> Response:
        state = self.state
        assert state is not None
        rid, _, action = sub.strip("/").partition("/")
        if action == "cancel":
            return json_response(await state.cancel(rid, scope))
        if action == "input_items":
            return json_response(await state.input_items(rid, scope, params))
        if method == "DELETE":
            return json_response(await state.delete(rid, scope))
        rec = await state.get(rid, scope)
        if params.get("stream") != "true":
            return json_response(rec.response)
        raw = params.get("starting_after") or "-1"
        if not raw.lstrip("-").isdigit():
            raise invalid(f"'starting_after' must be an event sequence number, got '{raw}'.", "starting_after")
        return relay.EventStream(
            _replay(state, rid, scope, int(raw)), media_type="text/event-stream", headers=relay.SSE_HEADERS
        )


async def _drain(feed: asyncio.Queue[list[dict[str, Any]] | None]) -> AsyncIterator[bytes]:
    """A background stream's events as the runner publishes them; leaving early does not stop the run."""
    while (events := await feed.get()) is not None:
        yield relay.sse_events(events)


_TERMINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete"})


async def _replay(state: StateService, rid: str, scope: str, after: int) -> AsyncIterator[bytes]:
    """A stored response's events after `after`, then new ones as they are stored, until it ends (read
    from the store, so any adapter sharing it can resume any stream)."""
    while True:
        events = await state.store.events_after(rid, after)
        if events:
            after = events[-1]["sequence_number"]
            yield relay.sse_events(events)
            if events[-1]["type"] in _TERMINAL_EVENTS:
                return
            continue
        rec = await state.store.get_response(rid, scope)
        if rec is None or rec.status in TERMINAL:
            return
        await asyncio.sleep(0.1)
