"""The adapter app against a scripted upstream (httpx.MockTransport): routing, relaying, errors, readiness."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from modelyard import relay
from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import ConfigError, Settings
from modelyard.upstream import Upstream

CHAT_REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
}
CHUNKS = [
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"content": "Pa"}, "finish_reason": None}]},
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"content": "ris."}, "finish_reason": "stop"}]},
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
     "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}},
]  # fmt: skip


def sse(chunks: list[dict], done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


class Upstream_:
    """Records what the adapter sent; answers what a test scripts."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.health = 200
        self.chat_status = 200
        self.chat_body: bytes = json.dumps(CHAT_REPLY).encode()
        self.stream_body: bytes = sse(CHUNKS)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/health":
            return httpx.Response(self.health)
        if path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m", "object": "model"}]})
        if path == "/v1/chat/completions":
            body = json.loads(request.content)
            if body.get("stream"):
                return httpx.Response(
                    self.chat_status, content=self.stream_body, headers={"content-type": "text/event-stream"}
                )
            return httpx.Response(self.chat_status, content=self.chat_body)
        return httpx.Response(404, json={"detail": "Not Found"})

    def sent(self) -> dict:
        return json.loads(self.requests[-1].content)


def make_client(env: dict[str, str] | None = None) -> tuple[TestClient, Upstream_]:
    script = Upstream_()
    settings = Settings.from_env(
        "vllm", {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1", "MODELYARD_READINESS_TTL": "0", **(env or {})}
    )
    upstream = Upstream(settings.upstream_url, transport=httpx.MockTransport(script))
    return TestClient(create_app(load("vllm", settings), upstream=upstream)), script


@pytest.fixture
def client() -> tuple[TestClient, Upstream_]:
    tc, script = make_client()
    with tc:
        yield tc, script


def test_responses_non_streaming(client) -> None:
    tc, up = client
    resp = tc.post("/v1/responses", json={"model": "m", "input": "Capital of France?", "max_output_tokens": 9})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "response" and body["status"] == "completed"
    assert body["output"][0]["content"][0]["text"] == "Paris."
    sent = up.sent()
    assert sent["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert sent["max_tokens"] == 9


def test_responses_streaming_translates_chunks(client) -> None:
    tc, _ = client
    with tc.stream("POST", "/v1/responses", json={"model": "m", "input": "Hi", "stream": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    types = [e["type"] for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Paris."


def test_stream_cut_off_before_done_ends_with_failed(client) -> None:
    tc, up = client
    up.stream_body = sse(CHUNKS[:2], done=False)
    with tc.stream("POST", "/v1/responses", json={"model": "m", "input": "Hi", "stream": True}) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]


def test_chat_completions_relayed_as_is(client) -> None:
    tc, up = client
    resp = tc.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 200 and resp.json() == CHAT_REPLY
    chat = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    with tc.stream("POST", "/v1/chat/completions", json=chat) as resp:
        raw = b"".join(resp.iter_bytes())
    assert raw == up.stream_body
    # Not asked for by the client: usage is asked for upstream (and counted), its chunk not passed on.
    with tc.stream("POST", "/v1/chat/completions", json={**chat, "stream_options": None}) as resp:
        raw = b"".join(resp.iter_bytes())
    assert raw == relay.without_usage_chunk(up.stream_body) and b'"usage"' not in raw


def test_upstream_error_is_openai_format(client) -> None:
    tc, up = client
    up.chat_status = 400
    up.chat_body = json.dumps(
        {"object": "error", "message": "This model's maximum context length is 2048 tokens.", "type": "BadRequestError",
         "param": None, "code": 400}
    ).encode()  # fmt: skip
    resp = tc.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert resp.status_code == 400
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "code"), [(b"{nope", "invalid_json"), (b"[]", "invalid_type"), (b'"x"', "invalid_type")]
)
def test_bad_json_is_400(client, body: bytes, code: str) -> None:
    tc, _ = client
    resp = tc.post("/v1/responses", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == code


def test_unknown_path_and_method(client) -> None:
    tc, _ = client
    assert tc.get("/v2/nothing").json()["error"]["code"] == "unknown_url"
    resp = tc.get("/v1/chat/completions")
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"


def test_readyz_follows_upstream_health(client) -> None:
    tc, up = client
    assert tc.get("/readyz").status_code == 200
    up.health = 503
    resp = tc.get("/readyz")
    assert resp.status_code == 503 and resp.json()["status"] == "not_ready"
    assert tc.get("/healthz").status_code == 200  # liveness does not depend on the upstream


def test_request_id_passed_upstream(client) -> None:
    tc, up = client
    tc.post("/v1/chat/completions", json={"model": "m", "messages": []}, headers={"x-request-id": "abc-123"})
    assert up.requests[-1].headers["x-request-id"] == "abc-123"


def test_pinned_model_validates_and_overrides() -> None:
    tc, up = make_client({"MODELYARD_MODEL": "policy"})
    with tc:
        resp = tc.post("/v1/chat/completions", json={"model": "other", "messages": []})
        assert resp.status_code == 404 and resp.json()["error"]["param"] == "model"
        tc.post("/v1/chat/completions", json={"messages": []})
        assert up.sent()["model"] == "policy"
    tc, up = make_client({"MODELYARD_MODEL": "policy", "MODELYARD_MODEL_POLICY": "override"})
    with tc:
        tc.post("/v1/chat/completions", json={"model": "other", "messages": []})
        assert up.sent()["model"] == "policy"


def test_upstream_unreachable_is_502() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    settings = Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1"})
    upstream = Upstream(settings.upstream_url, transport=httpx.MockTransport(refuse))
    with TestClient(create_app(load("vllm", settings), upstream=upstream)) as tc:
        resp = tc.post("/v1/responses", json={"model": "m", "input": "x"})
        assert resp.status_code == 502 and resp.json()["error"]["code"] == "upstream_unreachable"
        assert tc.get("/readyz").status_code == 503


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "MODELYARD_UPSTREAM_URL"),
        ({"MODELYARD_UPSTREAM_URL": "engine:8000"}, "http://"),
        ({"MODELYARD_UPSTREAM_URL": "http://e", "MODELYARD_READ_TIMEOUT": "soon"}, "MODELYARD_READ_TIMEOUT"),
        ({"MODELYARD_UPSTREAM_URL": "http://e", "MODELYARD_EXTRA_BODY": "[1]"}, "MODELYARD_EXTRA_BODY"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env("vllm", env)


def test_api_key_is_never_in_repr(tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-secret-value\n")
    s = Settings.from_env(
        "openai", {"MODELYARD_UPSTREAM_URL": "http://e", "MODELYARD_UPSTREAM_API_KEY_FILE": str(key_file)}
    )
    assert s.api_key == "sk-secret-value"
    assert "sk-secret" not in repr(s)
