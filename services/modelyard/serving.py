"""The serving layer: one object per API surface, built once per app with (backend, upstream) and kept on
`app.state` (as vLLM's `entrypoints/openai` keeps its `serving_*` objects). Routes (routes.py) are thin:
read the body, call a service. A service owns the order in which the backend hooks run (backends/base.py
lists them) and turns the upstream's reply (upstream.py: a good reply or an `APIError`) into ours.

A new API surface (Anthropic's `/v1/messages`, say) is one more service here and its routes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from fastapi.responses import Response

from . import metrics, relay
from .backends import Backend
from .errors import APIError, invalid
from .translate import StreamTranslator, chat_to_response, new_response_id, overflow_response, responses_to_chat
from .translate.schema import check_schema
from .upstream import Upstream

log = logging.getLogger("modelyard")

JSON = "application/json"
DROPPED_HEADER = "x-modelyard-dropped-params"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def check_sizes(body: dict[str, Any], settings: Any, items_key: str) -> None:
    """Bounds on what one request may carry (MODELYARD_MAX_INPUT_ITEMS, MODELYARD_MAX_TOOLS): a 400 naming
    the field, before any translation work. Also the list fields' types, which chat requests are relayed
    with unchecked otherwise."""
    for key, limit, setting in (
        (items_key, settings.max_input_items, "MODELYARD_MAX_INPUT_ITEMS"),
        ("tools", settings.max_tools, "MODELYARD_MAX_TOOLS"),
    ):
        value = body.get(key)
        if value is None or (key == "input" and isinstance(value, str)):
            continue
        if not isinstance(value, list):
            accepted = "a string or an array of input items" if key == "input" else "an array"
            msg = f"'{key}' must be {accepted}, got {_json_type(value)}."
            raise invalid(msg, param=key, code="invalid_type")
        if limit and len(value) > limit:
            msg = f"'{key}' has {len(value)} entries; at most {limit} are allowed ({setting})."
            raise invalid(msg, param=key, code="array_above_max_length")
    if body.get("stream") not in (None, True, False):  # a truthy list would otherwise start a stream
        raise invalid("'stream' must be a boolean (true or false).", param="stream", code="invalid_type")
    if items_key == "messages":  # chat tools go to the engine as they are: a bad schema is a 400 here, not its 500
        for i, tool in enumerate(body.get("tools") or []):
            if not isinstance(tool, dict) or not isinstance(tool.get("function", {}), dict):
                raise invalid(f"'tools[{i}]' must be an object.", param=f"tools[{i}]", code="invalid_type")
            nested = "function" in tool  # some backends also take Responses' flat tools here
            fn = tool["function"] if nested else tool
            if fn.get("parameters") is not None:
                check_schema(
                    fn["parameters"], f"tools[{i}].function.parameters" if nested else f"tools[{i}].parameters"
                )


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an object" if isinstance(value, dict) else type(value).__name__


class Serving:
    """What every surface shares: the backend, its upstream, and a reply relayed as the upstream sent it."""

    def __init__(self, backend: Backend, upstream: Upstream) -> None:
        self.backend, self.upstream, self.name = backend, upstream, backend.name
        self.settings = backend.settings
        self._last_ready: tuple[bool, str] = (True, "")

    async def relay(self, method: str, path: str, body: Any, headers: dict[str, str], params: Any = None) -> Response:
        """The upstream's 200 JSON reply passed on as it is (its usage counted)."""
        reply = await self.upstream.call(method, path, body, headers=headers, params=params)
        metrics.count_usage(self.name, reply.json)
        return Response(reply.content, media_type=JSON)

    async def relay_stream(
        self, path: str, body: Any, headers: dict[str, str], method: str = "POST", params: Any = None
    ) -> Response:
        ctx, resp = await self.upstream.open(method, path, body, headers=headers, params=params)
        return relay.relayed(ctx, resp)

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
        backend.prepare_chat(body)
        with metrics.track(self.name, "chat"):
            if body.get("stream"):
                return await self.relay_stream(backend.chat_url(body), body, headers)
            return await self.relay("POST", backend.chat_url(body), body, headers)


class ResponsesService(Serving):
    """`/v1/responses`: relayed to a backend that serves it, else translated over chat completions."""

    async def create(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        check_sizes(body, self.settings, "input")
        self.settings.check_model(body)
        with metrics.track(self.name, "responses"):
            try:
                if self.backend.native_responses:
                    return await self.native(body, headers)
                return await self.translated(body, headers)
            except APIError as err:
                if err.code != "context_length_exceeded" or self.backend.options.context_overflow != "incomplete":
                    raise
                return self.overflow(body, err)

    async def native(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        self.backend.prepare_responses(body)
        if body.get("stream"):
            return await self.relay_stream(self.backend.responses_path, body, headers)
        return await self.relay("POST", self.backend.responses_path, body, headers)

    async def translated(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        """The backend hooks in their order (backends/base.py), then the upstream, then the reply."""
        backend = self.backend
        extras = backend.take_extras(body)  # 1
        chat = responses_to_chat(body, backend.options)  # 2
        chat.body.update(extras)
        backend.prepare_chat(chat.body)  # 3
        dropped = {DROPPED_HEADER: ",".join(chat.dropped)} if chat.dropped else {}
        try:
            await backend.before_chat(self.upstream, chat)  # 4
            path = backend.chat_url(chat.body)  # 5
            response_id, created_at = new_response_id(), int(time.time())
            if body.get("stream"):
                ctx, resp = await self.upstream.open("POST", path, chat.body, headers=headers)
                translator = StreamTranslator(
                    body, response_id=response_id, created_at=created_at, opts=backend.options
                )
                return relay.translated(ctx, resp, translator, lambda c: backend.error(500, c), dropped)
            reply = await self.upstream.call("POST", path, chat.body, headers=headers)
        except APIError as err:
            err.headers.update(dropped)  # what was dropped is said on an error reply too
            raise
        metrics.count_usage(self.name, reply.json)
        out = chat_to_response(reply.json, body, response_id=response_id, created_at=created_at, opts=backend.options)
        return json_response(out, headers=dropped)

    def overflow(self, body: dict[str, Any], err: APIError) -> Response:
        """context_overflow="incomplete" (NeMo Gym's behaviour): an input the model has no room for is an
        `incomplete` Response with no output, streamed or not as asked, instead of a 400."""
        log.info(
            "context overflow answered as an incomplete response", extra={"backend": self.name, "error": err.message}
        )
        response_id, created_at = new_response_id(), int(time.time())
        headers = {k: v for k, v in err.headers.items() if k == DROPPED_HEADER}
        if body.get("stream"):
            translator = StreamTranslator(
                body, response_id=response_id, created_at=created_at, opts=self.backend.options
            )
            events = relay.sse_events(translator.overflow())
            return Response(events, media_type="text/event-stream", headers={**relay.SSE_HEADERS, **headers})
        return json_response(overflow_response(body, response_id=response_id, created_at=created_at), headers=headers)

    async def stored(self, method: str, sub: str, params: Any, headers: dict[str, str]) -> Response:
        """GET/DELETE /v1/responses/{id}, cancel, input_items: relayed where the upstream keeps responses."""
        backend = self.backend
        if not (backend.native_responses and backend.stored_responses):
            msg = f"The {self.name} backend does not store responses: send the whole conversation as input instead."
            raise APIError(404, msg, code="response_not_found")
        path = backend.responses_path + sub
        if method == "GET" and params.get("stream") == "true":  # resume a background stream
            return await self.relay_stream(path, None, headers, method="GET", params=params)
        return await self.relay(method, path, None, headers, params)
