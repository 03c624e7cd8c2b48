"""vLLM's /tokenize and /detokenize through the adapter (tokenize.py): the four paths reach the engine's
root endpoints, engine errors come back in OpenAI's format, hosted backends refuse with a 404, and with
replicas a tokenize request goes to the replica its session's generation went to."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from test_replicas import CHAT, Engines, host_of, make

from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import Settings
from modelyard.replicas import COOKIE, REPLICA_HEADER

MESSAGES = [{"role": "user", "content": "x"}]


class Engine:
    """A vLLM server: records (path, body) and answers /tokenize and /detokenize as vLLM does."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = httpx.Response(200, content=request.content).json() if request.content else None
        self.seen.append((request.url.path, body))
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"count": 3, "max_model_len": 8192, "tokens": [1, 2, 3]})
        if request.url.path == "/detokenize":
            return httpx.Response(200, json={"prompt": "Hi"})
        return httpx.Response(404, json={"detail": "Not Found"})


def adapter(backend: str, engine: Engine, **env: str) -> TestClient:
    url = "https://api.openai.com/v1" if backend in ("openai", "azure", "openrouter") else "http://engine:8000/v1"
    env = {"MODELYARD_UPSTREAM_URL": url, "MODELYARD_API_KEY": "k", **env}
    if backend == "azure":
        env |= {"MODELYARD_UPSTREAM_URL": "https://x.openai.azure.com/openai/v1"}
    be = load(backend, Settings.from_env(backend, env))
    return TestClient(create_app(be, upstream=be.make_upstream(httpx.MockTransport(engine))))


@pytest.mark.parametrize("path", ["/tokenize", "/v1/tokenize"])
@pytest.mark.parametrize("backend", ["vllm", "nim"])
def test_tokenize_reaches_the_engine_root(backend: str, path: str) -> None:
    engine = Engine()
    body = {"model": "m", "messages": MESSAGES, "add_generation_prompt": True, "tools": None}
    with adapter(backend, engine) as tc:
        resp = tc.post(path, json=body)
    assert resp.status_code == 200 and resp.json()["tokens"] == [1, 2, 3]
    assert engine.seen == [("/tokenize", body)]  # the body as the client sent it


@pytest.mark.parametrize("path", ["/detokenize", "/v1/detokenize"])
def test_detokenize_reaches_the_engine_root(path: str) -> None:
    engine = Engine()
    with adapter("vllm", engine) as tc:
        resp = tc.post(path, json={"model": "m", "tokens": [1, 2]})
    assert resp.status_code == 200 and resp.json() == {"prompt": "Hi"}
    assert engine.seen == [("/detokenize", {"model": "m", "tokens": [1, 2]})]


def test_the_model_pin_applies_as_on_generation() -> None:
    engine = Engine()
    with adapter("vllm", engine, MODELYARD_MODEL="pinned") as tc:
        assert tc.post("/tokenize", json={"prompt": "Hi"}).status_code == 200
        other = tc.post("/tokenize", json={"model": "other", "prompt": "Hi"})
    assert engine.seen == [("/tokenize", {"prompt": "Hi", "model": "pinned"})]
    assert other.status_code == 404 and other.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("backend", ["openai", "azure", "openrouter"])
def test_hosted_backends_refuse_in_openai_format(backend: str) -> None:
    engine = Engine()
    with adapter(backend, engine) as tc:
        resp = tc.post("/tokenize", json={"model": "m", "prompt": "Hi"})
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert err["code"] == "unknown_url" and "no tokenizer endpoint" in err["message"]
    assert engine.seen == []


def test_an_engine_error_is_an_openai_error() -> None:
    def engine(request: httpx.Request) -> httpx.Response:  # vLLM's own error shape
        return httpx.Response(400, json={"object": "error", "message": "bad messages", "type": "BadRequestError"})

    be = load("vllm", Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1"}))
    with TestClient(create_app(be, upstream=be.make_upstream(httpx.MockTransport(engine)))) as tc:
        resp = tc.post("/tokenize", json={"prompt": "Hi"})
    assert resp.status_code == 400 and resp.json()["error"]["message"] == "bad messages"


def test_not_json_and_get_are_refused() -> None:
    with adapter("vllm", Engine()) as tc:
        assert tc.post("/tokenize", content=b"{").json()["error"]["code"] == "invalid_json"
        assert tc.get("/tokenize").status_code == 405


class TokenizingEngines(Engines):
    """Engines (test_replicas) that also answer /tokenize, naming the host in the reply."""

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            self.seen.append(request.url.host)
            return httpx.Response(200, json={"tokens": [1], "host": request.url.host})
        return await super().__call__(request)


def test_tokenize_sticks_to_the_replica_of_its_session() -> None:
    engines = TokenizingEngines()
    tc, _ = make(engines)
    with tc:
        for sid in "abcdef":
            gen = host_of(tc.post("/v1/chat/completions", json=CHAT, headers={"x-session-id": sid}))
            tok = tc.post("/tokenize", json={"messages": MESSAGES}, headers={"x-session-id": sid})
            assert tok.status_code == 200 and tok.json()["host"] == gen
            assert tok.headers[REPLICA_HEADER] == ("0" if gen == "engine-a" else "1")
        assert {"engine-a", "engine-b"} <= set(engines.seen)


def test_tokenize_follows_the_replica_cookie() -> None:
    tc, _ = make(TokenizingEngines())
    with tc:
        first = tc.post("/v1/chat/completions", json=CHAT)
        assert f"{COOKIE}=" in first.headers["set-cookie"]
        for _ in range(3):  # TestClient keeps the cookie, as the openai SDK's httpx client does
            tok = tc.post("/v1/tokenize", json={"messages": MESSAGES})
            assert tok.headers[REPLICA_HEADER] == first.headers[REPLICA_HEADER]


def test_nemo_gyms_rollout_prefix_reaches_the_tokenizer_too() -> None:
    """NeMo Gym takes /v1 off `<gateway>/ng-rollout/<id>/v1` for its tokenize call: the prefix is stripped
    there as on every route (calls.py)."""
    engine = Engine()
    with adapter("vllm", engine) as tc:
        resp = tc.post("/ng-rollout/r1/tokenize", json={"model": "m", "prompt": "Hi"})
    assert resp.status_code == 200 and engine.seen == [("/tokenize", {"model": "m", "prompt": "Hi"})]
