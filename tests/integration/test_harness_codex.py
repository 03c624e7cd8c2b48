"""The real Codex CLI (`codex exec --json`, npm @openai/codex) against the `cpu` stack through the gateway,
with no proxy and no edits to its requests: a tool-calling turn round-trips and Codex exits cleanly.

The 135M model cannot choose a tool on its own, so the stack forces the first step's tool choice
(MODELYARD_FORCE_TOOL_CHOICE=exec_command); Codex's prompt is made to fit with a short instructions file
and its optional tools off (docs/agent-harnesses.md): two requests of ~1000 tokens each, within the
engine's default 2048. Greedy sampling, a repetition penalty and a stop at "." keep the model's replies
short and ending (tests/integration/harness.py)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import Stack
from .harness import Recorder, cli, documented_fields, shared_stack  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

# Everything docs/agent-harnesses.md lists for a cluster with no way out (no plugin sync, no analytics).
CONFIG = """\
model = "{model}"
model_provider = "modelyard"
model_instructions_file = "{instructions}"
web_search = "disabled"
approval_policy = "never"
sandbox_mode = "workspace-write"
check_for_update_on_startup = false

[features]
multi_agent = false
goals = false
apps = false
plugins = false

[analytics]
enabled = false

[model_providers.modelyard]
name = "modelyard"
base_url = "{base_url}"
wire_api = "responses"
env_key = "MODELYARD_KEY"
stream_max_retries = 0
request_max_retries = 0
"""


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:  # noqa: F811 (the fixture imported above)
    return shared_stack


def codex(tmp: Path, base_url: str, model: str, prompt: str) -> subprocess.CompletedProcess[str]:
    home, repo = tmp / "codex-home", tmp / "repo"
    home.mkdir(exist_ok=True)
    repo.mkdir(exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "README.md").write_text("scratch\n")
    instructions = tmp / "instructions.md"
    instructions.write_text("You are a coding agent in a terminal. Run shell commands with exec_command.\n")
    (home / "config.toml").write_text(CONFIG.format(model=model, instructions=instructions, base_url=base_url))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "CODEX_HOME": str(home),
        "MODELYARD_KEY": "not-needed",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    cmd = [str(cli("codex")), "exec", "--json", "--skip-git-repo-check", "-C", str(repo), prompt]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=240)


def events(out: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_what_codex_sends_is_documented(tmp_path: Path) -> None:
    recorder = Recorder()
    try:
        codex(tmp_path, f"http://127.0.0.1:{recorder.port}/v1", "m", "List the files.")
    finally:
        recorder.close()
    path, headers, body = recorder.requests[0]
    assert path == "/v1/responses"
    assert set(body) <= documented_fields("codex"), set(body) - documented_fields("codex")
    assert body["include"] == ["reasoning.encrypted_content"] and body["store"] is False
    assert "client_metadata" in body and body["stream"] is True


def test_codex_exec_completes_a_tool_calling_turn(stack: Stack, tmp_path: Path) -> None:
    model = stack.client().models.list().data[0].id
    start = time.monotonic()
    out = codex(tmp_path, f"{stack.url}/v1", model, "List the files in this directory.")
    took = time.monotonic() - start
    print(f"codex exec took {took:.0f} s")
    seen = events(out)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    kinds = [e["type"] for e in seen]
    assert "turn.completed" in kinds and "turn.failed" not in kinds and "error" not in kinds, kinds
    commands = [e["item"] for e in seen if e["type"] == "item.completed" and e["item"]["type"] == "command_execution"]
    assert commands, kinds  # the forced exec_command call ran, and its output went back to the model
