"""Per-key usage, quotas and per-rollout capture (usage.py, capture.py, calls.py) over a scripted engine:
usage after a mixed load equals what the clients saw, a quota 429 in both error formats, a rollout's calls
captured in order by header and by NeMo Gym's path prefix, and nothing lost over a restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from modelyard.admin import ADMIN_HEADER
from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import Settings
from modelyard.state import SCOPE_HEADER
from modelyard.upstream import Upstream
from tests.unit.test_app import Upstream_

ADMIN = {ADMIN_HEADER: "admin-secret-1"}


def make(tmp_path: Path, **env: str) -> tuple[TestClient, Upstream_]:
    script = Upstream_()
    settings = Settings.from_env(
        "vllm",
        {
            "MODELYARD_UPSTREAM_URL": "http://engine:8000/v1",
            "MODELYARD_STORE_URL": f"sqlite://{tmp_path / 'store.db'}",
            "MODELYARD_ADMIN_KEY": "admin-secret-1",
            **env,
        },
    )
    upstream = Upstream(settings.upstream_url, transport=httpx.MockTransport(script))
    return TestClient(create_app(load("vllm", settings), upstream=upstream)), script


def over(tmp_path: Path, engine: Any) -> TestClient:
    """The app over an engine given as a function of the request (a store, an admin key)."""
    settings = Settings.from_env(
        "vllm",
        {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1", "MODELYARD_STORE_URL": f"sqlite://{tmp_path / 's.db'}",
         "MODELYARD_ADMIN_KEY": "admin-secret-1"},
    )  # fmt: skip
    upstream = Upstream(settings.upstream_url, transport=httpx.MockTransport(engine))
    return TestClient(create_app(load("vllm", settings), upstream=upstream))


def seen_usage(resp: httpx.Response) -> tuple[int, int]:
    """What a client saw: usage in the reply, or in a stream's last event that has one."""
    if resp.headers["content-type"].startswith("text/event-stream"):
        last = None
        for line in resp.text.splitlines():
            if line.startswith("data: ") and '"usage"' in line:
                last = json.loads(line[6:])
        u = (last.get("response") or last)["usage"]
    else:
        u = resp.json()["usage"]
    return u.get("input_tokens", u.get("prompt_tokens")), u.get("output_tokens", u.get("completion_tokens"))


def test_usage_after_a_mixed_load_equals_what_clients_saw(tmp_path: Path) -> None:
    tc, _ = make(tmp_path)
    saw: dict[str, list[int]] = {"key-a": [0, 0, 0], "key-b": [0, 0, 0]}
    with tc:
        for i in range(12):
            key = "key-a" if i % 3 else "key-b"
            h = {SCOPE_HEADER: key}
            kind = i % 4
            if kind == 0:
                resp = tc.post("/v1/responses", json={"model": "m", "input": "x", "store": False}, headers=h)
            elif kind == 1:
                resp = tc.post(
                    "/v1/responses", json={"model": "m", "input": "x", "stream": True, "store": False}, headers=h
                )
            elif kind == 2:
                resp = tc.post("/v1/chat/completions", json={"model": "m", "messages": []}, headers=h)
            else:
                body = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
                resp = tc.post("/v1/chat/completions", json=body, headers=h)
            assert resp.status_code == 200
            inp, out = seen_usage(resp)
            saw[key][0] += 1
            saw[key][1] += inp
            saw[key][2] += out
        bad = tc.post("/v1/responses", json={"model": "m", "input": 42}, headers={SCOPE_HEADER: "key-a"})
        assert bad.status_code == 400
        assert tc.get("/v1/usage").status_code == 401
        report = tc.get("/v1/usage", params={"group_by": "none"}, headers=ADMIN).json()["data"]
    got = {r["key"]: [r["requests"], r["input_tokens"], r["output_tokens"]] for r in report}
    saw["key-a"][0] += 1  # the refused request counts as a request, with its error
    assert got == saw
    errors = {r["key"]: r["errors"] for r in report}
    assert errors["key-a"] == {"invalid_request_error": 1} and errors["key-b"] == {}
    metrics = tc.get("/metrics").text
    assert 'modelyard_key_tokens_total{backend="vllm",key="key-a",kind="input",model="m"}' in metrics


def test_usage_survives_a_restart(tmp_path: Path) -> None:
    tc, _ = make(tmp_path)
    with tc:
        tc.post("/v1/chat/completions", json={"model": "m", "messages": []})
    tc, _ = make(tmp_path)
    with tc:
        tc.post("/v1/chat/completions", json={"model": "m", "messages": []})
        (row,) = tc.get("/v1/usage", headers=ADMIN).json()["data"]
    assert row["requests"] == 2 and row["input_tokens"] == 14 and row["output_tokens"] == 4


def test_a_quota_is_a_429_naming_it_and_when_it_resets(tmp_path: Path) -> None:
    quotas = json.dumps({"*": {"requests_per_minute": 2}, "key-big": {"requests_per_minute": 100}})
    tc, _ = make(tmp_path, MODELYARD_QUOTAS=quotas)
    with tc:
        h = {SCOPE_HEADER: "key-a"}
        for _ in range(2):
            assert tc.post("/v1/chat/completions", json={"model": "m", "messages": []}, headers=h).status_code == 200
        over = tc.post("/v1/chat/completions", json={"model": "m", "messages": []}, headers=h)
        assert over.status_code == 429 and over.json()["error"]["code"] == "quota_exceeded"
        assert (
            "requests_per_minute" in over.json()["error"]["message"] and "resets at" in over.json()["error"]["message"]
        )
        assert 1 <= int(over.headers["retry-after"]) <= 61
        anthropic = tc.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": []}, headers=h)
        assert anthropic.status_code == 429 and anthropic.json()["type"] == "error"
        assert anthropic.json()["error"]["type"] == "rate_limit_error"
        big = {SCOPE_HEADER: "key-big"}
        assert tc.post("/v1/chat/completions", json={"model": "m", "messages": []}, headers=big).status_code == 200


def test_a_rollout_is_captured_in_order_and_listed(tmp_path: Path) -> None:
    tc, _ = make(tmp_path, MODELYARD_CAPTURE="true")
    with tc:
        one = tc.post("/ng-rollout/r-17/v1/responses", json={"model": "m", "input": "first", "store": False})
        assert one.status_code == 200
        two = tc.post(
            "/v1/responses", json={"model": "m", "input": "second", "stream": True, "store": False},
            headers={"x-rollout-id": "r-17"},
        )  # fmt: skip
        assert two.status_code == 200
        tc.post("/v1/chat/completions", json={"model": "m", "messages": []})  # no rollout: not captured
        assert tc.get("/v1/rollouts/r-17").status_code == 401
        calls = tc.get("/v1/rollouts/r-17", headers=ADMIN).json()["data"]
    assert [c["request"]["input"] for c in calls] == ["first", "second"]
    assert [c["route"] for c in calls] == ["/v1/responses", "/v1/responses"]
    assert calls[0]["reply"]["id"] == one.json()["id"] and calls[0]["status"] == 200
    assert calls[1]["reply"]["status"] == "completed" and calls[1]["ttft_ms"] is not None
    assert all(c["latency_ms"] > 0 and c["usage"]["output_tokens"] == 2 and c["backend"] == "vllm" for c in calls)


def test_export_writes_nemo_gym_rows(tmp_path: Path) -> None:
    import runpy

    root = Path(__file__).resolve().parents[2]
    export = runpy.run_path(str(root / "scripts" / "export-rollouts"))
    tc, _ = make(tmp_path, MODELYARD_CAPTURE="true")
    with tc:
        tc.post("/ng-rollout/r-9/v1/responses", json={"model": "m", "input": "x", "store": False})
        tc.post("/ng-rollout/r-9/v1/chat/completions", json={"model": "m", "messages": []})
        calls = tc.get("/v1/rollouts", params={"rollout_id": "r-9"}, headers=ADMIN).json()["data"]
        assert tc.get("/v1/rollouts", params={"since": "soon"}, headers=ADMIN).status_code == 400
    rows = [export["row"](c) for c in calls]
    assert rows[0]["responses_create_params"]["input"] == "x" and rows[0]["response"]["object"] == "response"
    assert rows[1]["chat_completions_create_params"]["messages"] == []
    assert {r["modelyard"]["rollout_id"] for r in rows} == {"r-9"}


def test_a_relayed_streams_usage_counts_when_an_upstream_read_ends_inside_its_chunk(tmp_path: Path) -> None:
    """A read from the upstream can end anywhere, inside an SSE line too: the usage chunk cut in two (before
    its "usage" key, or inside its object) is still counted."""
    from tests.unit.test_app import CHUNKS, sse

    body = sse(CHUNKS)
    at = body.index(b'"usage"')
    cuts = [at - 5, at + 12]

    async def pieces(cut: int) -> Any:
        yield body[:cut]
        yield body[cut:]

    def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/chat/completions":
            stream = pieces(cuts.pop(0))
            return httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m", "object": "model"}]})

    chat = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    with over(tmp_path, engine) as tc:
        for _ in range(2):
            resp = tc.post("/v1/chat/completions", json=chat)
            assert resp.status_code == 200 and resp.content == body
        (row,) = tc.get("/v1/usage", headers=ADMIN).json()["data"]
    assert (row["requests"], row["input_tokens"], row["output_tokens"]) == (2, 14, 4), row


def test_a_chat_stream_not_asking_for_usage_is_counted_and_gets_no_usage_chunk(tmp_path: Path) -> None:
    """Without `stream_options.include_usage` the engine would report no usage at all (a way round token
    quotas): the adapter asks for it upstream, counts it, and takes the usage chunk out of the client's
    stream, whichever way the reads cut it; the client's other stream options go on as they were."""
    from tests.unit.test_app import CHUNKS, sse

    body = sse(CHUNKS)
    at = body.index(b'"usage"')
    cuts = [len(body), at - 5, at + 12, body.index(b"data: [DONE]") + 3]
    sent: list[dict[str, Any]] = []

    async def pieces(cut: int) -> Any:
        yield body[:cut]
        if cut < len(body):
            yield body[cut:]

    def engine(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, content=pieces(cuts[len(sent) - 1]), headers={"content-type": "text/event-stream"})

    chat = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_obfuscation": False}}
    with over(tmp_path, engine) as tc:
        for _ in cuts:
            resp = tc.post("/v1/chat/completions", json=chat)
            assert resp.status_code == 200, resp.text
            assert b'"usage"' not in resp.content and resp.content.endswith(b"data: [DONE]\n\n"), resp.content
            events = [ln for ln in resp.text.split("\n\n") if ln]
            assert len(events) == len([ln for ln in body.decode().split("\n\n") if ln]) - 1
        (row,) = tc.get("/v1/usage", headers=ADMIN).json()["data"]
    assert all(s["stream_options"] == {"include_obfuscation": False, "include_usage": True} for s in sent)
    assert (row["requests"], row["input_tokens"], row["output_tokens"]) == (4, 28, 8), row
