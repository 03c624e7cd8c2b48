"""Shared by the hosted backends' unit tests: an adapter app over a scripted upstream (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import Settings

Handler = Callable[[httpx.Request], httpx.Response]


def ok(request: httpx.Request) -> httpx.Response:
    if not request.content:
        return httpx.Response(200, json={"object": "list", "data": []})
    body = json.loads(request.content)
    if body.get("stream"):
        return streamed(b"data: [DONE]\n\n")
    return httpx.Response(200, json={"id": "x", "object": "response", "model": body.get("model"), "echo": body})


def streamed(raw: bytes) -> httpx.Response:
    """An SSE reply that is read as a stream (bytes given as content would count as already read)."""

    async def chunks():
        yield raw

    return httpx.Response(200, content=chunks(), headers={"content-type": "text/event-stream"})


class Script:
    """Records what the adapter sent upstream; answers with `handler`."""

    def __init__(self, handler: Handler = ok) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self) -> dict:
        return json.loads(self.last.content)


def adapter(backend: str, env: dict[str, str], handler: Handler = ok) -> tuple[TestClient, Script]:
    script = Script(handler)
    b = load(backend, Settings.from_env(backend, {"MODELYARD_READINESS_TTL": "0", **env}))
    return TestClient(create_app(b, upstream=b.make_upstream(httpx.MockTransport(script)))), script
