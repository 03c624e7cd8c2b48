"""A hosted-backend stack for one test module: compose.yaml plus tests/integration/compose.hosted.yaml, one
profile, a stand-in provider in place of the real one, its own compose project on a free port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
from testcontainers.compose import DockerCompose

ROOT = Path(__file__).resolve().parents[2]
FILES = ["compose.yaml", "tests/integration/compose.hosted.yaml"]
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Hosted:
    backend: str
    compose: DockerCompose
    port: int
    standin_port: int
    env_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, prefix: str | None = None, **kwargs: Any) -> openai.OpenAI:
        """The official SDK pointed at the gateway (/<backend>/v1 by default), validating every reply strictly."""
        prefix = f"/{self.backend}" if prefix is None else prefix
        return openai.OpenAI(
            base_url=f"{self.url}{prefix}/v1",
            api_key="not-needed",
            _strict_response_validation=True,
            max_retries=0,
            **kwargs,
        )

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def standin(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.standin_port}", timeout=10)

    def requests(self, probes: bool = False) -> list[dict[str, Any]]:
        """What the stand-in provider received since the last clear(); without the adapter's readiness
        probes (GET .../models, every health check), which land between a test's own requests at random."""
        with self.standin() as s:
            seen = s.get("/_requests").json()
        if probes:
            return seen
        return [
            r
            for r in seen
            if not (r["method"] == "GET" and r["path"].endswith("/models") and "x-request-id" not in r["headers"])
        ]

    def clear(self) -> None:
        with self.standin() as s:
            s.delete("/_requests")

    @contextmanager
    def standin_config(self, **changes: Any) -> Iterator[None]:
        """Change what the stand-in accepts (a revoked key, a rotated token) for the duration of a block."""
        with self.standin() as s:
            before = s.get("/_config").json()
            s.post("/_config", json=changes)
            try:
                yield
            finally:
                s.post("/_config", json={k: before[k] for k in changes if k in before})

    def logs(self) -> str:
        out, err = self.compose.get_logs()
        return out + err


def start(backend: str, env: dict[str, str], tmp_path: Path) -> Hosted:
    port = free_port()
    env_file = tmp_path / "hosted.env"
    settings = {
        "COMPOSE_PROJECT_NAME": f"modelyard-{backend}-{uuid.uuid4().hex[:8]}",
        "COMPOSE_PROFILES": backend,
        "POLICY_BACKEND": backend,
        "GATEWAY_PORT": str(port),
        "MODELYARD_TAG": os.environ.get("MODELYARD_TAG", "latest"),
        **env,
    }
    env_file.write_text("".join(f"{k}={quote(v)}\n" for k, v in settings.items()))
    compose = DockerCompose(ROOT, compose_file_name=FILES, env_file=str(env_file), profiles=[backend])
    try:
        compose.start()
    except Exception:
        cmd = ["docker", "compose", *sum((["-f", f] for f in FILES), []), "--env-file", str(env_file)]
        logs = subprocess.run(
            [*cmd, "--profile", backend, "logs", "--tail", "60"], cwd=ROOT, capture_output=True, text=True
        )
        print(logs.stdout[-8000:], logs.stderr[-2000:])
        compose.stop()
        raise
    standin_port = int(compose.get_service_port(f"standin-{backend}", 8000))
    return Hosted(backend, compose, port, standin_port, env_file)


def quote(value: str) -> str:
    """A value for compose's env file: single-quoted (taken literally), so JSON and $ stay as they are."""
    assert "'" not in value, value
    return f"'{value}'" if any(c in value for c in '{}"$ #') else value


def standin_config(config: dict[str, Any]) -> str:
    return json.dumps(config, separators=(",", ":"))


TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CHAT_TOOL = {"type": "function", "function": {k: v for k, v in TOOL.items() if k != "type"}}


@contextmanager
def running(backend: str, env: dict[str, str], tmp_path: Path) -> Iterator[Hosted]:
    """A module's stack: up for the block, down after it."""
    hosted = start(backend, env, tmp_path)
    try:
        yield hosted
    finally:
        hosted.compose.stop()


def checked_requests(stack: Hosted) -> Iterator[list[dict[str, Any]]]:
    """For a `sent` fixture: the requests the stand-in received during the test, all checked to be what the
    real provider expects (auth, attribution, path, query, body)."""
    stack.clear()
    seen: list[dict[str, Any]] = []
    yield seen
    seen.extend(stack.requests())
    no_problems(seen)


def no_problems(requests: list[dict[str, Any]]) -> None:
    """Every request the stand-in saw was what the real provider expects."""
    bad = [(r["method"], r["path"], r["problems"]) for r in requests if r["problems"]]
    assert not bad, bad
