"""Readiness follows the engine: the adapter reports ready only while vLLM answers.

Runs after test_stack_cpu.py (file order): it stops and restarts the engine of the shared stack.
"""

from __future__ import annotations

import time

import pytest

from .conftest import Stack

pytestmark = pytest.mark.integration


def wait_for(check, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout} s")


def test_readyz_turns_ready_only_after_the_engine_is_up(stack: Stack, model: str) -> None:
    with stack.http() as http:
        assert http.get("/vllm/readyz").status_code == 200
        stopped = stack.compose_cmd("stop", "vllm-cpu")
        assert stopped.returncode == 0, stopped.stderr
        wait_for(lambda: http.get("/vllm/readyz").status_code == 503, 15, "readyz 503 after the engine stopped")
        body = http.get("/vllm/readyz").json()
        assert body["status"] == "not_ready"
        # While the engine is down a request fails fast with an OpenAI-format error, no hang: a 502, or a 503
        # once the failed readiness probes have opened the circuit breaker (docs/reliability.md).
        resp = http.post("/v1/responses", json={"model": model, "input": "Hi"})
        outcome = (resp.status_code, resp.json()["error"]["code"])
        assert outcome in ((502, "upstream_unreachable"), (503, "upstream_circuit_open")), outcome

        started = stack.compose_cmd("start", "vllm-cpu")
        assert started.returncode == 0, started.stderr
        # vLLM answers /health before its warm-up; readyz may turn ready then, and must stay ready.
        wait_for(lambda: http.get("/vllm/readyz").status_code == 200, 300, "readyz 200 after the engine restarted")
        resp = http.post("/v1/responses", json={"model": model, "input": "Hi", "max_output_tokens": 4})
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] in ("completed", "incomplete")


def adapter_connections(stack: Stack) -> int:
    """Established TCP connections into the adapter's port 8000 (1F40), from its own /proc/net/tcp."""
    out = stack.compose_cmd("exec", "-T", "adapter-vllm", "cat", "/proc/net/tcp")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    return sum(1 for r in rows if r[1].endswith(":1F40") and r[3] == "01")


def test_gateway_keeps_connections_to_the_adapter_open(stack: Stack) -> None:
    # A new connection per request cost the gateway more CPU than the proxying (docs/benchmarks.md):
    # 60 requests must reuse a few kept-alive connections (one or two per nginx worker), not open 60.
    with stack.http() as http:
        for _ in range(60):
            assert http.get("/vllm/v1/models").status_code == 200
    assert 1 <= adapter_connections(stack) <= 8


def test_gateway_follows_an_adapter_that_is_recreated(stack: Stack, model: str) -> None:
    # A new adapter container (new address) replaces the old one: the gateway's kept-alive group is
    # rewritten and reloaded by its watcher, and requests reach the new adapter.
    recreated = stack.compose_cmd("up", "-d", "--force-recreate", "--no-deps", "--wait", "adapter-vllm")
    assert recreated.returncode == 0, recreated.stderr
    with stack.http() as http:

        def answers() -> bool:
            resp = http.post("/v1/responses", json={"model": model, "input": "Hi", "max_output_tokens": 4})
            return resp.status_code == 200

        wait_for(answers, 30, "an answer through the gateway from the recreated adapter")
        for _ in range(5):
            assert answers()
