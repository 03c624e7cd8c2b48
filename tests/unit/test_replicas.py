"""Several replicas behind one adapter (replicas.py, docs/replicas.md), against httpx.MockTransport: sessions
stick, new sessions spread to the least loaded, a replica that refuses connections or fails its probe is
taken out and the request retried elsewhere, put back when its probe passes; header, cookie, metrics."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from modelyard import metrics
from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import ConfigError, Settings
from modelyard.policy import Policy
from modelyard.replicas import COOKIE, REPLICA_HEADER, ReplicaSet
from modelyard.upstream import Upstream, replica_set

URLS = "http://engine-a:8000/v1,http://engine-b:8000/v1"
REPLY = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
}  # fmt: skip
CHAT = {"model": "m", "messages": [{"role": "user", "content": "x"}]}


class Engines:
    """Two fake engines by host: `down` refuse connections, `sick` fail /health, `status` per host."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.sick: set[str] = set()
        self.status: dict[str, int] = {}
        self.seen: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/health":
            return httpx.Response(503 if host in self.sick else 200)
        self.seen.append(host)
        status = self.status.get(host, 200)
        if status != 200:
            return httpx.Response(status, json={"object": "error", "message": f"{host} says {status}", "code": status})
        return httpx.Response(200, json={**REPLY, "model": host})


def make(engines: Engines, backend: str = "vllm", **env: str) -> tuple[TestClient, Upstream]:
    settings = Settings.from_env(backend, {"MODELYARD_UPSTREAM_URL": URLS, **env})
    be = load(backend, settings)
    up = be.make_upstream(httpx.MockTransport(engines))
    object.__setattr__(up, "policy", replace(up.policy, backoff_base=0.001, backoff_max=0.001))
    return TestClient(create_app(be, upstream=up)), up


def host_of(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    return resp.json()["model"]


def test_url_list_is_parsed_and_checked() -> None:
    s = Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": " http://a:8000/v1/ , http://b:8000/v1"})
    assert s.upstream_urls == ("http://a:8000/v1", "http://b:8000/v1") and s.upstream_url == "http://a:8000/v1"
    with pytest.raises(ConfigError, match="twice"):
        Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": "http://a/v1,http://a/v1"})
    with pytest.raises(ConfigError, match="http://"):
        Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": "http://a/v1,b:8000"})
    # A hosted API is one endpoint: a list is refused by name.
    with pytest.raises(ConfigError, match="openai backend takes one"):
        load("openai", Settings.from_env("openai", {"MODELYARD_UPSTREAM_URL": URLS}))


def test_one_url_keeps_the_plain_upstream_and_no_routing_header() -> None:
    settings = Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": "http://engine-a:8000/v1"})
    be = load("vllm", settings)
    up = be.make_upstream(httpx.MockTransport(Engines()))
    assert not isinstance(up.endpoints, ReplicaSet)
    with TestClient(create_app(be, upstream=up)) as tc:
        resp = tc.post("/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200 and REPLICA_HEADER not in resp.headers and "set-cookie" not in resp.headers


def test_sessions_stick_and_new_sessions_spread() -> None:
    engines = Engines()
    tc, _ = make(engines)
    with tc:
        first = {sid: tc.post("/v1/chat/completions", json=CHAT, headers={"x-session-id": sid}) for sid in "abcdef"}
        hosts = {sid: host_of(r) for sid, r in first.items()}
        assert set(hosts.values()) == {"engine-a", "engine-b"}  # spread over both
        for sid, resp in first.items():
            assert resp.headers[REPLICA_HEADER] == ("0" if hosts[sid] == "engine-a" else "1")
        for _ in range(3):
            for sid in "abcdef":
                assert host_of(tc.post("/v1/chat/completions", json=CHAT, headers={"x-session-id": sid})) == hosts[sid]


def test_cookie_pins_a_client_without_session_header() -> None:
    tc, _ = make(Engines())
    with tc:
        resp = tc.post("/v1/chat/completions", json=CHAT)
        index = resp.headers[REPLICA_HEADER]
        assert f"{COOKIE}={index}" in resp.headers["set-cookie"]
        # TestClient keeps cookies, as httpx (and the openai SDK) do: the same replica from now on.
        for _ in range(4):
            again = tc.post("/v1/chat/completions", json=CHAT)
            assert again.headers[REPLICA_HEADER] == index and "set-cookie" not in again.headers


def test_refused_connection_fails_over_and_probe_puts_back() -> None:
    engines = Engines()
    tc, up = make(engines)
    with tc:
        hosts = {
            sid: host_of(tc.post("/v1/chat/completions", json=CHAT, headers={"x-session-id": sid})) for sid in "abcd"
        }
        engines.down.add("engine-b")
        for sid in "abcd":  # no request fails: b's sessions move to a
            assert host_of(tc.post("/v1/chat/completions", json=CHAT, headers={"x-session-id": sid})) == "engine-a"
        assert not up.replicas[1].healthy
        ready = tc.get("/readyz")
        assert ready.status_code == 200 and "1/2 replicas up" in ready.json()["upstream"]
        moved = [sid for sid, h in hosts.items() if h == "engine-b"]
        assert moved and metrics.REPLICA_FAILOVERS.labels("vllm", "1")._value.get() >= 1

        engines.down.clear()
        asyncio.run(up.endpoints.probe_all())
        assert up.replicas[1].healthy
        # Moved sessions stay where they are now; new sessions may go to the replica put back.
        for sid in moved:
            assert host_of(tc.post("/v1/chat/completions", json=CHAT, headers={"x-session-id": sid})) == "engine-a"
        fresh = {
            host_of(tc.post("/v1/chat/completions", json=CHAT, headers={"x-session-id": f"n{i}"})) for i in range(4)
        }
        assert fresh == {"engine-a", "engine-b"}
        text = tc.get("/metrics").text
        assert 'modelyard_replica_healthy{backend="vllm",host="engine-b:8000",replica="1"} 1.0' in text
        assert 'modelyard_replica_transitions_total{backend="vllm",replica="1",to="down"}' in text


def test_failed_probe_takes_out_and_all_out_is_503() -> None:
    engines = Engines()
    tc, up = make(engines)
    with tc:
        engines.sick.add("engine-a")
        asyncio.run(up.endpoints.probe_all())
        for i in range(4):
            assert host_of(tc.post("/v1/chat/completions", json=CHAT, headers={"x-session-id": f"s{i}"})) == "engine-b"
        engines.sick.add("engine-b")
        asyncio.run(up.endpoints.probe_all())
        assert tc.get("/readyz").status_code == 503
        resp = tc.post("/v1/responses", json={"model": "m", "input": "x"})
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "upstream_unavailable"
        assert int(resp.headers["retry-after"]) >= 1


def test_server_error_is_retried_on_the_other_replica_client_errors_are_not() -> None:
    engines = Engines()
    tc, _ = make(engines)
    with tc:
        engines.status["engine-a"] = 503
        for i in range(4):
            resp = tc.post("/v1/chat/completions", json=CHAT, headers={"x-session-id": f"s{i}"})
            assert host_of(resp) == "engine-b" and resp.headers[REPLICA_HEADER] == "1"
        engines.status = {"engine-a": 400, "engine-b": 400}
        engines.seen.clear()
        resp = tc.post("/v1/chat/completions", json=CHAT)
        assert resp.status_code == 400 and resp.json()["error"]["message"].endswith("says 400")
        assert len(engines.seen) == 1  # a bad request is not sent twice


class Body(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self):
        yield self.data


def test_streams_hold_their_replica_until_closed() -> None:
    sse = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}\n\ndata: [DONE]\n\n'

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200)
        return httpx.Response(200, stream=Body(sse), headers={"content-type": "text/event-stream"})

    settings = Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": URLS})
    be = load("vllm", settings)
    up = be.make_upstream(httpx.MockTransport(handler))
    with TestClient(create_app(be, upstream=up)) as tc:
        for _ in range(3):
            resp = tc.post("/v1/chat/completions", json={**CHAT, "stream": True})
            assert resp.status_code == 200 and "[DONE]" in resp.text and REPLICA_HEADER in resp.headers
    assert [r.in_flight for r in up.replicas] == [0, 0]


def test_least_loaded_wins_for_a_new_session() -> None:
    up = replica_set(URLS.split(","), probe=lambda u: _ok(), policy=Policy())
    up.replicas[0].in_flight = 3
    assert up.endpoints.pick(None, set()) is up.replicas[1]
    up.replicas[1].in_flight = 5
    assert up.endpoints.pick(None, set()) is up.replicas[0]


async def _ok() -> tuple[bool, str]:
    return True, "ok"


def test_nim_replicas_probe_health_ready() -> None:
    paths: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"object": "health.response", "message": "Service is ready."})

    settings = Settings.from_env("nim", {"MODELYARD_UPSTREAM_URL": "http://nim-a:8000/v1,http://nim-b:8000/v1"})
    be = load("nim", settings)
    up: Any = be.make_upstream(httpx.MockTransport(handler))
    with TestClient(create_app(be, upstream=up)) as tc:
        assert tc.get("/readyz").status_code == 200
    assert paths.count("/v1/health/ready") >= 2
