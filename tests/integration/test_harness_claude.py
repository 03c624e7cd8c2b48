"""The real Claude Code CLI (`claude -p --output-format json`, npm @anthropic-ai/claude-code) against the
`cpu` stack's /v1/messages through the gateway, no proxy, nothing edited: the forced Bash call
(MODELYARD_FORCE_TOOL_CHOICE) runs, its result goes back, the next step answers, and the CLI exits cleanly.
Also what it sends, checked against docs/agent-harnesses.md."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import Stack
from .harness import Recorder, cli, documented_fields, shared_stack  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration


def claude(tmp: Path, base_url: str, model: str, prompt: str) -> subprocess.CompletedProcess[str]:
    repo = tmp / "repo"
    repo.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "not-needed",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "512",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    cmd = [str(cli("claude")), "-p", prompt, "--output-format", "json", "--model", model, "--max-turns", "3"]
    cmd += ["--system-prompt", "You are a coding agent. Run shell commands with Bash.", "--tools", "Bash"]
    # Bash allowed by name (--dangerously-skip-permissions is refused to root, as CI runs).
    cmd += ["--strict-mcp-config", "--allowedTools", "Bash"]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=240)


def test_what_claude_code_sends_is_documented(tmp_path: Path) -> None:
    recorder = Recorder()
    try:
        claude(tmp_path, f"http://127.0.0.1:{recorder.port}", "m", "List the files.")
    finally:
        recorder.close()
    path, headers, body = next(r for r in recorder.requests if r[0].startswith("/v1/messages"))
    assert path.split("?")[0] == "/v1/messages"
    assert set(body) <= documented_fields("claude-code"), set(body) - documented_fields("claude-code")
    assert [t["name"] for t in body["tools"]] == ["Bash"] and body["max_tokens"] == 512
    assert any(block.get("cache_control") for block in body["system"])


def test_claude_code_completes_a_tool_calling_turn(shared_stack: Stack, tmp_path: Path) -> None:  # noqa: F811
    model = shared_stack.client().models.list().data[0].id
    out = claude(tmp_path, shared_stack.url, model, "List the files in this directory.")
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    result = json.loads(out.stdout)
    assert result["is_error"] is False and result["num_turns"] >= 2, result
