"""Anthropic's Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`) in front of every backend:
translated to chat completions (messages/ is the core), the backend hooks in the same order as the
Responses path (backends/base.py), the reply streamed as Anthropic's events with `ping`s on long gaps.
Errors on these routes are rendered in Anthropic's format by app.py (messages/errors.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
from fastapi.responses import Response

from . import metrics, relay
from .calls import current
from .errors import APIError
from .messages import THINKING_STYLES, MessageTranslator, chat_to_message, messages_to_chat, new_message_id
from .messages.errors import error_type
from .serving import DROPPED_HEADER, Serving, check_sizes, json_response
from .translate import ChatRequest

log = logging.getLogger("modelyard")

# Seconds of upstream silence after which a `ping` event goes out (Anthropic sends them to keep a long
# stream's connection from looking idle to proxies and clients).
PING_INTERVAL = 10.0
PING = relay.sse_event({"type": "ping"})
PATH_PREFIX = "/v1/messages"


class MessagesService(Serving):
    """`/v1/messages`: translated over chat completions on every backend."""

    @property
    def thinking_style(self) -> Any:
        return THINKING_STYLES.get(self.name, "effort")

    async def create(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        check_sizes(body, self.settings, "messages")
        self.settings.check_model(body)
        with metrics.track(self.name, "messages"):
            try:
                return await self.translated(body, headers)
            except APIError as err:
                if err.code != "context_length_exceeded" or self.backend.options.context_overflow != "incomplete":
                    raise
                return self.overflow(body, err)

    def chat_request(self, body: dict[str, Any], count: bool = False) -> ChatRequest:
        """Hooks 1-3: the backend's extras, the translation, the backend's last touches."""
        backend = self.backend
        extras = backend.take_extras(body)  # 1
        metadata = body.get("metadata")
        if backend.engine_extras and isinstance(metadata, dict):  # read by take_extras, NeMo Gym's way
            metadata.pop("chat_template_kwargs", None)
        chat = messages_to_chat(body, backend.options, self.thinking_style, count=count)  # 2
        kwargs = {**extras.pop("chat_template_kwargs", {}), **chat.body.get("chat_template_kwargs", {})}
        chat.body.update(extras)
        if kwargs:
            chat.body["chat_template_kwargs"] = kwargs
        backend.prepare_chat(chat.body)  # 3
        return chat

    async def translated(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        backend = self.backend
        chat = self.chat_request(body)
        dropped = {DROPPED_HEADER: ",".join(chat.dropped)} if chat.dropped else {}
        message_id = new_message_id()
        try:
            await backend.before_chat(self.upstream, chat)  # 4
            path = backend.chat_url(chat.body)  # 5
            if body.get("stream"):
                ctx, resp = await self.upstream.open("POST", path, chat.body, headers=headers)
                translator = MessageTranslator(body, message_id=message_id, opts=backend.options)
                return streamed(ctx, resp, translator, lambda c: backend.error(500, c), self.stamped(dropped))
            reply = await self.upstream.call("POST", path, chat.body, headers=headers)
        except APIError as err:
            err.headers.update(dropped)
            raise
        metrics.count_usage(self.name, reply.json)
        out = chat_to_message(reply.json, body, message_id=message_id, opts=backend.options)
        if (call := current()) is not None:  # usage accounting and rollout capture (calls.py)
            call.answered(out)
        return json_response(out, headers=self.stamped(dropped))

    def overflow(self, body: dict[str, Any], err: APIError) -> Response:
        """context_overflow="incomplete": an input the model has no room for is a message with no content
        and stop_reason `model_context_window_exceeded`, streamed or not as asked, instead of a 400."""
        log.info("context overflow answered as an empty message", extra={"backend": self.name, "error": err.message})
        headers = {k: v for k, v in err.headers.items() if k == DROPPED_HEADER}
        translator = MessageTranslator(body, message_id=new_message_id(), opts=self.backend.options)
        events = translator.overflow()
        if body.get("stream"):
            return Response(
                relay.sse_events(events), media_type="text/event-stream", headers={**relay.SSE_HEADERS, **headers}
            )
        return json_response(translator.message, headers=headers)

    async def count_tokens(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        """The engine's own count of the prompt a Messages request renders to (vLLM's /tokenize)."""
        check_sizes(body, self.settings, "messages")
        self.settings.check_model(body)
        counter = getattr(self.backend, "count_tokens", None)
        if counter is None:
            msg = f"count_tokens is not available on the {self.name} backend: its upstream has no tokenizer endpoint."
            raise APIError(404, msg, code="not_available")
        with metrics.track(self.name, "count_tokens"):
            chat = self.chat_request(body, count=True)
            return json_response({"input_tokens": await counter(self.upstream, chat.body)})


def streamed(
    ctx: Any,
    resp: httpx.Response,
    translator: MessageTranslator,
    chunk_error: Callable[[dict[str, Any]], APIError],
    headers: dict[str, str] | None = None,
) -> relay.EventStream:
    """An open chat completions stream as Anthropic's events; a `ping` after PING_INTERVAL of silence."""

    call = current()

    async def gen() -> AsyncIterator[bytes]:
        chunks = relay.sse_data(resp).__aiter__()
        first = True
        pending: asyncio.Future[bytes] | None = None
        try:
            yield relay.sse_events(translator.start())
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(chunks.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=PING_INTERVAL)
                if not done:
                    yield PING
                    continue
                task, pending = pending, None
                try:
                    data = task.result()
                except StopAsyncIteration:
                    yield relay.sse_events(translator.fail("Upstream stream ended before it was complete."))
                    return
                if data == b"[DONE]":
                    events = translator.finish()
                    if call is not None and events and events[0]["type"] != "error":
                        call.answered(translator.message)
                    yield relay.sse_events(events)
                    return
                chunk = orjson.loads(data)
                if chunk.get("error"):
                    err = chunk_error(chunk)
                    yield relay.sse_events(translator.fail(err.message, error_type(err.status)))
                    return
                out = translator.feed(chunk)
                if out:
                    if first and call is not None:
                        call.first_token()
                    first = False
                    yield relay.sse_events(out)
        except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
            yield relay.sse_events(translator.fail(f"Upstream stream broke off ({type(exc).__name__})."))
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            await ctx.__aexit__(None, None, None)

    return relay.EventStream(
        gen(),
        media_type="text/event-stream",
        headers={**relay.SSE_HEADERS, **(headers or {})},
        background=relay.closer(ctx),
    )
