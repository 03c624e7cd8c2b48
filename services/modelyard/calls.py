"""One client request as usage accounting and rollout capture see it (docs/capture-and-usage.md).

`Calls` is an ASGI middleware: it takes a rollout id off the request (the `x-rollout-id` header, or NeGo
Gym's path prefix `/ng-rollout/<id>/` before `/v1/...`, stripped on every route), keeps a `Call` in a
context variable while the request runs (serving fills in the model, the final reply and its usage, the
first token's time), and once the reply is sent hands it to the ledger (usage.py) and, for a rollout,
to capture (capture.py). Neither writes on the request's path: both queue and write in batches.
"""

from __future__ import annotations

import re
import time
from contextvars import ContextVar
from typing import Any

import orjson

from .errors import APIError

CALL: ContextVar[Call | None] = ContextVar("modelyard_call", default=None)
ROLLOUT_HEADER = b"x-rollout-id"
FALLBACK_HEADER = b"x-modelyard-fallback"
_PREFIX = re.compile(r"^/ng-rollout/([^/]{1,200})(/.*)$")
_ROUTES = ("/v1/responses", "/v1/chat/completions", "/v1/messages")  # the generation routes


class Call:
    __slots__ = (
        "route", "scope", "rollout", "model", "request", "start", "first", "status", "reply", "usage", "error",
        "replica", "fallback",
    )  # fmt: skip

    def __init__(self, route: str, scope: str, rollout: str | None) -> None:
        self.route, self.scope, self.rollout = route, scope, rollout
        self.model: str | None = None
        self.request: Any = None  # the request as the client sent it (a rollout's, when capture is on)
        self.start = time.perf_counter()
        self.first: float | None = None  # when the first token went out (streams)
        self.status = 0
        self.reply: Any = None  # the final reply object (Response, chat completion, message)
        self.usage: dict[str, Any] | None = None
        self.error: str | None = None  # the error type of a failed reply
        self.replica: int | None = None  # the engine replica that answered (several replicas)
        self.fallback: str | None = None  # the fallback backend that answered instead (docs/fleet.md)

    def answered(self, reply: Any) -> None:
        self.reply = reply
        if isinstance(reply, dict):
            usage = reply.get("usage")
            if isinstance(usage, dict):
                self.usage = usage
            if reply.get("status") == "failed" and self.error is None:
                self.error = ((reply.get("error") or {}).get("code")) or "server_error"

    def first_token(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def failed(self, err: APIError) -> None:
        self.error = err.type


def current() -> Call | None:
    return CALL.get()


def usage_of(data: bytes) -> dict[str, Any] | None:
    """The usage in a relayed stream's bytes, where a chunk carries one (the last such chunk wins)."""
    at = data.rfind(b'"usage"')
    if at < 0:
        return None
    start = data.rfind(b"data:", 0, at)
    end = data.find(b"\n", at)
    try:
        chunk = orjson.loads(data[start + 5 : end if end >= 0 else len(data)])
    except orjson.JSONDecodeError:
        return None
    usage = chunk.get("usage") or (chunk.get("response") or {}).get("usage")
    return usage if isinstance(usage, dict) else None


class Calls:
    """ASGI middleware: the rollout prefix stripped, a `Call` per request, the ledger and capture fed after."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app, self.state = app, state  # app.state: .ledger, .capture set at start

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path, rollout = scope["path"], None
        if path.startswith("/ng-rollout/") and (m := _PREFIX.match(path)):
            rollout, path = m.group(1), m.group(2)
            scope = {**scope, "path": path, "raw_path": path.encode()}
        ledger, capture = getattr(self.state, "ledger", None), getattr(self.state, "capture", None)
        if scope["type"] != "http" or (ledger is None and capture is None) or not path.startswith(_ROUTES):
            await self.app(scope, receive, send)
            return
        key = "open"
        for name, value in scope["headers"]:
            if name == ROLLOUT_HEADER and value:
                rollout = value.decode("latin-1")
            elif name == b"x-modelyard-key" and value:
                key = value.decode("latin-1")
        call = Call(path, key, rollout)
        if ledger is not None:
            refusal = ledger.refusal(call)  # over a quota: refused before anything is read or sent
            if refusal is not None:
                await refusal(scope, receive, send)
                return

        async def sent(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                call.status = message["status"]
                if call.fallback is not None:
                    message = {
                        **message,
                        "headers": [*message.get("headers", ()), (FALLBACK_HEADER, call.fallback.encode())],
                    }
                for name, value in message.get("headers", ()):
                    if name == b"x-modelyard-replica":
                        call.replica = int(value)
            await send(message)

        token = CALL.set(call)
        try:
            await self.app(scope, receive, sent)
        finally:
            CALL.reset(token)
            if ledger is not None:
                ledger.record(call)
            if capture is not None and call.rollout is not None:
                capture.record(call)
