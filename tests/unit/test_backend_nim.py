"""The NIM adapter against the NIM stand-in (tests/standins/nim_api.py, NIM's documented shapes) mounted as its
upstream: readiness from /v1/health/ready (and /v1/models for a pinned model), Responses translated over
chat or relayed natively, chat passed through, NIM's error bodies in OpenAI's format."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from openai.types.responses import Response as ResponseModel

from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import ConfigError, Settings
from modelyard.upstream import Upstream
from tests.standins import nim_api

MODEL = nim_api.MODEL


def adapter(mode: str = "", model: str = "", **standin: Any) -> tuple[TestClient, TestClient]:
    nim = nim_api.make_app(standin)
    env = {"MODELYARD_UPSTREAM_URL": "http://nim:8000/v1", "MODELYARD_RESPONSES_MODE": mode, "MODELYARD_MODEL": model}
    settings = Settings.from_env("nim", env)
    backend = load("nim", settings)
    up = Upstream(settings.upstream_url, transport=httpx.ASGITransport(app=nim), name="nim")
    return TestClient(create_app(backend, upstream=up)), TestClient(nim)


def test_mode_switch_is_checked() -> None:
    with pytest.raises(ConfigError, match="MODELYARD_RESPONSES_MODE"):
        load(
            "nim", Settings.from_env("nim", {"MODELYARD_UPSTREAM_URL": "http://n/v1", "MODELYARD_RESPONSES_MODE": "x"})
        )


def test_readiness_follows_health_ready_and_the_pinned_model() -> None:
    tc, nim = adapter(model=MODEL)
    with tc, nim:
        ready = tc.get("/readyz")
        assert ready.status_code == 200 and "/v1/health/ready -> 200" in ready.json()["upstream"]
    tc, nim = adapter(model="meta/other-model")
    with tc:
        ready = tc.get("/readyz")
        assert ready.status_code == 503 and "'meta/other-model' not in" in ready.json()["upstream"]
    tc, nim = adapter(ready=False)
    with tc:
        ready = tc.get("/readyz")
        assert ready.status_code == 503 and ready.json()["upstream"] == "GET /v1/health/ready -> 503"


@pytest.mark.parametrize("mode", ["translate", "native"])
def test_responses_translated_or_native(mode: str) -> None:
    tc, nim = adapter(mode)
    with tc, nim:
        resp = tc.post("/v1/responses", json={"model": MODEL, "input": "Hi"})
        assert resp.status_code == 200, resp.text
        ResponseModel.model_validate(resp.json())
        paths = [r["path"] for r in nim.get("/_requests").json()]
    assert paths == ["/v1/responses" if mode == "native" else "/v1/chat/completions"]


@pytest.mark.parametrize(
    ("model", "status", "code", "fragment"),
    [
        ("standin/bad-request", 400, None, "temperature must be non-negative"),  # vLLM-style body
        ("standin/busy", 503, "upstream_unavailable", "The server is busy"),  # NIM 2.x envelope
        ("meta/nope", 404, "not_found", "does not exist"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
def test_nim_errors_in_openai_format(model: str, status: int, code: str | None, fragment: str, path: str) -> None:
    tc, _ = adapter()
    body = (
        {"model": model, "messages": [{"role": "user", "content": "x"}]}
        if "chat" in path
        else {"model": model, "input": "x"}
    )
    with tc:
        resp = tc.post(path, json=body)
    err = resp.json()["error"]
    assert resp.status_code == status and set(err) == {"message", "type", "param", "code"}
    assert fragment in err["message"] and (code is None or err["code"] == code)


def test_fastapi_validation_detail_becomes_a_400() -> None:
    tc, _ = adapter()
    with tc:
        resp = tc.post("/v1/chat/completions", json={"model": MODEL})
    err = resp.json()["error"]
    assert resp.status_code == 400 and "body.messages: Field required" in err["message"]


def test_hosted_catalog_refusal_is_a_401() -> None:
    tc, _ = adapter(key="nvapi-right")
    with tc:
        resp = tc.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 401 and resp.json()["error"]["message"] == "Authentication failed"
