"""The bad-input table, adapter side: each bad request is a 4xx in OpenAI's error format, never a 5xx, and
never reaches the engine. (The gateway's part, oversize bodies and unknown paths at nginx, runs through the
real gateway in tests/integration/test_gateway_limits.py.) Also graceful shutdown's draining answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_app import make_client

LIMITS = {"MODELYARD_MAX_BODY_BYTES": "4096", "MODELYARD_MAX_INPUT_ITEMS": "3", "MODELYARD_MAX_TOOLS": "2"}


def fn_tool(name: str, parameters: Any = None, chat: bool = False) -> dict[str, Any]:
    fn = {"name": name, "parameters": parameters or {"type": "object", "properties": {}}}
    return {"type": "function", "function": fn} if chat else {"type": "function", **fn}


def msgs(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"m{i}"} for i in range(n)]


R, C = "/v1/responses", "/v1/chat/completions"
BAD_SCHEMA = {"type": "object", "properties": "not a map"}
# (path, raw body or JSON body, status, code)
TABLE: list[tuple[str, str, Any, int, str]] = [
    ("malformed JSON", R, b'{"model": "m", "input": ', 400, "invalid_json"),
    ("malformed JSON, chat", C, b"{nope", 400, "invalid_json"),
    ("not an object", R, b"[1, 2]", 400, "invalid_type"),
    ("input of a wrong type", R, {"model": "m", "input": 42}, 400, None),
    ("messages of a wrong type", C, {"model": "m", "messages": "hi"}, 400, "invalid_type"),
    ("tools of a wrong type", R, {"model": "m", "input": "hi", "tools": {"a": 1}}, 400, "invalid_type"),
    ("max_output_tokens a string", R, {"model": "m", "input": "hi", "max_output_tokens": "many"}, 400, None),
    ("stream not a boolean", C, {"model": "m", "messages": msgs(1), "stream": [None]}, 400, "invalid_type"),
    ("temperature a string", R, {"model": "m", "input": "hi", "temperature": "hot"}, 400, None),
    ("unknown model when pinned", C, {"model": "other", "messages": msgs(1)}, 404, "model_not_found"),
    ("unknown model when pinned, responses", R, {"model": "other", "input": "hi"}, 404, "model_not_found"),
    ("body over the adapter limit", R, {"model": "m", "input": "x" * 5000}, 413, "request_too_large"),
    ("too many input items", R, {"model": "m", "input": msgs(4)}, 400, "array_above_max_length"),
    ("too many messages", C, {"model": "m", "messages": msgs(4)}, 400, "array_above_max_length"),
    ("too many tools", R, {"model": "m", "input": "hi", "tools": [fn_tool(f"t{i}") for i in range(3)]}, 400,
     "array_above_max_length"),
    ("too many tools, chat", C, {"model": "m", "messages": msgs(1), "tools": [fn_tool(f"t{i}", chat=True)
     for i in range(3)]}, 400, "array_above_max_length"),
    ("invalid JSON schema in a tool", R, {"model": "m", "input": "hi", "tools": [fn_tool("t", BAD_SCHEMA)]}, 400,
     "invalid_schema"),
    ("invalid JSON schema in a chat tool", C, {"model": "m", "messages": msgs(1),
     "tools": [fn_tool("t", BAD_SCHEMA, chat=True)]}, 400, "invalid_schema"),
    ("a chat tool that is not an object", C, {"model": "m", "messages": msgs(1), "tools": ["f"]}, 400,
     "invalid_type"),
    ("a chat tool whose function is not an object", C, {"model": "m", "messages": msgs(1),
     "tools": [{"type": "function", "function": "f"}]}, 400, "invalid_type"),
    ("unknown path", "/v1/nothing", {}, 404, "unknown_url"),
    ("wrong method", "/v1/responses", None, 405, "method_not_allowed"),
]  # fmt: skip


@pytest.fixture(scope="module")
def client():
    tc, up = make_client({**LIMITS, "MODELYARD_MODEL": "m"})
    with tc:
        yield tc, up


@pytest.mark.parametrize(("path", "body", "status", "code"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_bad_input_is_a_4xx_in_openai_format(client, path: str, body: Any, status: int, code: str | None) -> None:
    tc, up = client
    sent_before = len(up.requests)
    if body is None:
        resp = tc.get(path)
    elif isinstance(body, bytes):
        resp = tc.post(path, content=body, headers={"content-type": "application/json"})
    else:
        resp = tc.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code:
        assert error["code"] == code
    assert len(up.requests) == sent_before  # refused before the engine is asked


def test_a_declared_oversize_body_is_refused_before_it_is_read(client) -> None:
    tc, _ = client
    resp = tc.post(R, content=b"{}", headers={"content-type": "application/json", "content-length": "999999"})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"


def test_limits_at_their_bound_pass(client) -> None:
    tc, _ = client
    tools = [fn_tool("a"), fn_tool("b")]
    assert tc.post(R, json={"model": "m", "input": msgs(3), "tools": tools, "tool_choice": "none"}).status_code == 200
    assert tc.post(C, json={"model": "m", "messages": msgs(3)}).status_code == 200


def test_draining_answers_503_but_health_and_metrics_stay() -> None:
    tc, up = make_client()
    with tc:
        assert tc.get("/readyz").status_code == 200
        tc.app.state.draining = True  # what SIGTERM sets (drain_on_signals)
        ready = tc.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        resp = tc.post(R, json={"model": "m", "input": "hi"})
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "shutting_down"
        assert resp.headers["connection"] == "close" and resp.headers["retry-after"] == "1"
        assert tc.get("/healthz").status_code == 200 and tc.get("/metrics").status_code == 200
        assert not any(r.url.path.endswith("/chat/completions") for r in up.requests)
