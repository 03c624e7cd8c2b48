"""An input too long for the model (MODELYARD_CONTEXT_OVERFLOW): a 400, or an `incomplete` Response.

The upstream here answers with the body the real vLLM CPU engine gave (tests/unit/golden/errors), streamed
and not, through the adapter app; the setting is followed from env.yaml to compose to the adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import ConfigError, Settings
from modelyard.upstream import Upstream
from tests.unit.spec import check_event, check_response
from tools.render_env import ConfigError as EnvConfigError
from tools.render_env import resolve

ROOT = Path(__file__).resolve().parents[2]
OVERFLOW = json.loads((Path(__file__).parent / "golden/errors/context_overflow.json").read_text())
OTHER_400 = {
    "error": {"message": "temperature must be at most 2", "type": "BadRequestError", "param": None, "code": 400}
}
REQUEST = {"model": "SmolLM2-135M-Instruct", "input": "hello " * 50, "max_output_tokens": 16, "temperature": 0.5}


def client(env: dict[str, str], status: int = 400, body: dict = OVERFLOW["body"]) -> TestClient:
    def engine(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    settings = Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1", **env})
    upstream = Upstream(settings.upstream_url, transport=httpx.MockTransport(engine))
    return TestClient(create_app(load("vllm", settings), upstream=upstream))


def events_of(tc: TestClient, request: dict) -> tuple[httpx.Response, list[dict]]:
    with tc.stream("POST", "/v1/responses", json={**request, "stream": True}) as resp:
        resp.read()
    return resp, [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")]


# -- the setting ---------------------------------------------------------------------------------------------------
def test_setting_defaults_to_error_and_is_checked() -> None:
    base = {"MODELYARD_UPSTREAM_URL": "http://e"}
    assert Settings.from_env("vllm", base).context_overflow == "error"
    assert Settings.from_env("vllm", {**base, "MODELYARD_CONTEXT_OVERFLOW": ""}).context_overflow == "error"
    incomplete = Settings.from_env("vllm", {**base, "MODELYARD_CONTEXT_OVERFLOW": "incomplete"})
    assert load("vllm", incomplete).options.context_overflow == "incomplete"
    for backend in ("nim", "openrouter"):  # every translating backend takes it
        assert load(backend, incomplete).options.context_overflow == "incomplete"
    with pytest.raises(ConfigError, match="MODELYARD_CONTEXT_OVERFLOW"):
        Settings.from_env("vllm", {**base, "MODELYARD_CONTEXT_OVERFLOW": "truncate"})


def test_env_yaml_renders_the_adapter_settings() -> None:
    text = "adapter: {context_overflow: incomplete, tolerate_params: [background, tools.type]}"
    for backend in ("cpu", "openai"):  # every profile: they are adapter settings
        extra = "" if backend == "cpu" else "\npolicy_api_key: k"
        variables = resolve(yaml.safe_load(f"policy_backend: {backend}{extra}\n{text}"), {}).variables
        assert variables["MODELYARD_CONTEXT_OVERFLOW"] == "incomplete"
        assert variables["MODELYARD_TOLERATE_PARAMS"] == "background,tools.type"
    with pytest.raises(EnvConfigError, match="adapter.context_overflow"):
        resolve({"adapter": {"context_overflow": "truncate"}}, {})


def test_compose_passes_the_settings_to_every_adapter() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    adapters = [name for name in services if name.startswith("adapter-")]
    assert len(adapters) == 5
    for name in adapters:
        env = services[name]["environment"]
        # No default repeated: empty is the adapter's own ("error", declared in modelyard/config.py).
        assert env["MODELYARD_CONTEXT_OVERFLOW"] == "${MODELYARD_CONTEXT_OVERFLOW:-}", name
        assert env["MODELYARD_TOLERATE_PARAMS"] == "${MODELYARD_TOLERATE_PARAMS:-}", name


# -- error (the default): a 400 naming the input ---------------------------------------------------------------------
def test_error_mode_is_a_400_streamed_or_not() -> None:
    with client({}) as tc:
        resp = tc.post("/v1/responses", json=REQUEST)
        streamed, events = events_of(tc, REQUEST)
    for r in (resp, streamed):
        assert r.status_code == 400
        error = r.json()["error"]
        assert (error["type"], error["param"], error["code"]) == (
            "invalid_request_error",
            "input",
            "context_length_exceeded",
        )
        assert "maximum context length is 2048 tokens" in error["message"]
    assert events == []


# -- incomplete: NeMo Gym's behaviour ------------------------------------------------------------------------------
def test_incomplete_mode_answers_with_an_incomplete_response() -> None:
    with client({"MODELYARD_CONTEXT_OVERFLOW": "incomplete"}) as tc:
        resp = tc.post("/v1/responses", json=REQUEST)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    check_response(body)
    assert body["status"] == "incomplete" and body["output"] == [] and body["completed_at"] is None
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert (body["model"], body["max_output_tokens"], body["temperature"]) == ("SmolLM2-135M-Instruct", 16, 0.5)


def test_incomplete_mode_streams_an_incomplete_response() -> None:
    with client({"MODELYARD_CONTEXT_OVERFLOW": "incomplete"}) as tc:
        resp, events = events_of(tc, REQUEST)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    for event in events:
        check_event(event)
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.incomplete"]
    assert [e["sequence_number"] for e in events] == [0, 1, 2]
    final = events[-1]["response"]
    assert final["status"] == "incomplete" and final["output"] == []
    assert len({e["response"]["id"] for e in events}) == 1


def test_incomplete_mode_still_names_dropped_params() -> None:
    env = {"MODELYARD_CONTEXT_OVERFLOW": "incomplete", "MODELYARD_TOLERATE_PARAMS": "background"}
    with client(env) as tc:
        resp = tc.post("/v1/responses", json={**REQUEST, "background": True})
        streamed, _ = events_of(tc, {**REQUEST, "background": True})
    assert resp.status_code == 200 and resp.json()["background"] is False
    assert resp.headers["x-modelyard-dropped-params"] == streamed.headers["x-modelyard-dropped-params"] == "background"


def test_incomplete_mode_leaves_other_errors_alone() -> None:
    with client({"MODELYARD_CONTEXT_OVERFLOW": "incomplete"}, body=OTHER_400) as tc:
        resp = tc.post("/v1/responses", json=REQUEST)
        streamed, _ = events_of(tc, REQUEST)
    assert resp.status_code == streamed.status_code == 400
    assert resp.json()["error"]["message"] == "temperature must be at most 2"
    assert resp.json()["error"]["code"] != "context_length_exceeded"


def test_chat_completions_keep_the_400() -> None:
    """The setting shapes Responses only: a chat client gets the engine's error as an OpenAI error."""
    with client({"MODELYARD_CONTEXT_OVERFLOW": "incomplete"}) as tc:
        resp = tc.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "context_length_exceeded"
