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
