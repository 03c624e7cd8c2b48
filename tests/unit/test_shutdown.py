"""Graceful shutdown of a real adapter process (`python -m modelyard vllm`, uvicorn) in front of the
fault-injecting engine stand-in streaming slowly: on SIGTERM the stream already running finishes whole,
/readyz and new requests stop being served at once (a 503, or the connection refused once uvicorn has
closed its socket), and the process exits by itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen) -> None:
    for _ in range(200):
        assert proc.poll() is None, "process exited while starting"
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def engine() -> Iterator[tuple[str, str]]:
    port, control = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "tests"),
        "FAULTS_PORT": str(port),
        "FAULTS_CONTROL_PORT": str(control),
    }
    proc = subprocess.Popen([sys.executable, "-m", "standins.faults"], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_up(f"http://127.0.0.1:{control}/log", proc)
        yield f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{control}"
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_lets_the_running_stream_finish_and_refuses_new_requests(engine: tuple[str, str]) -> None:
    upstream, control = engine
    port = free_port()
    env = {**os.environ, "MODELYARD_UPSTREAM_URL": upstream, "MODELYARD_PORT": str(port),
           "MODELYARD_SHUTDOWN_GRACE": "30", "MODELYARD_LOG_LEVEL": "warning"}  # fmt: skip
    adapter = subprocess.Popen([sys.executable, "-m", "modelyard", "vllm", "--host", "127.0.0.1"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{base}/healthz", adapter)
        httpx.post(f"{control}/script", json=[{"chunk_delay": 0.05}]).raise_for_status()
        lines: list[str] = []
        first = threading.Event()

        def stream() -> None:
            body = {"model": "faulty-model", "stream": True, "messages": [{"role": "user", "content": "a b c d"}]}
            with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=60) as resp:
                for line in resp.iter_lines():
                    lines.append(line)
                    first.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first.wait(20)
        adapter.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # uvicorn notices the signal on its next tick
        assert not [line for line in lines if line == "data: [DONE]"], "the stream must still be running"
        for method, path in (("GET", "/readyz"), ("POST", "/v1/chat/completions")):
            try:
                resp = httpx.request(method, f"{base}{path}", json={"model": "faulty-model", "messages": []}, timeout=5)
            except httpx.ConnectError:
                continue  # the listening socket is closed: refused, as a balancer expects
            assert resp.status_code == 503, (path, resp.text)
        reader.join(60)
        assert adapter.wait(30) is not None  # it exits once the stream is done, well within the grace
        data = [line[6:] for line in lines if line.startswith("data: ")]
        assert data[-1] == "[DONE]"
        text = "".join(
            json.loads(d)["choices"][0]["delta"].get("content") or "" for d in data[:-1] if json.loads(d)["choices"]
        )
        assert text.startswith("You said:") and len(data) > 40  # whole: every slow chunk arrived
    finally:
        if adapter.poll() is None:
            adapter.kill()
        adapter.wait()
