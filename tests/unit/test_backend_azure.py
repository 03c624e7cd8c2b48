"""The Azure backend: both URL forms, both auth modes (token file re-read when it changes), deployments,
and Azure's quirks on the way out."""

from __future__ import annotations

import os

import pytest

from modelyard.backends.azure import flat_tool, nested_tool
from modelyard.config import ConfigError
from tests.unit.hosted_helpers import adapter

BASE = {"MODELYARD_UPSTREAM_URL": "https://res.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT_MAP": '{"gpt-4o": "dep-4o"}'}
KEY = {"MODELYARD_UPSTREAM_API_KEY": "azure-key"}
TOOL = {"type": "function", "name": "f", "parameters": {"type": "object"}}
NESTED = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("style", "responses", "chat"),
    [
        ("v1", "https://res.openai.azure.com/openai/v1/responses", "https://res.openai.azure.com/openai/v1/chat/completions"),
        (
            "dated",
            "https://res.openai.azure.com/openai/responses?api-version=2025-04-01-preview",
            "https://res.openai.azure.com/openai/deployments/dep-4o/chat/completions?api-version=2025-04-01-preview",
        ),
    ],
)  # fmt: skip
def test_url_forms_and_api_key(style: str, responses: str, chat: str) -> None:
    tc, up = adapter("azure", {**BASE, **KEY, "AZURE_OPENAI_URL_STYLE": style})
    with tc:
        tc.post("/v1/responses", json={"model": "gpt-4o", "input": "x"})
        assert str(up.last.url) == responses and up.body()["model"] == "dep-4o"
        assert up.last.headers["api-key"] == "azure-key" and "authorization" not in up.last.headers
        tc.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": []})
        assert str(up.last.url) == chat


def test_endpoint_given_with_its_openai_suffix() -> None:
    tc, up = adapter("azure", {**KEY, "MODELYARD_UPSTREAM_URL": "https://res.openai.azure.com/openai/v1/"})
    with tc:
        tc.get("/v1/models")
    assert str(up.last.url) == "https://res.openai.azure.com/openai/v1/models"


def test_entra_token_from_env() -> None:
    tc, up = adapter("azure", {**BASE, "AZURE_OPENAI_AD_TOKEN": "tok-env"})
    with tc:
        tc.post("/v1/responses", json={"model": "gpt-4o", "input": "x"})
    assert up.last.headers["authorization"] == "Bearer tok-env" and "api-key" not in up.last.headers


def test_entra_token_file_read_again_when_it_changes(tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("tok-1\n")
    tc, up = adapter("azure", {**BASE, **KEY, "AZURE_OPENAI_AD_TOKEN_FILE": str(token)})
    with tc:
        tc.post("/v1/responses", json={"model": "gpt-4o", "input": "x"})
        assert up.last.headers["authorization"] == "Bearer tok-1" and "api-key" not in up.last.headers
        token.write_text("tok-2\n")
        os.utime(token, ns=(1, 10**18))  # a new mtime, whatever the clock's resolution
        tc.post("/v1/responses", json={"model": "gpt-4o", "input": "x"})
        assert up.last.headers["authorization"] == "Bearer tok-2"
        token.unlink()
        resp = tc.post("/v1/responses", json={"model": "gpt-4o", "input": "x"})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "credentials_unavailable"


def test_responses_quirks_flat_tools_and_item_status() -> None:
    tc, up = adapter("azure", {**BASE, **KEY})
    body = {
        "model": "gpt-4o",
        "tools": [NESTED],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "input": [
            {"role": "user", "content": "x"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "status": None},
            {"type": "function_call_output", "call_id": "c", "output": "ok"},
        ],
    }
    with tc:
        tc.post("/v1/responses", json=body)
    sent = up.body()
    assert sent["tools"] == [TOOL] and sent["tool_choice"] == {"type": "function", "name": "f"}
    assert [i.get("status") for i in sent["input"]] == [None, "completed", "completed"]


def test_chat_quirks_nested_tools_reasoning_tokens_usage() -> None:
    tc, up = adapter("azure", {**BASE, **KEY, "AZURE_OPENAI_REASONING_DEPLOYMENTS": "my-reasoner"})
    with tc:
        tc.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": [], "tools": [TOOL], "max_tokens": 5})
        assert up.body()["tools"] == [NESTED] and up.body()["max_tokens"] == 5
        tc.post("/v1/chat/completions", json={"model": "my-reasoner", "messages": [], "max_tokens": 5})
        assert up.body()["max_completion_tokens"] == 5 and "max_tokens" not in up.body()
        tc.post("/v1/chat/completions", json={"model": "o4-mini", "messages": [], "max_tokens": 5})
        assert up.body()["max_completion_tokens"] == 5
        tc.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": [], "stream": True})
        assert up.body()["stream_options"] == {"include_usage": True}


def test_chat_only_deployment_translates_responses() -> None:
    tc, up = adapter("azure", {**BASE, **KEY, "MODELYARD_RESPONSES_MODE": "translate"})
    with tc:
        tc.post("/v1/responses", json={"model": "gpt-4o", "input": "x"})
        assert up.last.url.path == "/openai/v1/chat/completions"
        assert tc.get("/v1/responses/resp_1").status_code == 404  # nothing stored upstream


def test_tool_shapes_round_trip() -> None:
    assert flat_tool(NESTED) == TOOL and nested_tool(TOOL) == NESTED
    assert flat_tool(TOOL) == TOOL and nested_tool(NESTED) == NESTED
    assert nested_tool({"type": "web_search"}) == {"type": "web_search"}


def test_bad_settings_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="AZURE_OPENAI_URL_STYLE"):
        adapter("azure", {**BASE, "AZURE_OPENAI_URL_STYLE": "classic"})
    with pytest.raises(ConfigError, match="AZURE_OPENAI_DEPLOYMENT_MAP"):
        adapter("azure", {**BASE, "AZURE_OPENAI_DEPLOYMENT_MAP": "[1]"})


def test_azure_401_mapped_without_secrets() -> None:
    import httpx

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "401", "message": "Access denied due to invalid key."}})

    tc, _ = adapter("azure", {**BASE, **KEY}, refuse)
    with tc:
        resp = tc.post("/v1/responses", json={"model": "gpt-4o", "input": "x"})
    assert resp.status_code == 401 and set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert "azure-key" not in resp.text
