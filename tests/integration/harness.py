"""Shared by the agent-harness tests (docs/agent-harnesses.md): the CLIs installed with npm into a cached
folder, a recorder that keeps what a harness sends, and a cpu stack set up for harnesses."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, Stack, _start, free_port

NPM_DIR = Path(os.environ.get("MODELYARD_HARNESS_NPM", ROOT / "build" / "harness-npm"))
PACKAGES = {"codex": "@openai/codex@0.171.0", "claude": "@anthropic-ai/claude-code@2.1.197"}
DOC = ROOT / "docs" / "agent-harnesses.md"


def cli(name: str) -> Path:
    """The harness's CLI, installed on first use (npm through the host's proxy); a skip where npm is missing."""
    exe = NPM_DIR / "node_modules" / ".bin" / name
    if exe.exists():
        return exe
    if shutil.which("npm") is None:
        pytest.skip(f"npm is not installed: cannot install {PACKAGES[name]}")
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    cmd = ["npm", "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund", *PACKAGES.values()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0 or not exe.exists():
        pytest.skip(f"npm install {PACKAGES[name]} failed: {out.stderr[-400:]}")
    return exe


class Recorder:
    """A one-shot endpoint that keeps the first request a harness sends and answers 400."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, dict]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                recorder.requests.append((self.path, dict(self.headers), json.loads(body or b"{}")))
                self.send_response(400)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"type":"error","error":{"type":"invalid_request_error","message":"recorded"}}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def documented_fields(harness: str) -> set[str]:
    """The request fields docs/agent-harnesses.md's table for `harness` lists (first column, in backticks)."""
    text = DOC.read_text()
    section = text.split(f"<!-- fields:{harness} -->", 1)[1].split("<!-- /fields -->", 1)[0]
    return {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}


# One stack for both harnesses: each profile's drops, and each one's shell tool forced on a first step.
EXTRA = {"MODELYARD_CLIENTS": "codex,claude-code", "MODELYARD_FORCE_TOOL_CHOICE": "exec_command,Bash"}


_UP: list[Stack] = []  # the stack both modules share (each imports the fixture: two definitions)


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if _UP:  # brought up for the other module; stopped by it at the session's end
        yield _UP[0]
        return
    cli("codex"), cli("claude")  # installed (or skipped) before a stack is brought up for them
    for stack in harness_stack(tmp_path_factory.mktemp("harness"), EXTRA):
        _UP.append(stack)
        yield stack
        _UP.clear()


def harness_stack(tmp: Path, extra: dict[str, str]) -> Iterator[Stack]:
    port = free_port()
    project = f"modelyard-harness-{os.getpid()}"
    env = {
        "COMPOSE_PROJECT_NAME": project,
        "COMPOSE_PROFILES": "cpu",
        "POLICY_BACKEND": "vllm",
        "GATEWAY_PORT": str(port),
        "MODELYARD_TAG": os.environ.get("MODELYARD_TAG", "latest"),
        # The 135M model makes sure of nothing: greedy, no loops, short (a stop at the first ".", which a
        # forced call's JSON arguments have not had), and arguments held to the schema (xgrammar).
        "MODELYARD_SAMPLING_OVERRIDES": '{"temperature": 0}',
        "MODELYARD_EXTRA_BODY": '{"max_tokens": 200, "repetition_penalty": 1.3, "stop": ["."]}',
        "VLLM_EXTRA_ARGS": "--structured-outputs-config.backend=xgrammar "
        "--structured-outputs-config.disable_any_whitespace=True",
        **extra,
    }
    env_file = tmp / "harness.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    start = time.monotonic()
    compose = _start(env_file)
    print(f"stack up in {time.monotonic() - start:.0f} s")
    try:
        yield Stack(compose, port, project, env_file)
    finally:
        compose.stop()
