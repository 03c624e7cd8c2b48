"""The OpenAI backend: native Responses relay (stored responses too), headers, the model pin, 401s."""

from __future__ import annotations

import httpx

from tests.unit.hosted_helpers import adapter

ENV = {
    "MODELYARD_UPSTREAM_URL": "https://api.openai.com/v1",
    "MODELYARD_UPSTREAM_API_KEY": "sk-proj-secret-1234",
    "OPENAI_ORGANIZATION": "org-1",
    "OPENAI_PROJECT": "proj_1",
}


def test_responses_relayed_natively_with_openai_headers() -> None:
    tc, up = adapter("openai", ENV)
    with tc:
        resp = tc.post("/v1/responses", json={"model": "gpt-4.1", "input": "hi"})
    assert resp.status_code == 200 and resp.json()["echo"] == {"model": "gpt-4.1", "input": "hi"}
    assert str(up.last.url) == "https://api.openai.com/v1/responses"
    assert up.last.headers["authorization"] == "Bearer sk-proj-secret-1234"
    assert up.last.headers["openai-organization"] == "org-1" and up.last.headers["openai-project"] == "proj_1"


def test_stored_responses_relayed_with_their_query() -> None:
    tc, up = adapter("openai", ENV)
    with tc:
        assert tc.get("/v1/responses/resp_1").status_code == 200
        assert str(up.last.url) == "https://api.openai.com/v1/responses/resp_1"
        assert tc.delete("/v1/responses/resp_1").status_code == 200 and up.last.method == "DELETE"
        tc.post("/v1/responses/resp_1/cancel")
        assert (up.last.method, up.last.url.path) == ("POST", "/v1/responses/resp_1/cancel")
        tc.get("/v1/responses/resp_1/input_items?limit=3&order=asc")
        assert up.last.url.path == "/v1/responses/resp_1/input_items"
        assert dict(up.last.url.params) == {"limit": "3", "order": "asc"}


def test_model_pin_validates_or_overrides() -> None:
    tc, up = adapter("openai", {**ENV, "MODELYARD_MODEL": "gpt-4.1"})
    with tc:
        resp = tc.post("/v1/responses", json={"model": "gpt-4o", "input": "x"})
        assert resp.status_code == 404 and resp.json()["error"]["param"] == "model"
        assert up.requests == []
    tc, up = adapter("openai", {**ENV, "MODELYARD_MODEL": "gpt-4.1", "MODELYARD_MODEL_POLICY": "override"})
    with tc:
        tc.post("/v1/responses", json={"model": "gpt-4o", "input": "x"})
        assert up.body()["model"] == "gpt-4.1"


def test_openai_401_mapped_without_the_echoed_key() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        msg = "Incorrect API key provided: sk-proj-********1234. You can find your API key at https://x."
        err = {"message": msg, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
        return httpx.Response(401, json={"error": err})

    tc, _ = adapter("openai", ENV, refuse)
    with tc:
        resp = tc.post("/v1/responses", json={"model": "m", "input": "x"})
    assert resp.status_code == 401
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == "invalid_api_key"
    assert "****" not in err["message"] and "sk-proj" not in err["message"]
