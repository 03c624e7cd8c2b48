"""RL token data on the real vLLM (CPU) engine (docs/rl-token-data.md).

A second vLLM adapter container with MODELYARD_RETURN_TOKEN_IDS=true joins the session stack's network
and talks to its engine (no second engine, no second stack). The engine's own /tokenize and chat endpoint
are asked directly, from inside that container, for the comparison.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import Stack, free_port

pytestmark = pytest.mark.integration

ENGINE = "http://vllm-engine:8000"
QUESTION = "What is the capital of France? Answer in one sentence."
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city",
    # An enum, closed: the required call is held to it (a free string could run past max_output_tokens).
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
# Reads {"path", "body"} on stdin, posts it to the engine, prints the JSON reply (run in the adapter image).
ASK_ENGINE = (
    "import json, sys, httpx; q = json.load(sys.stdin); "
    f"r = httpx.post('{ENGINE}' + q['path'], json=q['body'], timeout=300); "
    "print(json.dumps({'status': r.status_code, 'body': r.json()}))"
)


class TokenAdapter:
    def __init__(self, name: str, port: int, model: str) -> None:
        self.name, self.url, self.model = name, f"http://127.0.0.1:{port}", model

    def responses(self, **body: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/responses", json={"model": self.model, **body}, timeout=300)

    def stream(self, **body: Any) -> list[dict[str, Any]]:
        payload = {"model": self.model, "stream": True, **body}
        with httpx.stream("POST", f"{self.url}/v1/responses", json=payload, timeout=300) as resp:
            assert resp.status_code == 200
            return [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]

    def engine(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The engine itself, asked from inside the adapter container (the engine publishes no port)."""
        query = json.dumps({"path": path, "body": {"model": self.model, **body}})
        out = subprocess.run(
            ["docker", "exec", "-i", self.name, "python", "-c", ASK_ENGINE],
            input=query,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        reply = json.loads(out.stdout)
        assert reply["status"] == 200, reply
        return reply["body"]

    def tokenize(self, messages: list[dict[str, Any]], **extra: Any) -> list[int]:
        return self.engine("/tokenize", {"messages": messages, "add_generation_prompt": True, **extra})["tokens"]


@pytest.fixture(scope="module")
def adapter(stack: Stack, model: str) -> Iterator[TokenAdapter]:
    name, port = f"{stack.project}-token-adapter", free_port()
    run = [
        "docker", "run", "-d", "--rm", "--name", name, "--network", f"{stack.project}_default",
        "-p", f"127.0.0.1:{port}:8000", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
        "-e", f"MODELYARD_UPSTREAM_URL={ENGINE}/v1", "-e", "MODELYARD_RETURN_TOKEN_IDS=true",
        f"modelyard/adapter:{os.environ.get('MODELYARD_TAG', 'latest')}", "vllm",
    ]  # fmt: skip
    started = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
                raise AssertionError(f"token adapter not ready: {logs.stdout[-2000:]} {logs.stderr[-2000:]}")
            time.sleep(0.5)
        yield TokenAdapter(name, port, model)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def test_token_ids_equal_the_engines_own_tokenize_and_chat(adapter: TokenAdapter) -> None:
    resp = adapter.responses(input=QUESTION, max_output_tokens=24, temperature=0)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    item = out["output"][-1]
    prompt, generated, logprobs = item["prompt_token_ids"], item["generation_token_ids"], item["generation_log_probs"]
    messages = [{"role": "user", "content": QUESTION}]
    # The prompt is the engine's rendering of the chat template, token for token.
    assert prompt == adapter.tokenize(messages)
    assert len(prompt) == out["usage"]["input_tokens"]
    # The generation is what the engine's own chat endpoint generates for that prompt (greedy: the same).
    own = adapter.engine(
        "/v1/chat/completions",
        {"messages": messages, "max_tokens": 24, "temperature": 0, "logprobs": True, "return_token_ids": True},
    )
    assert own["prompt_token_ids"] == prompt
    assert own["choices"][0]["token_ids"] == generated
    assert len(generated) == len(logprobs) == out["usage"]["output_tokens"]
    assert logprobs == pytest.approx([lp["logprob"] for lp in own["choices"][0]["logprobs"]["content"]], abs=1e-3)
    assert own["choices"][0]["message"]["content"] == item["content"][0]["text"]
    print(
        f"[figures] ids equal to the engine's /tokenize and own chat: prompt {len(prompt)}/{len(prompt)},"
        f" generation {len(generated)}/{len(generated)}"
    )


def test_two_turns_the_second_prompt_continues_the_first_turns_ids(adapter: TokenAdapter) -> None:
    first = adapter.responses(input=QUESTION, max_output_tokens=24, temperature=0).json()
    turn = first["output"][-1]
    history = turn["prompt_token_ids"] + turn["generation_token_ids"]
    convo = [{"role": "user", "content": QUESTION}, *first["output"], {"role": "user", "content": "And of Italy?"}]
    second = adapter.responses(input=convo, max_output_tokens=16, temperature=0)
    assert second.status_code == 200, second.text
    prompt = second.json()["output"][-1]["prompt_token_ids"]
    assert prompt[: len(history)] == history
    assert len(prompt) > len(history)
    print(f"[figures] turn 2 prompt: {len(prompt)} ids, the first {len(history)} are turn 1's prompt + generation")


def test_echoed_ids_win_over_a_retokenization_that_differs(adapter: TokenAdapter) -> None:
    """The tool call SmolLM2 generates is not what its chat template renders back (the template drops
    tool calls): re-tokenized, turn two's prompt would lose turn one's generated tokens."""
    first = adapter.responses(
        input="What is the weather in Paris?", tools=[WEATHER], tool_choice="required", max_output_tokens=48,
        temperature=0,
    ).json()  # fmt: skip
    call = first["output"][-1]
    assert call["type"] == "function_call"
    history = call["prompt_token_ids"] + call["generation_token_ids"]
    result = {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny, 22 C"}
    convo = [{"role": "user", "content": "What is the weather in Paris?"}, *first["output"], result]
    second = adapter.responses(input=convo, tools=[WEATHER], max_output_tokens=16, temperature=0)
    assert second.status_code == 200, second.text
    prompt = second.json()["output"][-1]["prompt_token_ids"]
    assert prompt[: len(history)] == history
    # What the engine renders for the same conversation has not got turn one's tokens.
    tools = [{"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}]
    calls = [
        {"id": call["call_id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
    ]
    rendered = adapter.tokenize(
        [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "tool_call_id": call["call_id"], "content": "Sunny, 22 C"},
        ],
        tools=tools,
    )
    assert rendered[: len(history)] != history
    same = next((i for i, (a, b) in enumerate(zip(rendered, history, strict=False)) if a != b), len(rendered))
    print(
        f"[figures] tool-call turn: {len(history)} echoed ids kept; re-tokenized, only the first {same} would match"
        f" ({len(rendered)} ids in all against {len(prompt)})"
    )


def test_streaming_carries_the_same_token_data_on_the_final_response(adapter: TokenAdapter) -> None:
    plain = adapter.responses(input=QUESTION, max_output_tokens=24, temperature=0).json()["output"][-1]
    events = adapter.stream(input=QUESTION, max_output_tokens=24, temperature=0)
    final = events[-1]
    assert final["type"] in ("response.completed", "response.incomplete")
    item = final["response"]["output"][-1]
    assert item["prompt_token_ids"] == plain["prompt_token_ids"]
    assert item["generation_token_ids"] == plain["generation_token_ids"]
    assert item["generation_log_probs"] == pytest.approx(plain["generation_log_probs"], abs=1e-3)
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"][-1]
    assert done["generation_token_ids"] == plain["generation_token_ids"]


def test_n_other_than_one_is_refused_in_this_mode(adapter: TokenAdapter) -> None:
    resp = adapter.responses(input="Hi", n=2)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "n"


def test_anthropic_messages_carry_the_same_token_data(adapter: TokenAdapter) -> None:
    """/v1/messages (docs/messages.md): the ids on the message, plain and streamed (its message_delta)."""
    body = {
        "model": adapter.model,
        "max_tokens": 24,
        "temperature": 0,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    message = httpx.post(f"{adapter.url}/v1/messages", json=body, timeout=300).json()
    assert message["prompt_token_ids"] == adapter.tokenize(body["messages"])
    assert (
        len(message["generation_token_ids"])
        == len(message["generation_log_probs"])
        == message["usage"]["output_tokens"]
    )
    with httpx.stream("POST", f"{adapter.url}/v1/messages", json={**body, "stream": True}, timeout=300) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    [delta] = [e for e in events if e["type"] == "message_delta"]
    assert delta["prompt_token_ids"] == message["prompt_token_ids"]
    assert delta["generation_token_ids"] == message["generation_token_ids"]  # greedy: the same generation
    # Echoed on the assistant message, they are the next turn's prompt prefix.
    history = message["prompt_token_ids"] + message["generation_token_ids"]
    said = {"role": "assistant", "content": message["content"]}
    said.update({k: message[k] for k in ("prompt_token_ids", "generation_token_ids")})
    turns = [*body["messages"], said, {"role": "user", "content": "And of Italy?"}]
    second = httpx.post(f"{adapter.url}/v1/messages", json={**body, "messages": turns}, timeout=300)
    assert second.status_code == 200, second.text
    assert second.json()["prompt_token_ids"][: len(history)] == history
