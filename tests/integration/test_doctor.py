"""scripts/doctor on a real stack, healthy and then broken, and its port check against a real listener.

The stack is the small fault-injection one (compose.faults.yaml: gateway, vllm adapter, engine stand-in; no
model), as its own compose project on a free port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FILES = ["compose.yaml", "tests/integration/compose.faults.yaml"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    env_file: Path
    port: int

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["docker", "compose", *sum((["-f", f] for f in FILES), []), "--env-file", str(self.env_file)]
        return subprocess.run([*cmd, "--profile", "faults", *args], cwd=ROOT, capture_output=True, text=True)

    def doctor(self, *args: str) -> subprocess.CompletedProcess[str]:
        files = sum((["-f", f] for f in FILES), [])
        cmd = [str(ROOT / "scripts/doctor"), "--env-file", str(self.env_file), *files, *args]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def lines(out: str) -> dict[str, str]:
    """item -> its verdict line ('ok    service gateway    running, healthy' -> {'service gateway': line})."""
    got = {}
    for line in out.splitlines():
        level, _, rest = line.partition("  ")
        if level.strip() in ("ok", "warn", "FAIL"):
            item = rest.strip().split("  ")[0].strip()
            got[item] = line
    return got


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port = free_port()
    env_file = tmp_path_factory.mktemp("doctor") / "doctor.env"
    env_file.write_text(
        f"COMPOSE_PROJECT_NAME=modelyard-doctor-{uuid.uuid4().hex[:8]}\nCOMPOSE_PROFILES=faults\n"
        f"POLICY_BACKEND=vllm\nGATEWAY_PORT={port}\nMODELYARD_TAG={os.environ.get('MODELYARD_TAG', 'latest')}\n"
    )
    stack = Stack(env_file, port)
    up = stack.compose("up", "-d", "--wait", "--no-build")
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield stack
    finally:
        stack.compose("down", "-t", "2")


def test_the_doctor_on_a_healthy_stack(stack: Stack) -> None:
    out = stack.doctor()
    assert out.returncode == 0, out.stdout + out.stderr
    got = lines(out.stdout)
    for item in ("docker", "service gateway", "service adapter-vllm", "service faults", "backend vllm",
                 "gateway http", "model", "image gateway", "image adapter", "disk"):  # fmt: skip
        assert item in got, out.stdout
        assert not got[item].startswith("FAIL"), got[item]
    assert "running, healthy" in got["service adapter-vllm"] and "ready:" in got["backend vllm"]
    assert f"127.0.0.1:{stack.port} answers as modelyard-gateway; open" in got["gateway http"]
    assert "faulty-model" in got["model"]
    assert out.stdout.rstrip().endswith("doctor: 0 problems")


def test_the_port_check_on_a_running_stack_is_ok(stack: Stack) -> None:
    # Up again on a stack that is up: its own gateway holds the port, that is fine.
    out = stack.doctor("--port")
    assert out.returncode == 0 and "is this stack's gateway" in out.stdout, out.stdout + out.stderr


def test_the_port_check_names_another_program(stack: Stack, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        env = tmp_path / "busy.env"
        env.write_text(stack.env_file.read_text().replace(f"GATEWAY_PORT={stack.port}", f"GATEWAY_PORT={port}"))
        files = sum((["-f", f] for f in FILES), [])
        out = subprocess.run([str(ROOT / "scripts/doctor"), "--env-file", str(env), *files, "--port"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1
    assert "FAIL  gateway port" in out.stdout and f"127.0.0.1:{port} is already in use by python" in out.stdout
    assert "gateway.port in env.yaml" in out.stdout


def test_the_doctor_on_a_broken_stack(stack: Stack) -> None:
    # The engine goes away: its service has exited, the adapter's readiness says why, the doctor fails.
    assert stack.compose("stop", "-t", "1", "faults").returncode == 0
    deadline = time.monotonic() + 60
    while True:
        out = stack.doctor()
        got = lines(out.stdout)
        if got.get("backend vllm", "").startswith("FAIL") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert out.returncode == 1, out.stdout
    assert got["service faults"].startswith("FAIL") and "exited" in got["service faults"]
    assert got["backend vllm"].startswith("FAIL") and "not ready (readyz 503)" in got["backend vllm"]
    assert "faults:8000" in got["backend vllm"], got["backend vllm"]  # the cause names the upstream
    assert got["service gateway"].startswith("ok") and got["docker"].startswith("ok")
    assert "doctor: " in out.stdout and "problems: " in out.stdout and "backend vllm" in out.stdout.splitlines()[-1]
