"""The app factory: one FastAPI app per backend, the same routes for all of them.

Bodies are read and written as bytes with orjson; no pydantic model sits on the hot path (the
translation core builds plain dicts shaped by the openai SDK's types).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import metrics, openapi
from .backends import Backend
from .errors import APIError, invalid
from .replicas import ReplicaRouting, Replicas
from .tokenize import ROUTES as TOKENIZER_ROUTES
from .tokenize import relay_tokenize
from .translate import (
    StreamTranslator,
    chat_to_response,
    new_response_id,
    overflow_response,
    responses_to_chat,
)
from .translate.schema import check_schema
from .upstream import Upstream, bad_reply, is_event_stream, json_reply, passthrough_headers, sse_data

log = logging.getLogger("modelyard")

JSON = "application/json"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def error_response(err: APIError) -> Response:
    return json_response(err.body(), err.status, err.headers)


def sse_event(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def sse_events(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(sse_event(event) for event in events)


def closer(ctx: Any) -> BackgroundTask:
    """Runs after a streamed reply, also when the client left before its first byte (the body generator
    then never starts, and its `finally` never runs): the upstream request is closed either way."""
    return BackgroundTask(ctx.__aexit__, None, None, None)


async def read_json(request: Request, limit: int = 0) -> dict[str, Any]:
    """The body as a JSON object; over `limit` bytes (0: none) a 413 before or after reading it."""
    declared = request.headers.get("content-length", "")
    if limit and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    raw = await request.body()
    if limit and len(raw) > limit:
        raise too_large(limit)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid(f"The request body must be a JSON object, got {type(body).__name__}.", code="invalid_type")
    return body


def too_large(limit: int) -> APIError:
    msg = f"The request body is larger than the adapter's limit of {limit} bytes (MODELYARD_MAX_BODY_BYTES)."
    return APIError(413, msg, code="request_too_large", type="invalid_request_error")


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
            raise invalid(f"'{key}' must be an array, got {type(value).__name__}.", param=key, code="invalid_type")
        if limit and len(value) > limit:
            msg = f"'{key}' has {len(value)} entries; at most {limit} are allowed ({setting})."
            raise invalid(msg, param=key, code="array_above_max_length")
    if body.get("stream") not in (None, True, False):  # a truthy list would otherwise start a stream
        raise invalid("'stream' must be a boolean.", param="stream", code="invalid_type")
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


def drain_on_signals(state: Any) -> None:
    """Graceful shutdown, the part uvicorn does not do: chained onto its SIGTERM/SIGINT handlers (installed
    before the app starts), so from the signal on /readyz says 503 at once and requests that still arrive on
    open connections get a 503 in OpenAI's format (Draining), while the ones already running finish (uvicorn
    waits up to MODELYARD_SHUTDOWN_GRACE for them, then closes what is left)."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals are the main thread's (a test client runs the app in another)
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            if not state.draining:
                log.info("draining: finishing in-flight requests, refusing new ones")
            state.draining = True
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, handler)


class Draining:
    """ASGI middleware: while the app drains, every request but /healthz and /metrics is a 503."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["app"].state.draining and scope["path"] not in ("/healthz", "/metrics"):
            err = APIError(503, "The adapter is shutting down: retry shortly.", code="shutting_down")
            err.headers.update({"connection": "close", "retry-after": "1"})
            if scope["path"] == "/readyz":
                body = {"status": "draining", "backend": scope["app"].state.backend.name}
                await json_response(body, 503)(scope, receive, send)
                return
            await error_response(err)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(backend: Backend, upstream: Upstream | None = None) -> FastAPI:
    """Build the adapter app. `upstream` may be injected (tests); by default the backend makes it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upstream = upstream or backend.make_upstream()
        if isinstance(app.state.upstream, Replicas):
            await app.state.upstream.start()  # background health probes, one per replica
        log.info("adapter ready", extra={"backend": backend.name, "upstream": backend.settings.upstream_url})
        # What start-up made (modules, the openai SDK's types, routes) lives as long as the process: out of
        # the collector's way, so a full collection scans only per-request garbage (shorter p99 pauses).
        gc.collect()
        gc.freeze()
        drain_on_signals(app.state)
        yield
        await app.state.upstream.aclose()

    app = FastAPI(title=f"modelyard {backend.name} adapter", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.backend = backend
    app.state.draining = False
    app.add_middleware(Draining)
    name = backend.name
    if len(backend.settings.upstream_urls) > 1 or isinstance(upstream, Replicas):
        # Sessions stick to a replica; the one that answered is named in a header (docs/replicas.md).
        n = len(upstream.replicas) if isinstance(upstream, Replicas) else len(backend.settings.upstream_urls)
        app.add_middleware(ReplicaRouting, replicas=n)

    def up(request: Request) -> Upstream:
        return request.app.state.upstream

    def forward_headers(request: Request) -> dict[str, str]:
        rid = request.headers.get("x-request-id")
        return {"x-request-id": rid} if rid else {}

    async def call(
        request: Request,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        params: Any = None,
    ) -> httpx.Response:
        """Send upstream and read the reply; an upstream error becomes an OpenAI-format error."""
        resp = await up(request).request(method, path, body, headers=headers, params=params)
        if resp.status_code != 200:
            err = backend.error(resp.status_code, resp.content)
            err.headers.update(passthrough_headers(resp))
            raise err
        metrics.count_usage(name, json_reply(resp))
        err = backend.reply_error(resp.content)
        if err:
            raise err
        return resp

    # -- errors, always in OpenAI's format ------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> Response:
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            msg = f"Unknown path {request.url.path} on the {name} adapter."
            return error_response(APIError(404, msg, code="unknown_url"))
        if exc.status_code == 405:
            msg = f"Method {request.method} is not allowed on {request.url.path}."
            return error_response(APIError(405, msg, code="method_not_allowed", type="invalid_request_error"))
        return error_response(APIError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error", extra={"path": request.url.path})
        return error_response(APIError(500, "Internal error in the modelyard adapter.", code="internal_error"))

    # -- health -------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok", "backend": name})

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        ok, detail = await backend.ready(up(request))
        body = {"status": "ready" if ok else "not_ready", "backend": name, "upstream": detail}
        return json_response(body, 200 if ok else 503)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

    # -- models -------------------------------------------------------------------------
    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        resp = await call(request, "GET", backend.models_path, headers=forward_headers(request))
        return Response(resp.content, media_type=JSON)

    # -- chat completions: relayed as they are ------------------------------------------
    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await read_json(request, backend.settings.max_body_bytes)
        check_sizes(body, backend.settings, "messages")
        backend.settings.check_model(body)
        backend.prepare_chat(body)
        headers = forward_headers(request)
        with metrics.track(name, "chat"):
            if body.get("stream"):
                return await relay_stream(up(request), backend.chat_url(body), body, headers)
            resp = await call(request, "POST", backend.chat_url(body), body, headers)
            return Response(resp.content, media_type=JSON)

    # -- responses ----------------------------------------------------------------------
    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        body = await read_json(request, backend.settings.max_body_bytes)
        check_sizes(body, backend.settings, "input")
        backend.settings.check_model(body)
        headers = forward_headers(request)
        with metrics.track(name, "responses"):
            try:
                return await create_response(request, body, headers)
            except APIError as err:
                if err.code != "context_length_exceeded" or backend.options.context_overflow != "incomplete":
                    raise
                return overflow_reply(body, err)

    async def create_response(request: Request, body: dict[str, Any], headers: dict[str, str]) -> Response:
        if backend.native_responses:
            backend.prepare_responses(body)
            if body.get("stream"):
                return await relay_stream(up(request), backend.responses_path, body, headers)
            resp = await call(request, "POST", backend.responses_path, body, headers)
            return Response(resp.content, media_type=JSON)

        extras = backend.take_extras(body)
        chat = responses_to_chat(body, backend.options)
        chat.body.update(extras)
        backend.prepare_chat(chat.body)
        extra = {"x-modelyard-dropped-params": ",".join(chat.dropped)} if chat.dropped else {}
        try:
            await backend.before_chat(up(request), chat)
            response_id, created_at = new_response_id(), int(time.time())
            if body.get("stream"):
                translator = StreamTranslator(
                    body, response_id=response_id, created_at=created_at, opts=backend.options
                )
                path = backend.chat_url(chat.body)
                return await translate_stream(up(request), path, chat.body, headers, translator, extra)
            resp = await call(request, "POST", backend.chat_url(chat.body), chat.body, headers)
        except APIError as err:
            err.headers.update(extra)  # what was dropped is said on an error reply too
            raise
        try:
            reply = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise APIError(502, "Upstream sent a reply that is not JSON.", code="bad_upstream_reply") from None
        out = chat_to_response(reply, body, response_id=response_id, created_at=created_at, opts=backend.options)
        return json_response(out, headers=extra)

    def overflow_reply(body: dict[str, Any], err: APIError) -> Response:
        """context_overflow="incomplete" (NeMo Gym's behaviour): an input the model has no room for is an
        `incomplete` Response with no output, streamed or not as asked, instead of a 400."""
        log.info("context overflow answered as an incomplete response", extra={"backend": name, "error": err.message})
        response_id, created_at = new_response_id(), int(time.time())
        extra = {k: v for k, v in err.headers.items() if k == "x-modelyard-dropped-params"}
        if body.get("stream"):
            translator = StreamTranslator(body, response_id=response_id, created_at=created_at, opts=backend.options)
            events = sse_events(translator.overflow())
            return Response(events, media_type="text/event-stream", headers={**SSE_HEADERS, **extra})
        return json_response(overflow_response(body, response_id=response_id, created_at=created_at), headers=extra)

    # -- vLLM's /tokenize and /detokenize (tokenize.py; registered here until routes.py takes them) --
    async def tokenizer(request: Request) -> Response:
        body = await read_json(request, backend.settings.max_body_bytes)
        with metrics.track(name, "tokenize"):
            return await relay_tokenize(up(request), backend, request.url.path, body, forward_headers(request))

    for path in TOKENIZER_ROUTES:
        app.add_api_route(path, tokenizer, methods=["POST"], name=path.strip("/").replace("/", "_"))

    # -- stored responses: relayed where the upstream keeps them (OpenAI, Azure) ----------------
    @app.get("/v1/responses/{response_id}")
    async def get_response(request: Request, response_id: str) -> Response:
        return await relay_stored(request, f"/{response_id}")

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(request: Request, response_id: str) -> Response:
        return await relay_stored(request, f"/{response_id}")

    @app.post("/v1/responses/{response_id}/cancel")
    async def cancel_response(request: Request, response_id: str) -> Response:
        return await relay_stored(request, f"/{response_id}/cancel")

    @app.get("/v1/responses/{response_id}/input_items")
    async def response_input_items(request: Request, response_id: str) -> Response:
        return await relay_stored(request, f"/{response_id}/input_items")

    async def relay_stored(request: Request, sub: str) -> Response:
        if not (backend.native_responses and backend.stored_responses):
            msg = f"The {name} backend does not store responses: send the whole conversation as input instead."
            raise APIError(404, msg, code="response_not_found")
        path, params, headers = backend.responses_path + sub, request.query_params, forward_headers(request)
        if request.method == "GET" and params.get("stream") == "true":  # resume a background stream
            return await relay_stream(up(request), path, None, headers, method="GET", params=params)
        resp = await call(request, request.method, path, None, headers, params)
        return Response(resp.content, media_type=JSON)

    async def open_stream(
        upstream: Upstream,
        path: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
        method: str = "POST",
        params: Any = None,
    ):
        """Open the upstream stream; an upstream error before the first byte is a plain error reply."""
        ctx = upstream.stream(method, path, body, headers=headers, params=params)
        resp = await ctx.__aenter__()
        if resp.status_code != 200 or not is_event_stream(resp):
            try:
                content = await resp.aread()
            except httpx.HTTPError:
                content = b""
            finally:
                await ctx.__aexit__(None, None, None)
            if resp.status_code == 200:
                raise bad_reply(resp)
            err = backend.error(resp.status_code, content)
            err.headers.update(passthrough_headers(resp))
            raise err
        return ctx, resp

    async def relay_stream(
        upstream: Upstream,
        path: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
        method: str = "POST",
        params: Any = None,
    ):
        ctx, resp = await open_stream(upstream, path, body, headers, method, params)

        async def gen() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.aiter_bytes():
                    yield chunk
            except httpx.HTTPError as exc:
                err = APIError(502, f"Upstream stream broke off ({type(exc).__name__}).", code="upstream_stream_error")
                yield b"data: " + orjson.dumps(err.body()) + b"\n\n"
            finally:
                await ctx.__aexit__(None, None, None)

        media = resp.headers.get("content-type", "text/event-stream")
        return StreamingResponse(gen(), media_type=media, headers=SSE_HEADERS, background=closer(ctx))

    async def translate_stream(
        upstream: Upstream,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str],
        translator: StreamTranslator,
        extra: dict[str, str] | None,
    ):
        ctx, resp = await open_stream(upstream, path, body, headers)

        async def gen() -> AsyncIterator[bytes]:
            # The events one upstream chunk turns into go out as one write: one send through uvicorn and
            # the gateway instead of one per event (the first token comes with 3 more events around it).
            try:
                yield sse_events(translator.start())
                done = False
                async for data in sse_data(resp):
                    if data == b"[DONE]":
                        done = True
                        break
                    chunk = orjson.loads(data)
                    if chunk.get("error"):  # OpenRouter sends it with choices (finish_reason "error")
                        err = backend.error(500, chunk)
                        yield sse_events(translator.fail(err.message))
                        return
                    out = sse_events(translator.feed(chunk))
                    if out:
                        yield out
                if not done:
                    yield sse_events(translator.fail("Upstream stream ended before it was complete."))
                    return
                yield sse_events(translator.finish())
            except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
                yield sse_events(translator.fail(f"Upstream stream broke off ({type(exc).__name__})."))
            finally:
                await ctx.__aexit__(None, None, None)

        return StreamingResponse(
            gen(), media_type="text/event-stream", headers={**SSE_HEADERS, **(extra or {})}, background=closer(ctx)
        )

    def openapi_schema() -> dict[str, Any]:
        if app.openapi_schema is None:  # built once, on first ask
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = openapi.annotate(schema)
        return app.openapi_schema

    app.openapi = openapi_schema  # type: ignore[method-assign]
    return app


def factory() -> FastAPI:
    """uvicorn --factory entry point: the backend named by MODELYARD_BACKEND, settings from env."""
    import os

    from .backends import load
    from .config import Settings

    backend_name = os.environ.get("MODELYARD_BACKEND", "vllm")
    return create_app(load(backend_name, Settings.from_env(backend_name)))
