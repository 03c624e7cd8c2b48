"""What a client of the adapter sees when the upstream misbehaves: every failure an OpenAI-format error,
streams that end with an error instead of hanging, and the upstream request closed when the client goes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from modelyard import metrics
from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import Settings
from modelyard.policy import Policy
from modelyard.upstream import Upstream

CHUNK = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Pa"}, "finish_reason": None}]}  # fmt: skip
REPLY = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
}  # fmt: skip
SSE = {"content-type": "text/event-stream"}


class Body(httpx.AsyncByteStream):
    """A streamed body: some chunks, then an optional failure; records whether it was closed."""

    def __init__(self, *chunks: bytes, fail: Exception | None = None, hang: bool = False) -> None:
        self.chunks, self.fail, self.hang, self.closed = chunks, fail, hang, False

    async def __aiter__(self):
        for chunk in self.chunks:
            yield chunk
        if self.hang:
            await asyncio.sleep(30)
        if self.fail:
            raise self.fail

    async def aclose(self) -> None:
        self.closed = True


def data(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def client(handler, **policy: Any) -> tuple[TestClient, Upstream]:
    settings = Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1"})
    pol = replace(Policy(backoff_base=0.001, backoff_max=0.001), **policy)
    upstream = Upstream(settings.upstream_url, transport=httpx.MockTransport(handler), policy=pol, name="vllm")
    return TestClient(create_app(load("vllm", settings), upstream=upstream)), upstream


CHAT = {"model": "m", "messages": [{"role": "user", "content": "x"}]}


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, content=b"<html>Sign in to the proxy</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=json.dumps(REPLY).encode()[:40], headers={"content-type": "application/json"}),
    ],
    ids=["wrong-content-type", "truncated-json"],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
def test_unusable_200_reply_is_502(reply: httpx.Response, path: str) -> None:
    tc, _ = client(lambda r: reply)
    body = CHAT if "chat" in path else {"model": "m", "input": "x"}
    with tc:
        resp = tc.post(path, json=body)
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "bad_upstream_reply"
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
def test_stream_with_wrong_content_type_is_a_plain_502(path: str) -> None:
    tc, _ = client(lambda r: httpx.Response(200, json=REPLY))  # ignored stream: true
    body = {**CHAT, "stream": True} if "chat" in path else {"model": "m", "input": "x", "stream": True}
    with tc:
        resp = tc.post(path, json=body)
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "bad_upstream_reply"


def test_long_retry_after_reaches_the_client() -> None:
    answer = httpx.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after": "120"})
    tc, _ = client(lambda r: answer, retry_after_max=30)
    with tc:
        resp = tc.post("/v1/chat/completions", json=CHAT)
        assert resp.status_code == 429 and resp.headers["retry-after"] == "120"
        resp = tc.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert resp.status_code == 429 and resp.headers["retry-after"] == "120"


def test_circuit_open_and_queue_full_are_openai_errors() -> None:
    tc, upstream = client(lambda r: httpx.Response(503, json={"error": {"message": "down"}}), breaker_failures=1)
    with tc:
        assert tc.post("/v1/chat/completions", json=CHAT).status_code == 503
        resp = tc.post("/v1/responses", json={"model": "m", "input": "x"})
        assert resp.status_code == 503 and int(resp.headers["retry-after"]) >= 1
        assert resp.json()["error"]["code"] == "upstream_circuit_open"
        assert resp.json()["error"]["type"] == "server_error"
        upstream.breaker.success()
        upstream.limit.limit, upstream.limit.queue_size, upstream.limit.active = 1, 0, 1  # as if one were running
        resp = tc.post("/v1/chat/completions", json=CHAT)
        assert resp.status_code == 429 and resp.headers["retry-after"] == "1"
        assert resp.json()["error"] == {
            "message": resp.json()["error"]["message"], "type": "rate_limit_error", "param": None,
            "code": "upstream_busy",
        }  # fmt: skip


@pytest.mark.parametrize("failure", [httpx.ReadError("reset"), httpx.ReadTimeout("stalled")])
def test_chat_stream_broken_off_ends_with_an_error_chunk(failure: Exception) -> None:
    tc, upstream = client(lambda r: httpx.Response(200, stream=Body(data(CHUNK), fail=failure), headers=SSE))
    with tc, tc.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert json.loads(lines[0][6:]) == CHUNK
    assert json.loads(lines[-1][6:])["error"]["code"] == "upstream_stream_error"
    assert upstream.limit.active == 0


@pytest.mark.parametrize("failure", [httpx.ReadError("reset"), httpx.ReadTimeout("stalled")])
def test_responses_stream_broken_off_ends_failed(failure: Exception) -> None:
    tc, upstream = client(lambda r: httpx.Response(200, stream=Body(data(CHUNK), fail=failure), headers=SSE))
    with tc, tc.stream("POST", "/v1/responses", json={"model": "m", "input": "x", "stream": True}) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-1]["response"]["status"] == "failed"
    assert upstream.limit.active == 0


def test_usage_tokens_are_counted() -> None:
    tc, _ = client(lambda r: httpx.Response(200, json=REPLY))
    tokens_in, tokens_out = metrics.TOKENS.labels("vllm", "in"), metrics.TOKENS.labels("vllm", "out")
    before = tokens_in._value.get(), tokens_out._value.get()
    with tc:
        tc.post("/v1/chat/completions", json=CHAT)
        tc.post("/v1/responses", json={"model": "m", "input": "x"})
    assert (tokens_in._value.get() - before[0], tokens_out._value.get() - before[1]) == (14, 4)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
async def test_client_gone_before_the_first_byte_still_closes_the_upstream(path: str) -> None:
    """The body generator never starts when the client has already left; the upstream must close anyway."""
    body = Body(data(CHUNK), hang=True)
    settings = Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1"})
    transport = httpx.MockTransport(lambda r: httpx.Response(200, stream=body, headers=SSE))
    upstream = Upstream(settings.upstream_url, transport=transport, policy=Policy(), name="vllm")
    app = create_app(load("vllm", settings), upstream=upstream)
    app.state.upstream = upstream
    payload = {**CHAT, "stream": True} if "chat" in path else {"model": "m", "input": "x", "stream": True}
    messages = [{"type": "http.request", "body": orjson.dumps(payload), "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)  # slow to send the headers: the disconnect is noticed first

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"adapter")], "client": ("1.2.3.4", 1),
        "server": ("adapter", 8000), "state": {},
    }  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), 5)
    assert body.closed and upstream.limit.active == 0
