"""POST /v1/responses/input_tokens and /v1/responses/compact on every backend (serving.py
`ResponsesService.input_tokens`, `.compact`): counted by the engine's tokenizer on vLLM over the request
as generation translates it, relayed to OpenAI's and Azure's own routes, refused in OpenAI's format
elsewhere; and any other path under /v1/responses is a 404 in OpenAI's format."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from test_app import Upstream_
from test_replicas import CHAT, host_of, make
from test_tokenize import TokenizingEngines

from tests.unit.hosted_helpers import adapter
from tests.unit.spec import check_spec

VLLM = {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1"}
OPENAI = {"MODELYARD_UPSTREAM_URL": "https://api.openai.com/v1", "MODELYARD_UPSTREAM_API_KEY": "sk-up"}
AZURE = {
    "MODELYARD_UPSTREAM_URL": "https://res.openai.azure.com",
    "MODELYARD_UPSTREAM_API_KEY": "azure-key",
    "AZURE_OPENAI_DEPLOYMENT_MAP": '{"gpt-4o": "dep-4o"}',
}
OPENROUTER = {"MODELYARD_UPSTREAM_URL": "https://openrouter.ai/api/v1", "MODELYARD_UPSTREAM_API_KEY": "k"}
NIM = {"MODELYARD_UPSTREAM_URL": "http://nim:8000/v1"}
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
COUNT = {"model": "m", "input": "Hi there", "instructions": "Be brief.", "tools": [TOOL]}
COUNTED = {"object": "response.input_tokens", "input_tokens": 7}
COMPACTED = {
    "id": "resp_1",
    "object": "response.compaction",
    "created_at": 1764967971,
    "output": [{"id": "cmp_1", "type": "compaction", "encrypted_content": "gAAA"}],
    "usage": {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 8,
    },
}


class Engine(Upstream_):
    """A vLLM engine (test_app's) that also answers /tokenize with four tokens."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            self.requests.append(request)
            return httpx.Response(200, json={"count": 4, "max_model_len": 2048, "tokens": [5, 6, 7, 8]})
        return super().__call__(request)


def provider(request: httpx.Request) -> httpx.Response:
    """OpenAI (or Azure): its replies to the two routes."""
    if request.url.path.endswith("/responses/input_tokens"):
        return httpx.Response(200, json=COUNTED)
    if request.url.path.endswith("/responses/compact"):
        return httpx.Response(200, json=COMPACTED)
    return httpx.Response(200, json={"id": "resp_9", "object": "response"})


def sdk(tc: TestClient) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tc.base_url}/v1", api_key="x", http_client=tc, max_retries=0)


# -- vLLM: the engine's own count ----------------------------------------------------------------
def test_vllm_counts_the_translated_request_with_the_engines_tokenizer() -> None:
    engine = Engine()
    tc, _ = adapter("vllm", VLLM, engine)
    with tc:
        count = sdk(tc).responses.input_tokens.count(**COUNT)
        raw = tc.post("/v1/responses/input_tokens", json=COUNT)
        tc.post("/v1/responses", json=COUNT)
    assert count.input_tokens == 4 and count.object == "response.input_tokens"
    assert raw.status_code == 200 and raw.json() == {"object": "response.input_tokens", "input_tokens": 4}
    check_spec(raw.json(), "TokenCountsResource")
    tokenize, _, chat = (json.loads(r.content) for r in engine.requests)
    assert engine.requests[0].url.path == "/tokenize" and tokenize["add_generation_prompt"] is True
    # The messages and tools the generation of the same request sends, instructions first.
    assert tokenize["messages"] == chat["messages"] and tokenize["tools"] == chat["tools"]
    assert tokenize["messages"][0] == {"role": "system", "content": "Be brief."}


def test_vllm_count_carries_the_chat_template_kwargs_as_generation_does() -> None:
    engine = Engine()
    env = {**VLLM, "MODELYARD_CHAT_TEMPLATE_KWARGS": '{"enable_thinking": false}'}
    tc, _ = adapter("vllm", env, engine)
    with tc:
        resp = tc.post("/v1/responses/input_tokens", json={**COUNT, "chat_template_kwargs": {"x": 1}})
    assert resp.status_code == 200
    assert json.loads(engine.requests[-1].content)["chat_template_kwargs"] == {"enable_thinking": False, "x": 1}


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({**COUNT, "stream": True}, 400, "unknown_parameter", "stream"),
        ({**COUNT, "max_output_tokens": 9}, 400, "unknown_parameter", "max_output_tokens"),
        ({**COUNT, "input": 5}, 400, "invalid_type", "input"),
        ({**COUNT, "reasoning": {"effort": "huge"}}, 400, "invalid_value", "reasoning.effort"),
        ({"model": "m"}, 400, "empty_input", "input"),
        ({**COUNT, "previous_response_id": "resp_1"}, 400, "unsupported_parameter", "previous_response_id"),
        ({**COUNT, "bogus": 1}, 400, "unknown_parameter", "bogus"),
    ],
)
def test_vllm_count_refuses_bad_input_by_name(body: dict, status: int, code: str, param: str) -> None:
    engine = Engine()
    tc, _ = adapter("vllm", VLLM, engine)
    with tc:
        resp = tc.post("/v1/responses/input_tokens", json=body)
    err = resp.json()["error"]
    assert resp.status_code == status and err["code"] == code and err["param"] == param
    assert engine.requests == []  # nothing reached the engine


def test_vllm_count_of_a_bad_body_and_a_pinned_model() -> None:
    engine = Engine()
    tc, _ = adapter("vllm", {**VLLM, "MODELYARD_MODEL": "pinned"}, engine)
    with tc:
        assert tc.post("/v1/responses/input_tokens", content=b"{").json()["error"]["code"] == "invalid_json"
        ok = tc.post("/v1/responses/input_tokens", json={"input": "Hi"})  # model is optional in the spec
        other = tc.post("/v1/responses/input_tokens", json={"model": "other", "input": "Hi"})
    assert ok.status_code == 200 and json.loads(engine.requests[-1].content)["model"] == "pinned"
    assert other.status_code == 404 and other.json()["error"]["code"] == "model_not_found"


def test_vllm_count_with_a_store_puts_the_previous_turns_in_front(tmp_path: Path) -> None:
    engine = Engine()
    tc, _ = adapter("vllm", {**VLLM, "MODELYARD_STORE_URL": f"sqlite://{tmp_path / 'store.db'}"}, engine)
    with tc:
        first = tc.post("/v1/responses", json={"model": "m", "input": "First", "store": True}).json()
        after = {"model": "m", "input": "Next", "previous_response_id": first["id"]}
        resp = tc.post("/v1/responses/input_tokens", json=after)
        missing = tc.post("/v1/responses/input_tokens", json={**after, "previous_response_id": "resp_no"})
    assert resp.status_code == 200
    said = [m["role"] for m in json.loads(engine.requests[-1].content)["messages"]]
    assert said == ["user", "assistant", "user"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "previous_response_not_found"


def test_vllm_count_sticks_to_the_replica_of_its_session() -> None:
    engines = TokenizingEngines()
    tc, _ = make(engines)
    with tc:
        for sid in "abcd":
            gen = host_of(tc.post("/v1/chat/completions", json=CHAT, headers={"x-session-id": sid}))
            tc.post("/v1/responses/input_tokens", json={"model": "m", "input": "x"}, headers={"x-session-id": sid})
            assert engines.seen[-1] == gen


def test_vllm_engine_errors_come_back_in_openai_format() -> None:
    def engine(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"object": "error", "message": "bad template", "type": "BadRequestError"})

    tc, _ = adapter("vllm", VLLM, engine)
    with tc:
        resp = tc.post("/v1/responses/input_tokens", json=COUNT)
    assert resp.status_code == 400 and resp.json()["error"]["message"] == "bad template"


def test_compact_is_refused_on_vllm() -> None:
    engine = Engine()
    tc, _ = adapter("vllm", VLLM, engine)
    with tc, pytest.raises(openai.BadRequestError) as caught:
        sdk(tc).responses.compact(model="m", input="Hi")
    err = caught.value.body
    assert err["code"] == "unsupported_endpoint" and "compact is not supported on the vllm backend" in err["message"]
    assert engine.requests == []


# -- OpenAI and Azure: relayed to their own routes -------------------------------------------------
def test_openai_relays_both_routes() -> None:
    tc, up = adapter("openai", OPENAI, provider)
    with tc:
        count = sdk(tc).responses.input_tokens.count(model="gpt-4o", input="Hi", tools=[TOOL])
        assert str(up.last.url) == "https://api.openai.com/v1/responses/input_tokens"
        assert up.body() == {"model": "gpt-4o", "input": "Hi", "tools": [TOOL]}
        assert up.last.headers["authorization"] == "Bearer sk-up"
        compacted = sdk(tc).responses.compact(model="gpt-4o", input="Hi", extra_body={"client_metadata": {"s": "1"}})
        assert str(up.last.url) == "https://api.openai.com/v1/responses/compact"
        assert up.body() == {"model": "gpt-4o", "input": "Hi"}  # the harness's ids stay here
        raw = tc.post("/v1/responses/input_tokens", json={"model": "gpt-4o", "input": "Hi"}).json()
    assert count.input_tokens == 7 and compacted.output[0].type == "compaction"
    check_spec(raw, "TokenCountsResource")
    check_spec(compacted.model_dump(mode="json", exclude_unset=True), "CompactResource")


def test_openai_errors_are_relayed_and_bad_values_refused_here() -> None:
    def refusing(request: httpx.Request) -> httpx.Response:
        err = {"message": "Unknown parameter: 'x'.", "type": "invalid_request_error", "param": "x", "code": None}
        return httpx.Response(400, json={"error": err})

    tc, up = adapter("openai", OPENAI, refusing)
    with tc:
        relayed = tc.post("/v1/responses/input_tokens", json={"model": "gpt-4o", "x": 1})
        bad = tc.post("/v1/responses/compact", json={"model": "gpt-4o", "reasoning": {"effort": "huge"}})
    assert relayed.status_code == 400 and relayed.json()["error"]["param"] == "x"
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "reasoning.effort" and len(up.requests) == 1


@pytest.mark.parametrize(
    ("style", "base"),
    [
        ("v1", "https://res.openai.azure.com/openai/v1/responses/{}"),
        ("dated", "https://res.openai.azure.com/openai/responses/{}?api-version=2025-04-01-preview"),
    ],
)
def test_azure_relays_both_routes_in_its_url_form(style: str, base: str) -> None:
    tc, up = adapter("azure", {**AZURE, "AZURE_OPENAI_URL_STYLE": style}, provider)
    with tc:
        for route in ("input_tokens", "compact"):
            resp = tc.post(f"/v1/responses/{route}", json={"model": "gpt-4o", "input": "Hi"})
            assert resp.status_code == 200 and str(up.last.url) == base.format(route)
            assert up.body()["model"] == "dep-4o" and up.last.headers["api-key"] == "azure-key"


def test_azure_chat_only_deployment_counts_nothing() -> None:
    tc, up = adapter("azure", {**AZURE, "MODELYARD_RESPONSES_MODE": "translate"}, provider)
    with tc:
        for route in ("input_tokens", "compact"):
            resp = tc.post(f"/v1/responses/{route}", json={"model": "gpt-4o", "input": "Hi"})
            assert resp.status_code == 400 and resp.json()["error"]["code"] == "unsupported_endpoint"
    assert up.requests == []


# -- elsewhere: a 400 naming what is not supported ----------------------------------------------------
@pytest.mark.parametrize(("backend", "env"), [("openrouter", OPENROUTER), ("nim", NIM)])
@pytest.mark.parametrize("route", ["input_tokens", "compact"])
def test_other_backends_refuse_in_openai_format(backend: str, env: dict, route: str) -> None:
    tc, up = adapter(backend, env)
    with tc:
        resp = tc.post(f"/v1/responses/{route}", json={"model": "m", "input": "Hi"})
    err = resp.json()["error"]
    assert resp.status_code == 400 and err["type"] == "invalid_request_error" and err["code"] == "unsupported_endpoint"
    assert f"POST /v1/responses/{route} is not supported on the {backend} backend" in err["message"]
    assert up.requests == []


# -- the rest of /v1/responses/... ----------------------------------------------------------------------
def test_unknown_paths_under_responses_are_404s_in_openai_format() -> None:
    tc, up = adapter("openai", OPENAI, provider)
    with tc:
        for method, path in [
            ("POST", "/v1/responses/resp_1"),
            ("PUT", "/v1/responses/resp_1"),
            ("POST", "/v1/responses/resp_1/bogus"),
            ("GET", "/v1/responses/resp_1/cancel"),
            ("POST", "/v1/responses/input_tokens/x"),
        ]:
            resp = tc.request(method, path, json={})
            err = resp.json()["error"]
            assert resp.status_code == 404 and err["code"] == "unknown_url" and path in err["message"], path
        assert up.requests == []
        assert tc.get("/v1/responses/resp_1").status_code == 200  # the stored-response routes still relay
        assert str(up.last.url) == "https://api.openai.com/v1/responses/resp_1"
        assert tc.post("/v1/responses/resp_1/cancel").status_code == 200
        assert tc.get("/v1/responses/resp_1/input_items").status_code == 200
        assert tc.delete("/v1/responses/resp_1").status_code == 200
        assert tc.put("/v1/responses").status_code == 405  # the route itself exists


def test_the_routes_are_in_the_adapters_openapi_document() -> None:
    tc, _ = adapter("vllm", VLLM, Engine())
    with tc:
        paths = tc.get("/openapi.json").json()["paths"]
    op = paths["/v1/responses/input_tokens"]["post"]
    assert "requestBody" in op and op["responses"]["200"]["content"]["application/json"]["schema"]["required"]
    assert "post" in paths["/v1/responses/compact"]
    assert not any("{rest}" in p for p in paths)
