"""The OpenRouter backend: attribution headers, routing/reasoning passthrough, native mode refusals,
error bodies (provider metadata, errors inside 200 replies) in OpenAI's format."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.unit.hosted_helpers import adapter, streamed

ENV = {
    "MODELYARD_UPSTREAM_URL": "https://openrouter.ai/api/v1",
    "MODELYARD_UPSTREAM_API_KEY": "sk-or-v1-secret",
    "OPENROUTER_HTTP_REFERER": "https://example.test",
    "OPENROUTER_X_TITLE": "modelyard",
}
NATIVE = {**ENV, "MODELYARD_RESPONSES_MODE": "native"}


def answer(status: int, body: dict) -> httpx.Response:
    return httpx.Response(status, json=body)


def test_chat_headers_and_options_passed_through() -> None:
    tc, up = adapter("openrouter", ENV)
    body = {
        "model": "m",
        "messages": [],
        "provider": {"order": ["a"], "allow_fallbacks": False},
        "reasoning": {"effort": "low"},
    }
    with tc:
        tc.post("/v1/chat/completions", json=body)
    assert str(up.last.url) == "https://openrouter.ai/api/v1/chat/completions" and up.body() == body
    assert up.last.headers["authorization"] == "Bearer sk-or-v1-secret"
    assert up.last.headers["http-referer"] == "https://example.test" and up.last.headers["x-title"] == "modelyard"


def test_native_mode_relays_responses_and_refuses_state() -> None:
    tc, up = adapter("openrouter", NATIVE)
    with tc:
        tc.post("/v1/responses", json={"model": "m", "input": "x", "provider": {"sort": "price"}})
        assert up.last.url.path == "/api/v1/responses" and up.body()["provider"] == {"sort": "price"}
        for field, value in (("store", True), ("previous_response_id", "resp_1"), ("conversation", "conv_1")):
            resp = tc.post("/v1/responses", json={"model": "m", "input": "x", field: value})
            assert resp.status_code == 400 and resp.json()["error"]["param"] == field
        assert tc.post("/v1/responses", json={"model": "m", "input": "x", "store": False}).status_code == 200
        assert tc.get("/v1/responses/resp_1").status_code == 404  # stateless: nothing to fetch


def test_translate_mode_carries_routing_onto_the_chat_request() -> None:
    tc, up = adapter("openrouter", ENV)
    with tc:
        tc.post(
            "/v1/responses",
            json={"model": "m", "input": "x", "provider": {"only": ["a"]}, "reasoning": {"effort": "high"}},
        )
    assert up.last.url.path == "/api/v1/chat/completions"
    assert up.body()["provider"] == {"only": ["a"]} and up.body()["reasoning"] == {"effort": "high"}


VENICE = {"provider_name": "Venice", "raw": "rate-limited upstream"}
FLAGGED = {"reasons": ["violence"], "flagged_input": "x", "provider_name": "OpenAI", "model_slug": "m"}
FIREWORKS = {"provider_name": "Fireworks", "raw": {"error": "boom"}}
CASES = [
    (401, {"code": 401, "message": "User not found."}, "invalid_api_key", ["User not found."]),
    (402, {"code": 402, "message": "Insufficient credits"}, "insufficient_quota", ["credits"]),
    (429, {"code": 429, "message": "Provider returned error", "metadata": VENICE}, "rate_limit_exceeded",
     ["Venice", "rate-limited upstream"]),
    (403, {"code": 403, "message": "Input was flagged", "metadata": FLAGGED}, "content_filter", ["violence"]),
    (502, {"code": 502, "message": "Provider returned error", "metadata": FIREWORKS}, "upstream_provider_error",
     ["Fireworks", '{"error":"boom"}']),
]  # fmt: skip


@pytest.mark.parametrize(("status", "error", "code", "needles"), CASES)
def test_errors_mapped_to_openai_format(status: int, error: dict, code: str, needles: list[str]) -> None:
    tc, _ = adapter("openrouter", ENV, lambda r: answer(status, {"error": error}))
    with tc:
        resp = tc.post("/v1/chat/completions", json={"model": "m", "messages": []})
    err = resp.json()["error"]
    assert resp.status_code == status and set(err) == {"message", "type", "param", "code"} and err["code"] == code
    assert all(n in err["message"] for n in needles) and "sk-or-v1-secret" not in resp.text


def test_error_inside_a_200_reply() -> None:
    tc, _ = adapter("openrouter", ENV, lambda r: answer(200, {"error": {"code": 502, "message": "Provider down"}}))
    with tc:
        resp = tc.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert resp.status_code == 502 and resp.json()["error"]["message"] == "Provider down"


def test_stream_comments_relayed_as_sent() -> None:
    raw = b": OPENROUTER PROCESSING\n\ndata: " + json.dumps({"choices": []}).encode() + b"\n\ndata: [DONE]\n\n"
    tc, _ = adapter("openrouter", ENV, lambda r: streamed(raw))
    with tc, tc.stream("POST", "/v1/chat/completions", json={"model": "m", "messages": [], "stream": True}) as resp:
        assert b"".join(resp.iter_bytes()) == raw
