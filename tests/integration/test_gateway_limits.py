"""The gateway's guard rails through the real nginx: client API keys, per-key rate and connection limits,
slow-client timeouts, and the bad-input table's gateway part (oversize bodies at nginx and at the adapter,
unknown paths, malformed JSON relayed to the adapter). A small stack of its own (no engine): the gateway
with keys and limits set, the vllm adapter, the fault-injecting engine stand-in (compose.faults.yaml).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from testcontainers.compose import DockerCompose

from .conftest import logged

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FILES = ["compose.yaml", "tests/integration/compose.faults.yaml"]
MODEL = "faulty-model"
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
# One key per test that counts requests, so the per-key limits of one do not spill into another.
KEYS = {name: f"sk-it-{name}-{uuid.uuid4().hex[:12]}" for name in ("auth", "table", "rate", "conn", "other")}


class Stack:
    def __init__(self, port: int, control: int, cmd: list[str]) -> None:
        self.url, self.cmd = f"http://127.0.0.1:{port}", cmd
        self.port = port
        self.ctl = httpx.Client(base_url=f"http://127.0.0.1:{control}", timeout=10)

    def post(self, path: str, key: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.post(f"{self.url}{path}", headers={**headers, **kwargs.pop("headers", {})}, timeout=30, **kwargs)

    def gateway_log(self) -> str:
        out = subprocess.run([*self.cmd, "logs", "--no-color", "gateway"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout + out.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port = free_port()
    env_file = tmp_path_factory.mktemp("gwlimits") / "gw.env"
    env_file.write_text(
        f"COMPOSE_PROJECT_NAME=modelyard-gwlimits-{uuid.uuid4().hex[:8]}\nCOMPOSE_PROFILES=faults\n"
        f"POLICY_BACKEND=vllm\nGATEWAY_PORT={port}\nMODELYARD_TAG={os.environ.get('MODELYARD_TAG', 'latest')}\n"
        f"GATEWAY_API_KEYS={','.join(KEYS.values())}\nGATEWAY_RATE_PER_KEY=60r/m\nGATEWAY_BURST=5\n"
        "GATEWAY_MAX_CONNS_PER_KEY=2\nGATEWAY_MAX_BODY_SIZE=64k\nGATEWAY_RETRY_AFTER=2\n"
        "GATEWAY_CLIENT_HEADER_TIMEOUT=2s\nGATEWAY_CLIENT_BODY_TIMEOUT=2s\nMODELYARD_MAX_BODY_BYTES=16384\n"
    )
    cmd = ["docker", "compose", *sum((["-f", f] for f in FILES), []), "--env-file", str(env_file)]
    compose = DockerCompose(ROOT, compose_file_name=FILES, env_file=str(env_file), profiles=["faults"])
    try:
        compose.start()
    except Exception:
        logs = subprocess.run([*cmd, "logs", "--tail", "60"], cwd=ROOT, capture_output=True, text=True)
        print(logs.stdout[-8000:], logs.stderr[-2000:])
        compose.stop()
        raise
    try:
        yield Stack(port, int(compose.get_service_port("faults", 9000)), cmd)
    finally:
        compose.stop()


def assert_openai_error(resp: httpx.Response, status: int, code: str | None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code:
        assert error["code"] == code
    return error


# -- client keys -----------------------------------------------------------------------------------
def test_a_key_from_the_list_is_let_through_and_others_get_401(stack: Stack) -> None:
    sdk = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=KEYS["auth"], max_retries=0)
    reply = sdk.responses.create(model=MODEL, input="through the gate")
    assert reply.output_text == "You said: through the gate"
    for key in (None, "sk-not-a-key-of-ours", KEYS["auth"].upper(), KEYS["auth"][:-1]):
        resp = stack.post("/v1/responses", key, json={"model": MODEL, "input": "hi"})
        assert_openai_error(resp, 401, "invalid_api_key")
        assert resp.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{stack.url}/vllm/v1", api_key="sk-wrong-wrong", max_retries=0).models.list()
    assert httpx.get(f"{stack.url}/healthz", timeout=10).status_code == 200  # health stays open


def test_keys_never_reach_the_access_log(stack: Stack) -> None:
    stack.post("/v1/responses", KEYS["auth"], json={"model": MODEL, "input": "log me"}).raise_for_status()
    log = logged(stack.gateway_log, '"key":"k1"', '"status":401')
    assert '"key":"k1"' in log and '"status":401' in log
    assert not any(key in log for key in KEYS.values()) and "sk-not-a-key-of-ours" not in log


# -- limits ----------------------------------------------------------------------------------------
def test_a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not(stack: Stack) -> None:
    # 60 a minute with a burst of 5: of 20 requests sent back to back, most are refused.
    statuses = []
    for _ in range(20):
        resp = stack.post("/vllm/v1/chat/completions", KEYS["rate"], json={"model": MODEL, "messages": []})
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            assert_openai_error(resp, 429, "rate_limit_exceeded")
            assert resp.headers["retry-after"] == "2"
    assert statuses[0] == 200 and statuses.count(429) >= 10
    ok = stack.post("/vllm/v1/chat/completions", KEYS["other"], json={"model": MODEL, "messages": []})
    assert ok.status_code == 200, ok.text


def test_a_key_over_its_connection_limit_gets_429(stack: Stack) -> None:
    stack.ctl.post("/reset").raise_for_status()
    stack.ctl.post("/script", json=[{"delay": 1.8, "times": 2}]).raise_for_status()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "slow"}]}
    slow = [threading.Thread(target=stack.post, args=("/v1/chat/completions", KEYS["conn"]), kwargs={"json": body})
            for _ in range(2)]  # fmt: skip
    for t in slow:
        t.start()
    try:
        for _ in range(100):  # both slow requests reached the engine: two in flight on this key
            if len(stack.ctl.get("/log").json()) >= 2:
                break
            threading.Event().wait(0.05)
        third = stack.post("/v1/chat/completions", KEYS["conn"], json=body)
        assert_openai_error(third, 429, "rate_limit_exceeded")
    finally:
        for t in slow:
            t.join(30)


def raw_exchange(stack: Stack, data: bytes) -> bytes:
    """Send `data` and read until nginx closes the connection (15 s guard against a hang)."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=15) as sock:
        sock.sendall(data)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


def test_slow_clients_are_cut_off(stack: Stack) -> None:
    # Headers never finished: nginx closes the connection once client_header_timeout (2 s) passes.
    assert raw_exchange(stack, b"POST /v1/responses HTTP/1.1\r\nhost: x\r\n") == b""
    # A body promised and never sent: 408 after client_body_timeout (2 s).
    head = f"POST /v1/responses HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEYS['other']}\r\n"
    got = raw_exchange(stack, (head + "content-type: application/json\r\ncontent-length: 100\r\n\r\n{").encode())
    assert got == b"" or got.startswith(b"HTTP/1.1 408")


# -- the bad-input table, gateway part ------------------------------------------------------------
BIG = "x" * (70 * 1024)
MID = "x" * (20 * 1024)
TABLE = [
    ("malformed JSON", "/v1/responses", b'{"model": ', 400, "invalid_json"),
    ("wrong types", "/v1/responses", json.dumps({"model": MODEL, "input": 42}).encode(), 400, None),
    ("unknown backend path", "/bogus/v1/responses", b"{}", 404, "unknown_url"),
    ("unknown path on an adapter", "/vllm/v2/nothing", b"{}", 404, "unknown_url"),
    ("body over the gateway's client_max_body_size", "/v1/responses",
     json.dumps({"model": MODEL, "input": BIG}).encode(), 413, "request_too_large"),
    ("body over the adapter's limit", "/v1/responses", json.dumps({"model": MODEL, "input": MID}).encode(),
     413, "request_too_large"),
    ("invalid JSON schema in a tool", "/v1/responses", json.dumps({"model": MODEL, "input": "hi", "tools": [
        {"type": "function", "name": "f", "parameters": {"type": "nonsense"}}]}).encode(), 400, "invalid_schema"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "code"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_bad_input_through_the_gateway_is_a_4xx(stack: Stack, path: str, body: bytes, status: int, code: str) -> None:
    resp = stack.post(path, KEYS["table"], content=body, headers={"content-type": "application/json"})
    assert_openai_error(resp, status, code)
