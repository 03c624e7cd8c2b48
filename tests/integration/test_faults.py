"""The fault matrix through the gateway: the vllm adapter in front of a fault-injecting engine
(tests/standins/faults.py), each fault scripted per test and its outcome seen by the official openai SDK
(strict validation, no SDK retries: the retries measured are the adapter's).

Adapter settings for this stack (compose.faults.yaml): read timeout 2 s, 3 retries at 0.05-0.2 s backoff,
Retry-After honoured up to 3 s, breaker after 5 failures with a 2 s cooldown, 4 in flight + 2 queued.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from testcontainers.compose import DockerCompose

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FILES = ["compose.yaml", "tests/integration/compose.faults.yaml"]
MODEL = "faulty-model"
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


class Stack:
    def __init__(self, compose: DockerCompose, port: int, control_port: int) -> None:
        self.compose, self.url = compose, f"http://127.0.0.1:{port}"
        self.ctl = httpx.Client(base_url=f"http://127.0.0.1:{control_port}", timeout=10)

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/vllm/v1", api_key="unused", _strict_response_validation=True, max_retries=0, **kwargs
        )

    def script(self, *steps: dict[str, Any]) -> None:
        self.ctl.post("/script", json=list(steps)).raise_for_status()

    def log(self) -> list[dict[str, Any]]:
        return self.ctl.get("/log").json()

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/vllm/metrics", timeout=10).text


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port = free_port()
    env_file = tmp_path_factory.mktemp("faults") / "faults.env"
    env_file.write_text(
        f"COMPOSE_PROJECT_NAME=modelyard-faults-{uuid.uuid4().hex[:8]}\nCOMPOSE_PROFILES=faults\n"
        f"POLICY_BACKEND=vllm\nGATEWAY_PORT={port}\nMODELYARD_TAG={os.environ.get('MODELYARD_TAG', 'latest')}\n"
    )
    compose = DockerCompose(ROOT, compose_file_name=FILES, env_file=str(env_file), profiles=["faults"])
    try:
        compose.start()
    except Exception:
        cmd = ["docker", "compose", *sum((["-f", f] for f in FILES), []), "--env-file", str(env_file)]
        logs = subprocess.run([*cmd, "logs", "--tail", "60"], cwd=ROOT, capture_output=True, text=True)
        print(logs.stdout[-8000:], logs.stderr[-2000:])
        compose.stop()
        raise
    try:
        yield Stack(compose, port, int(compose.get_service_port("faults", 9000)))
    finally:
        compose.stop()


@pytest.fixture(autouse=True)
def clean(stack: Stack) -> None:
    """Each test starts from a healthy engine and a closed circuit, with an empty log."""
    stack.ctl.post("/reset").raise_for_status()
    deadline = time.monotonic() + 10
    while True:
        try:
            stack.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "warm"}])
            break
        except openai.APIStatusError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    stack.ctl.post("/reset").raise_for_status()


def ask(stack: Stack, text: str = "hi", **kwargs: Any) -> Any:
    return stack.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], **kwargs)


# -- rate limits and 5xx ---------------------------------------------------------------------------
def test_429_with_retry_after_is_waited_out(stack: Stack) -> None:
    stack.script({"status": 429, "headers": {"retry-after": "1"}})
    reply = ask(stack, "patience")
    assert reply.choices[0].message.content == "You said: patience"
    first, second = stack.log()
    assert second["t"] - first["t"] >= 0.95  # not retried sooner than asked


def test_long_retry_after_is_passed_to_the_client(stack: Stack) -> None:
    stack.script({"status": 429, "headers": {"retry-after": "30"}})
    with pytest.raises(openai.RateLimitError) as err:
        ask(stack)
    assert err.value.response.headers["retry-after"] == "30"
    assert len(stack.log()) == 1  # the adapter did not wait 30 s on the client's behalf


def test_5xx_burst_is_retried_away(stack: Stack) -> None:
    stack.script({"status": 502}, {"status": 503}, {"status": 504})
    resp = stack.client().responses.create(model=MODEL, input="again")
    assert resp.status == "completed" and resp.output_text == "You said: again"
    assert len(stack.log()) == 4


def test_5xx_that_persists_fails_after_bounded_retries(stack: Stack) -> None:
    stack.script({"status": 500, "times": 10})
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError) as err:
        ask(stack)
    assert err.value.status_code == 502 and "HTTP 500" in err.value.message  # an upstream failure: a bad gateway
    assert time.monotonic() - start < 2
    assert len(stack.log()) == 4  # 1 + 3 retries, not forever


# -- refused connections and the circuit breaker ----------------------------------------------------
def test_refused_connections_open_the_circuit_which_probes_back(stack: Stack) -> None:
    stack.ctl.post("/listen", json={"on": False}).raise_for_status()
    codes = []
    for _ in range(6):
        with pytest.raises(openai.APIStatusError) as err:
            ask(stack)
        codes.append(err.value.code)
        if err.value.code == "upstream_circuit_open":
            break
    assert codes[0] == "upstream_unreachable" and codes[-1] == "upstream_circuit_open", codes
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError) as err:
        ask(stack)
    assert err.value.status_code == 503 and err.value.code == "upstream_circuit_open"
    assert 1 <= int(err.value.response.headers["retry-after"]) <= 2 and time.monotonic() - start < 0.5
    assert 'modelyard_upstream_circuit_state{backend="vllm"} 2.0' in stack.metrics()

    stack.ctl.post("/listen", json={"on": True}).raise_for_status()
    deadline = time.monotonic() + 5
    while True:  # the breaker lets a probe through once its 2 s cooldown is over
        try:
            assert ask(stack, "back").choices[0].message.content == "You said: back"
            break
        except openai.APIStatusError as exc:
            assert exc.code == "upstream_circuit_open" and time.monotonic() < deadline
            time.sleep(0.2)
    assert 'modelyard_upstream_circuit_state{backend="vllm"} 0.0' in stack.metrics()


def test_connection_dropped_mid_body_is_retried(stack: Stack) -> None:
    stack.script({"drop_body": True})
    assert ask(stack, "whole").choices[0].message.content == "You said: whole"
    assert len(stack.log()) == 2


# -- slow, stalled, cut off -------------------------------------------------------------------------
def test_slow_first_byte_within_the_read_timeout(stack: Stack) -> None:
    before = stack.metrics()
    stack.script({"delay": 1})
    stream = ask(stack, "slowly", stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "You said: slowly"
    assert ttft_count(stack.metrics()) == ttft_count(before) + 1


def ttft_count(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('modelyard_time_to_first_token_seconds_count{backend="vllm"}'):
            return float(line.split()[-1])
    return 0.0


def test_first_byte_beyond_the_read_timeout_is_504_not_retried(stack: Stack) -> None:
    stack.script({"delay": 4, "times": 4})
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError) as err:
        ask(stack)
    assert err.value.status_code == 504 and err.value.code == "upstream_timeout"
    assert time.monotonic() - start < 3.5 and len(stack.log()) == 1


@pytest.mark.parametrize("fault", [{"stall_after": 2}, {"drop_after": 2}], ids=["stall", "drop"])
def test_chat_stream_broken_mid_way_ends_with_an_error(stack: Stack, fault: dict[str, Any]) -> None:
    stack.script(fault)
    start, got = time.monotonic(), []
    with pytest.raises(openai.APIError) as err:
        for chunk in ask(stack, "cut short", stream=True):
            got.append(chunk)
    assert got and "broke off" in err.value.message and time.monotonic() - start < 5


@pytest.mark.parametrize("fault", [{"stall_after": 2}, {"drop_after": 2}], ids=["stall", "drop"])
def test_responses_stream_broken_mid_way_ends_failed(stack: Stack, fault: dict[str, Any]) -> None:
    stack.script(fault)
    start = time.monotonic()
    events = list(stack.client().responses.create(model=MODEL, input="cut short", stream=True))
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    assert events[0].type == "response.created" and time.monotonic() - start < 5


def test_truncated_json_is_502(stack: Stack) -> None:
    stack.script({"truncate": True})
    with pytest.raises(openai.InternalServerError) as err:
        ask(stack)
    assert err.value.status_code == 502 and err.value.code == "bad_upstream_reply"


@pytest.mark.parametrize("stream", [False, True])
def test_wrong_content_type_is_502(stack: Stack, stream: bool) -> None:
    stack.script({"content_type": "text/html", "raw": "<html>Sign in</html>"})
    with pytest.raises(openai.InternalServerError) as err:
        stack.client().responses.create(model=MODEL, input="x", stream=stream)
    assert err.value.status_code == 502 and err.value.code == "bad_upstream_reply"


# -- the client leaves; too many at once -----------------------------------------------------------
def test_client_disconnect_closes_the_upstream_request(stack: Stack) -> None:
    stack.script({"chunk_delay": 0.2})
    stream = ask(stack, "a long answer", stream=True)
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    deadline = time.monotonic() + 5
    while not stack.log()[-1]["client_closed"]:
        assert time.monotonic() < deadline, stack.log()
        time.sleep(0.1)
    entry = stack.log()[-1]
    assert not entry["completed"] and entry["chunks"] < 20  # the engine stopped sending


def test_concurrency_limit_queues_then_refuses_with_429(stack: Stack) -> None:
    stack.script({"delay": 1.5, "times": 6})
    results: list[Any] = []

    def one() -> None:
        try:
            results.append(ask(stack).choices[0].message.content)
        except openai.APIStatusError as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]  # 4 in flight, 2 queued
    for t in threads:
        t.start()
    time.sleep(0.7)
    assert 'modelyard_upstream_queue_depth{backend="vllm"} 2.0' in stack.metrics()
    with pytest.raises(openai.RateLimitError) as err:
        ask(stack)
    assert err.value.code == "upstream_busy" and err.value.response.headers["retry-after"] == "1"
    for t in threads:
        t.join()
    assert results == ["You said: hi"] * 6
