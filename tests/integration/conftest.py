"""The compose stack, brought up once per test session with testcontainers on the real Docker engine.

The images must exist (scripts/test builds them with scripts/build-images). The stack runs as its own
compose project on a free port, so it never touches a stack a user already has up.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from testcontainers.compose import DockerCompose

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def logged(read: Callable[[], str], *wanted: str, timeout: float = 10) -> str:
    """A log with every line written before the call: the gateway buffers its access log and each worker
    writes what it holds at least once a second (`access_log ... buffer=64k flush=1s`). Read again until
    every `wanted` string is in it, or `timeout` passes."""
    time.sleep(1.3)
    deadline = time.monotonic() + timeout
    while True:
        text = read()
        if all(w in text for w in wanted) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    compose: DockerCompose
    port: int
    project: str
    env_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, prefix: str = "", **kwargs) -> openai.OpenAI:
        """The official SDK pointed at the gateway, validating every reply strictly."""
        return openai.OpenAI(
            base_url=f"{self.url}{prefix}/v1",
            api_key="not-needed",
            _strict_response_validation=True,
            max_retries=0,
            **kwargs,
        )

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120)

    def compose_cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["docker", "compose", "--env-file", str(self.env_file), "--profile", "cpu", *args]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _start(env_file: Path) -> DockerCompose:
    compose = DockerCompose(ROOT, compose_file_name="compose.yaml", env_file=str(env_file), profiles=["cpu"])
    try:
        compose.start()
    except Exception:
        logs = subprocess.run(
            ["docker", "compose", "--env-file", str(env_file), "--profile", "cpu", "logs", "--tail", "80"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        print(logs.stdout[-8000:], logs.stderr[-2000:])
        compose.stop()
        raise
    return compose


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port = free_port()
    project = f"modelyard-test-{os.getpid()}"
    env_file = tmp_path_factory.mktemp("stack") / "test.env"
    env_file.write_text(
        f"COMPOSE_PROJECT_NAME={project}\nCOMPOSE_PROFILES=cpu\nPOLICY_BACKEND=vllm\nGATEWAY_PORT={port}\n"
    )
    compose = _start(env_file)
    try:
        yield Stack(compose, port, project, env_file)
    finally:
        compose.stop()


@pytest.fixture(scope="session")
def model(stack: Stack) -> str:
    return stack.client().models.list().data[0].id
