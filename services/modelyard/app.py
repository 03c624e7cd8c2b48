"""The app factory: one FastAPI app per backend, the same routes for all of them (routes.py), served by
one service object per API surface (serving.py) over one upstream client (upstream.py).

Bodies are read and written as bytes with orjson; no pydantic model sits on the hot path (the
translation core builds plain dicts shaped by the openai SDK's types).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import openapi
from .admin import AdminService
from .backends import Backend
from .calls import Calls, current
from .capture import Capture
from .errors import APIError
from .messages import error_body
from .messages_serving import PATH_PREFIX as MESSAGES_PATH
from .messages_serving import MessagesService
from .replicas import ReplicaRouting
from .routes import HotRoutes, router
from .serving import ChatService, ResponsesService, Serving, json_response
from .state import StateService
from .store import Store, open_store
from .store.base import Registry
from .upstream import Upstream
from .usage import Ledger, parse_quotas

log = logging.getLogger("modelyard")


def error_response(err: APIError, path: str = "") -> Response:
    """In OpenAI's format; on Anthropic's Messages routes, in Anthropic's."""
    if path.startswith(MESSAGES_PATH):
        return json_response(error_body(err), err.status, err.headers)
    return json_response(err.body(), err.status, err.headers)


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
            await error_response(err, scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(backend: Backend, upstream: Upstream | None = None) -> FastAPI:
    """Build the adapter app. `upstream` may be injected (tests); by default the backend makes it, at start."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        up = upstream or serve(app, backend, backend.make_upstream())
        store = await open_state(app, backend)
        await app.state.ledger.start(store)
        await up.start()  # with replicas: background health probes, one per replica
        log.info("adapter ready", extra={"backend": backend.name, "upstream": backend.settings.upstream_url})
        # What start-up made (modules, the openai SDK's types, routes) lives as long as the process: out of
        # the collector's way, so a full collection scans only per-request garbage (shorter p99 pauses).
        gc.collect()
        gc.freeze()
        drain_on_signals(app.state)
        yield
        await up.aclose()
        if up.fallback is not None:
            await up.fallback.upstream.aclose()
        await app.state.ledger.close()
        if app.state.capture is not None:
            await app.state.capture.close()
        if store is not None:
            await store.close()

    app = FastAPI(title=f"modelyard {backend.name} adapter", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.backend, app.state.draining = backend, False
    app.state.ledger = Ledger(backend.name, parse_quotas(backend.settings.quotas))
    app.state.capture = None
    if upstream is not None:
        serve(app, backend, upstream)
    app.add_middleware(HotRoutes, on_error=_api_error)  # innermost: inside Draining and the rest
    app.add_middleware(Draining)
    s = backend.settings
    replicas = len(upstream.replicas) if upstream else len(s.upstream_urls)
    dynamic = getattr(upstream.endpoints, "dynamic", False) if upstream else s.dynamic_replicas
    if replicas > 1 or dynamic:  # sessions stick to a replica; the one that answered is named (docs/replicas.md)
        app.add_middleware(ReplicaRouting, replicas=1 << 30 if dynamic else replicas)
    app.add_middleware(Calls, state=app.state)  # outermost: the rollout prefix goes before routing
    for exc_type, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(exc_type, handler)
    app.include_router(router)
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    return app


def serve(app: FastAPI, backend: Backend, up: Upstream) -> Upstream:
    """The services on app.state, one per API surface, over one upstream."""
    up.bind(backend, backend.probe, backend.settings.readiness_ttl)
    if up.fallback is None:
        up.fallback = backend.make_fallback()
    app.state.upstream = up
    app.state.serving = Serving(backend, up)
    app.state.chat = ChatService(backend, up)
    app.state.responses = ResponsesService(backend, up)
    app.state.admin = AdminService(up, backend.settings.admin_key)
    app.state.messages = MessagesService(backend, up)
    return up


async def open_state(app: FastAPI, backend: Backend) -> Store | None:
    """The store, where MODELYARD_STORE_URL names one (docs/state.md), migrated and ready."""
    s = backend.settings
    if not s.store_url:
        return None
    store = open_store(s.store_url, s.store_ttl)
    await store.start()
    app.state.responses.state = StateService(store, store_default=s.store_default)
    app.state.admin.registry = Registry(store, backend.name)
    await app.state.admin.restore()
    if s.capture:
        app.state.capture = Capture(store, backend.name, s.capture_ttl)
        app.state.capture.start()
    log.info("store ready", extra={"backend": backend.name, "store": s.store_url.split("://", 1)[0]})
    return store


# -- errors, in OpenAI's format (Anthropic's on /v1/messages) ----------------------------------
async def _api_error(request: Request, err: APIError) -> Response:
    if (call := current()) is not None:
        call.failed(err)
    return error_response(err, request.url.path)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        msg = f"Unknown path {request.url.path} on the {request.app.state.backend.name} adapter."
        return error_response(APIError(404, msg, code="unknown_url"), request.url.path)
    if exc.status_code == 405:
        msg = f"Method {request.method} is not allowed on {request.url.path}."
        err = APIError(405, msg, code="method_not_allowed", type="invalid_request_error")
        return error_response(err, request.url.path)
    return error_response(APIError(exc.status_code, str(exc.detail)), request.url.path)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", extra={"path": request.url.path})
    err = APIError(500, "Internal error in the modelyard adapter.", code="internal_error")
    return error_response(err, request.url.path)


ERROR_HANDLERS: dict[Any, Any] = {APIError: _api_error, StarletteHTTPException: _http_error, Exception: _unexpected}


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:  # built once, on first ask
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        app.openapi_schema = openapi.annotate(schema)
    return app.openapi_schema


def factory() -> FastAPI:
    """uvicorn --factory entry point: the backend named by MODELYARD_BACKEND, settings from env."""
    from .backends import load
    from .config import Settings

    backend_name = os.environ.get("MODELYARD_BACKEND", "vllm")
    return create_app(load(backend_name, Settings.from_env(backend_name)))
