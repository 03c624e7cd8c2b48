"""Stored responses on the running `cpu` stack (gateway -> adapter with its SQLite store -> real vLLM on CPU),
driven by the openai SDK (strict) and the Agents SDK: a 3-turn tool-calling chain by id, GET/DELETE/
cancel/input_items, background polled and cancelled, a conversation, a WebSocket session of two continued
turns (the checks: state_checks.py, shared with a hosted backend's test_state_hosted.py), and the kill -9
count. Protocol only: the 135M model's words are never asserted."""

from __future__ import annotations

import concurrent.futures
import subprocess
import time

import httpx
import pytest

from . import state_checks as checks
from .conftest import Stack

pytestmark = pytest.mark.integration


def gateway(stack: Stack) -> checks.Gateway:
    return checks.Gateway(stack.url)


def test_three_turn_tool_chain_by_id(stack: Stack, model: str) -> None:
    checks.three_turn_tool_chain(gateway(stack), model)


def test_agents_sdk_chains_by_previous_response_id(stack: Stack, model: str) -> None:
    from pydantic import BaseModel, Field

    class Answer(BaseModel):  # a short structured answer: the engine's guided decoding ends it in time
        text: str = Field(max_length=12)

    checks.agents_sdk_chain(gateway(stack), model, Answer)


def test_background_polled_and_cancelled(stack: Stack, model: str) -> None:
    checks.background_polled_and_cancelled(gateway(stack), model)


def test_conversation(stack: Stack, model: str) -> None:
    checks.conversation(gateway(stack), model)


def test_websocket_session_of_two_continued_turns(stack: Stack, model: str) -> None:
    checks.websocket_two_continued_turns(gateway(stack), model)


def test_kill_9_during_a_burst_of_stored_writes_loses_no_answered_response(stack: Stack, model: str) -> None:
    """Every response whose reply reached the client is retrievable after the adapter was killed and
    restarted (docs/state.md: a reply is sent only once its write committed)."""
    container = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={stack.project}",
         "--filter", "label=com.docker.compose.service=adapter-vllm"],
        capture_output=True, text=True, check=True,
    ).stdout.split()[0]  # fmt: skip

    def one(i: int) -> str | None:
        try:
            with httpx.Client(base_url=stack.url, timeout=60) as c:
                r = c.post("/v1/responses", json={"model": model, "input": f"n{i}", "max_output_tokens": 2})
            return r.json()["id"] if r.status_code == 200 else None
        except httpx.HTTPError:
            return None

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(one, i) for i in range(160)]
        end = time.monotonic() + 120
        while sum(f.done() for f in futures) < 40 and time.monotonic() < end:  # mid-burst: writes in flight
            time.sleep(0.05)
        subprocess.run(["docker", "kill", "-s", "KILL", container], check=True, capture_output=True)
        answered = [i for i in (f.result() for f in futures) if i]
    subprocess.run(["docker", "start", container], capture_output=True)
    with stack.http() as http:
        end = time.monotonic() + 180
        while time.monotonic() < end:
            try:
                if http.get("/vllm/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        found = sum(http.get(f"/v1/responses/{rid}").status_code == 200 for rid in answered)
    print(f"kill -9: {len(answered)} of 160 answered around the kill; {found} retrievable after restart")
    assert answered and found == len(answered)
