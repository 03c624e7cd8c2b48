"""The real Claude Code CLI (`claude -p`, npm @anthropic-ai/claude-code): what it sends, checked against
docs/agent-harnesses.md. The end-to-end turn on /v1/messages waits for the Anthropic ingress (branch
`messages`) to be merged."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .harness import Recorder, cli, documented_fields

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
