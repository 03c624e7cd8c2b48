"""The vLLM (and NIM) adapters' generation switches against a scripted engine (httpx.MockTransport):
RL token data and its echo-back, n=1, reasoning parser / think tags / reasoning history, sampling
overrides, chat_template_kwargs per request, developer role. docs/rl-token-data.md describes the feature."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import ConfigError, Settings
from modelyard.upstream import Upstream

IM_START, IM_END = 1, 2
TOKEN_MODE = {"MODELYARD_RETURN_TOKEN_IDS": "true"}


def enc(text: str) -> list[int]:
    return [ord(c) + 10 for c in text]


def render(messages: list[dict[str, Any]], generation_prompt: bool) -> list[int]:
    """A ChatML-like template over characters; like SmolLM2's, it renders no tool calls."""
    out: list[int] = []
    for m in messages:
        out += [IM_START, *enc(m["role"] + "\n"), *enc(m.get("content") or ""), IM_END, *enc("\n")]
    return out + ([IM_START, *enc("assistant\n")] if generation_prompt else [])


class Engine:
    """A vLLM that renders, tokenizes and answers with token ids and logprobs when asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.text = "Hello"
        self.generated = [500, 501, IM_END]  # not what "Hello" re-tokenizes to: the drift to avoid
        self.logprobs = [-0.5, -0.25, -0.125]
        self.reasoning: str | None = None
        self.tool_calls: list[dict[str, Any]] | None = None
        self.token_ids = True  # False: an engine too old for return_token_ids

    def chats(self) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path.endswith("/chat/completions")]

    def tokenizes(self) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path == "/tokenize"]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else {}
        self.requests.append((path, body))
        if path == "/tokenize":
            if "prompt" in body:
                return httpx.Response(200, json={"tokens": enc(body["prompt"]), "count": len(body["prompt"])})
            return httpx.Response(200, json={"tokens": render(body["messages"], body["add_generation_prompt"])})
        if path != "/v1/chat/completions":
            return httpx.Response(404, json={"detail": "Not Found"})
        prompt = (body.get("kv_transfer_params") or {}).get("prompt_token_ids") or render(body["messages"], True)
        ids = body.get("return_token_ids")
        entries = [
            {"token": f"t{t}", "logprob": lp, "top_logprobs": []}
            for t, lp in zip(self.generated, self.logprobs, strict=True)
        ]
        lp = {"content": entries} if body.get("logprobs") else None
        if body.get("stream"):
            return httpx.Response(
                200, content=self.stream(body, prompt, entries), headers={"content-type": "text/event-stream"}
            )
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.reasoning:
            message["reasoning"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        choice = {"index": 0, "message": message, "logprobs": lp, "finish_reason": "stop"}
        reply = {"id": "c", "object": "chat.completion", "created": 1, "model": body["model"], "choices": [choice]}
        if ids and self.token_ids:
            choice["token_ids"] = self.generated
            reply["prompt_token_ids"] = prompt
        reply["usage"] = {"prompt_tokens": len(prompt), "completion_tokens": 3, "total_tokens": len(prompt) + 3}
        return httpx.Response(200, json=reply)

    def stream(self, body: dict[str, Any], prompt: list[int], entries: list[dict[str, Any]]) -> bytes:
        ids = body.get("return_token_ids") and self.token_ids
        head: dict[str, Any] = {"delta": {"role": "assistant", "content": ""}}
        pieces = [head] + [
            {
                "delta": {"content": text},
                "token_ids": [t],
                "logprobs": {"content": [e]} if body.get("logprobs") else None,
            }
            for text, t, e in zip(["Hel", "lo", ""], self.generated, entries, strict=True)
        ]
        pieces[-1]["finish_reason"] = "stop"
        chunks = []
        for i, piece in enumerate(pieces):
            if not ids:
                piece.pop("token_ids", None)
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
            chunk["choices"] = [{"index": 0, "finish_reason": None, **piece}]
            if i == 0 and ids:
                chunk["prompt_token_ids"] = prompt
            chunks.append(chunk)
        usage = {"prompt_tokens": len(prompt), "completion_tokens": 3, "total_tokens": len(prompt) + 3}
        chunks.append(
            {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [], "usage": usage}
        )
        return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


_OPEN: list[TestClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().__exit__(None, None, None)


def adapter(env: dict[str, str] | None = None, backend: str = "vllm") -> tuple[TestClient, Engine]:
    """An adapter (started: its lifespan ran) in front of a scripted engine; closed after the test."""
    engine = Engine()
    settings = Settings.from_env(backend, {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1", **(env or {})})
    upstream = Upstream(settings.upstream_url, transport=httpx.MockTransport(engine))
    tc = TestClient(create_app(load(backend, settings), upstream=upstream))
    _OPEN.append(tc.__enter__())
    return tc, engine


def events(tc: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    with tc.stream("POST", "/v1/responses", json={**body, "stream": True}) as resp:
        assert resp.status_code == 200
        return [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]


# ---------------------------------------------------------------- RL token data


def test_token_data_is_on_the_last_output_item_exactly_as_the_engine_produced_it() -> None:
    tc, engine = adapter(TOKEN_MODE)
    resp = tc.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert resp.status_code == 200, resp.text
    item = resp.json()["output"][-1]
    assert item["type"] == "message" and item["content"][0]["text"] == "Hello"
    assert item["prompt_token_ids"] == render([{"role": "user", "content": "hi"}], True)
    assert item["generation_token_ids"] == [500, 501, IM_END]
    assert item["generation_log_probs"] == [-0.5, -0.25, -0.125]
    # The engine was asked for ids and one logprob per token; text logprobs were not asked for.
    sent = engine.chats()[-1]
    assert sent["return_token_ids"] is True and sent["logprobs"] is True and sent["top_logprobs"] == 0
    assert item["content"][0]["logprobs"] == []


def test_top_logprobs_as_requested_and_text_logprobs_when_asked() -> None:
    tc, engine = adapter(TOKEN_MODE)
    resp = tc.post("/v1/responses", json={"model": "m", "input": "hi", "top_logprobs": 3})
    assert engine.chats()[-1]["top_logprobs"] == 3
    part = resp.json()["output"][-1]["content"][0]
    assert [lp["logprob"] for lp in part["logprobs"]] == [-0.5, -0.25, -0.125]


def test_token_data_goes_on_a_trailing_function_call() -> None:
    tc, engine = adapter(TOKEN_MODE)
    engine.tool_calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    tool = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
    out = tc.post("/v1/responses", json={"model": "m", "input": "hi", "tools": [tool]}).json()["output"]
    assert [i["type"] for i in out] == ["message", "function_call"]
    assert "prompt_token_ids" not in out[0]
    assert out[1]["generation_token_ids"] == [500, 501, IM_END]


def test_streaming_carries_token_data_on_the_final_response_and_the_items_done() -> None:
    tc, _ = adapter(TOKEN_MODE)
    evs = events(tc, {"model": "m", "input": "hi"})
    final = evs[-1]
    assert final["type"] == "response.completed"
    item = final["response"]["output"][-1]
    assert item["generation_token_ids"] == [500, 501, IM_END]
    assert item["generation_log_probs"] == [-0.5, -0.25, -0.125]
    assert item["prompt_token_ids"] == render([{"role": "user", "content": "hi"}], True)
    done = [e["item"] for e in evs if e["type"] == "response.output_item.done"]
    assert done[-1]["generation_token_ids"] == [500, 501, IM_END]
    assert done[-1]["prompt_token_ids"] == item["prompt_token_ids"]


def test_without_the_mode_no_token_fields_and_nothing_extra_asked() -> None:
    tc, engine = adapter()
    item = tc.post("/v1/responses", json={"model": "m", "input": "hi"}).json()["output"][-1]
    assert not {"prompt_token_ids", "generation_token_ids", "generation_log_probs"} & set(item)
    assert "return_token_ids" not in engine.chats()[-1] and "logprobs" not in engine.chats()[-1]


def test_an_engine_that_sends_no_token_ids_is_a_502_or_a_failed_stream() -> None:
    tc, engine = adapter(TOKEN_MODE)
    engine.token_ids = False
    resp = tc.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "bad_upstream_reply"
    assert [e["type"] for e in events(tc, {"model": "m", "input": "hi"})][-2:] == ["error", "response.failed"]


@pytest.mark.parametrize("n", [2, 0])
def test_n_other_than_1_is_a_400_naming_n(n: int) -> None:
    tc, engine = adapter(TOKEN_MODE)
    for path, body in (
        ("/v1/responses", {"model": "m", "input": "hi", "n": n}),
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": n}),
    ):
        resp = tc.post(path, json=body)
        assert resp.status_code == 400, path
        assert resp.json()["error"]["param"] == "n"
    assert engine.chats() == []
    assert tc.post("/v1/responses", json={"model": "m", "input": "hi", "n": 1}).status_code == 200


def test_n_set_by_configured_extras_is_refused_at_startup() -> None:
    for name in ("MODELYARD_EXTRA_BODY", "MODELYARD_SAMPLING_OVERRIDES"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": "http://e", name: '{"n": 4}', **TOKEN_MODE})


def test_chat_completions_relay_the_engines_token_fields_as_they_are() -> None:
    tc, engine = adapter(TOKEN_MODE)
    resp = tc.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    body = resp.json()
    assert engine.chats()[-1]["return_token_ids"] is True
    assert body["prompt_token_ids"] == render([{"role": "user", "content": "hi"}], True)
    assert body["choices"][0]["token_ids"] == [500, 501, IM_END]
    assert "generation_token_ids" not in body["choices"][0]["message"]


# ---------------------------------------------------------------- echo-back


def turn_one(text: str = "Hello") -> tuple[list[int], list[int]]:
    return render([{"role": "user", "content": "hi"}], True), [500, 501, IM_END]


def test_echoed_ids_are_the_prompt_prefix_without_retokenization_drift() -> None:
    tc, engine = adapter(TOKEN_MODE)
    prompt, generated = turn_one()
    echoed = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
        "prompt_token_ids": prompt,
        "generation_token_ids": generated,
        "generation_log_probs": [-0.5, -0.25, -0.125],
    }
    convo = [{"role": "user", "content": "hi"}, echoed, {"role": "user", "content": "more"}]
    resp = tc.post("/v1/responses", json={"model": "m", "input": convo})
    assert resp.status_code == 200, resp.text
    sent = engine.chats()[-1]["kv_transfer_params"]["prompt_token_ids"]
    # Turn one's prompt and generation exactly (its stop token kept), then the template's rest.
    rest = render([{"role": "user", "content": "more"}], True)[len(render([], False)) :]
    assert sent == prompt + generated[:-1] + [IM_END, *enc("\n")] + rest
    assert sent[: len(prompt) + len(generated)] == prompt + generated
    assert sent != render([*convo[:1], {"role": "assistant", "content": "Hello"}, convo[2]], True)  # the drift
    # The Response reports what the engine used.
    assert resp.json()["output"][-1]["prompt_token_ids"] == sent


def test_echoed_ids_on_a_function_call_splice_after_the_tool_result() -> None:
    tc, engine = adapter(TOKEN_MODE)
    prompt, generated = turn_one()
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    convo = [
        {"role": "user", "content": "hi"},
        {**call, "prompt_token_ids": prompt, "generation_token_ids": [700, 701], "generation_log_probs": [-1, -2]},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
    ]
    tool = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
    assert tc.post("/v1/responses", json={"model": "m", "input": convo, "tools": [tool]}).status_code == 200
    sent = engine.chats()[-1]["kv_transfer_params"]["prompt_token_ids"]
    # A generation cut off before its stop token gets the template's turn end after it.
    tool_turn = [IM_START, *enc("tool\n42"), IM_END, *enc("\n"), IM_START, *enc("assistant\n")]
    assert sent == prompt + [700, 701] + [IM_END, *enc("\n")] + tool_turn
    # The engine's own template saw the same tools and messages.
    assert all(t.get("tools") for t in engine.tokenizes() if "messages" in t and len(t["messages"]) > 2)


def test_the_latest_echoed_turn_wins_and_settings_reach_tokenize() -> None:
    tc, engine = adapter({**TOKEN_MODE, "MODELYARD_CHAT_TEMPLATE_KWARGS": '{"enable_thinking": false}'})
    p1, _ = turn_one()
    a1 = {"role": "assistant", "content": "A", "prompt_token_ids": p1, "generation_token_ids": [600]}
    p2 = [9, 9, 9]
    a2 = {"role": "assistant", "content": "B", "prompt_token_ids": p2, "generation_token_ids": [601, IM_END]}
    convo = [
        {"role": "user", "content": "hi"},
        a1,
        {"role": "user", "content": "x"},
        a2,
        {"role": "user", "content": "y"},
    ]
    assert tc.post("/v1/responses", json={"model": "m", "input": convo}).status_code == 200
    sent = engine.chats()[-1]["kv_transfer_params"]["prompt_token_ids"]
    assert sent[:4] == [9, 9, 9, 601] and sent[4] == IM_END
    assert all(t.get("chat_template_kwargs") == {"enable_thinking": False} for t in engine.tokenizes()[3:])


def test_echoed_ids_are_ignored_without_the_mode() -> None:
    tc, engine = adapter()
    convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "A", "prompt_token_ids": [1]}]
    assert tc.post("/v1/responses", json={"model": "m", "input": convo}).status_code == 200
    assert "kv_transfer_params" not in engine.chats()[-1] and engine.tokenizes() == []


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt_token_ids": [1, 2]}, "input[1].generation_token_ids"),
        ({"prompt_token_ids": [1, "2"], "generation_token_ids": [3]}, "input[1].prompt_token_ids"),
        ({"prompt_token_ids": [1, -2], "generation_token_ids": [3]}, "input[1].prompt_token_ids"),
        ({"prompt_token_ids": "12", "generation_token_ids": [3]}, "input[1].prompt_token_ids"),
        ({"prompt_token_ids": [], "generation_token_ids": [3]}, "input[1].prompt_token_ids"),
        ({"prompt_token_ids": [1], "generation_token_ids": [True]}, "input[1].generation_token_ids"),
        ({"prompt_token_ids": [1], "generation_token_ids": [3], "generation_log_probs": [-1, -2]}, None),
    ],
)
def test_malformed_echoed_ids_are_a_400_naming_the_field(fields: dict[str, Any], param: str | None) -> None:
    tc, engine = adapter(TOKEN_MODE)
    convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "A", **fields}]
    resp = tc.post("/v1/responses", json={"model": "m", "input": convo})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == (param or "input[1].generation_log_probs")
    assert engine.chats() == []


# ---------------------------------------------------------------- reasoning


def test_think_tags_become_a_reasoning_item_without_a_parser() -> None:
    tc, engine = adapter({"MODELYARD_USES_REASONING_PARSER": "false"})
    engine.text = "<think>Let me see.</think>Hello"
    out = tc.post("/v1/responses", json={"model": "m", "input": "hi"}).json()["output"]
    assert [i["type"] for i in out] == ["reasoning", "message"]
    assert out[0]["content"][0]["text"] == "Let me see." and out[1]["content"][0]["text"] == "Hello"


def test_with_a_parser_content_stays_content_and_the_reasoning_field_is_the_reasoning() -> None:
    tc, engine = adapter({"MODELYARD_USES_REASONING_PARSER": "true"})
    engine.text = "<think>literal</think>Hello"
    engine.reasoning = "Parsed reasoning."
    out = tc.post("/v1/responses", json={"model": "m", "input": "hi"}).json()["output"]
    assert [i["type"] for i in out] == ["reasoning", "message"]
    assert out[0]["content"][0]["text"] == "Parsed reasoning."
    assert out[1]["content"][0]["text"] == "<think>literal</think>Hello"


def test_think_tags_are_configurable() -> None:
    tc, engine = adapter({"MODELYARD_THINK_TAGS": '["<reasoning>", "</reasoning>"]'})
    engine.text = "<reasoning>Hmm.</reasoning>Hello"
    out = tc.post("/v1/responses", json={"model": "m", "input": "hi"}).json()["output"]
    assert out[0]["type"] == "reasoning" and out[0]["content"][0]["text"] == "Hmm."
    assert Settings.from_env(
        "vllm", {"MODELYARD_UPSTREAM_URL": "http://e", "MODELYARD_THINK_TAGS": "<a> </a>"}
    ).think_tags == (
        "<a>",
        "</a>",
    )


@pytest.mark.parametrize(("history", "sent"), [("send", "Earlier thought."), ("drop", None), ("", None)])
def test_reasoning_history_is_sent_back_or_dropped_per_the_switch(history: str, sent: str | None) -> None:
    tc, engine = adapter({"MODELYARD_REASONING_HISTORY": history})
    reasoning = {
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "Earlier thought."}],
    }
    convo = [
        {"role": "user", "content": "hi"},
        reasoning,
        {"role": "assistant", "content": "A"},
        {"role": "user", "content": "?"},
    ]
    assert tc.post("/v1/responses", json={"model": "m", "input": convo}).status_code == 200
    assert engine.chats()[-1]["messages"][1].get("reasoning_content") == sent


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MODELYARD_REASONING_HISTORY": "sometimes"}, "MODELYARD_REASONING_HISTORY"),
        ({"MODELYARD_THINK_TAGS": '["<think>"]'}, "MODELYARD_THINK_TAGS"),
        ({"MODELYARD_USES_REASONING_PARSER": "maybe"}, "MODELYARD_USES_REASONING_PARSER"),
        ({"MODELYARD_SAMPLING_OVERRIDES": "[1]"}, "MODELYARD_SAMPLING_OVERRIDES"),
        ({"MODELYARD_RETURN_TOKEN_IDS": "yes please"}, "MODELYARD_RETURN_TOKEN_IDS"),
    ],
)
def test_bad_generation_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": "http://e", **env})


# ---------------------------------------------------------------- sampling, template kwargs, roles


@pytest.mark.parametrize("backend", ["vllm", "nim"])
def test_sampling_overrides_win_over_the_request_everywhere_and_are_logged_once(backend: str, caplog) -> None:
    env = {"MODELYARD_SAMPLING_OVERRIDES": '{"temperature": 1.0, "top_p": 1.0, "top_k": -1}'}
    env["MODELYARD_EXTRA_BODY"] = '{"top_k": 5, "min_p": 0.1}'
    tc, engine = adapter(env, backend)
    caplog.set_level(logging.INFO, logger="modelyard")
    resp = tc.post("/v1/responses", json={"model": "m", "input": "hi", "temperature": 0.2})
    assert resp.json()["temperature"] == 1.0  # the Response tells what was used
    tc.post("/v1/responses", json={"model": "m", "input": "hi", "temperature": 0.3, "top_p": 0.5})
    tc.post(
        "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0}
    )
    for sent in engine.chats():
        assert (sent["temperature"], sent["top_p"], sent["top_k"], sent["min_p"]) == (1.0, 1.0, -1, 0.1)
    logged = [r for r in caplog.records if "sampling_overrides" in r.getMessage()]
    assert len(logged) == 1 and "0.2" in logged[0].getMessage()


def test_without_overrides_the_request_sampling_goes_as_asked() -> None:
    tc, engine = adapter()
    tc.post("/v1/responses", json={"model": "m", "input": "hi", "temperature": 0.2})
    assert engine.chats()[-1]["temperature"] == 0.2 and "top_p" not in engine.chats()[-1]


@pytest.mark.parametrize("backend", ["vllm", "nim"])
def test_chat_template_kwargs_per_request_merge_over_config(backend: str) -> None:
    env = {"MODELYARD_CHAT_TEMPLATE_KWARGS": '{"enable_thinking": true, "keep": 1}'}
    tc, engine = adapter(env, backend)
    body = {"model": "m", "input": "hi", "chat_template_kwargs": {"enable_thinking": False}}
    assert tc.post("/v1/responses", json=body).status_code == 200
    assert engine.chats()[-1]["chat_template_kwargs"] == {"enable_thinking": False, "keep": 1}
    # NeMo Gym's way: JSON in metadata.chat_template_kwargs (the top-level field wins over it).
    meta = {"chat_template_kwargs": json.dumps({"keep": 2, "x": "y"})}
    assert tc.post("/v1/responses", json={"model": "m", "input": "hi", "metadata": meta}).status_code == 200
    assert engine.chats()[-1]["chat_template_kwargs"] == {"enable_thinking": True, "keep": 2, "x": "y"}
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {"keep": 3}}
    tc.post("/v1/chat/completions", json=chat)
    assert engine.chats()[-1]["chat_template_kwargs"] == {"enable_thinking": True, "keep": 3}


@pytest.mark.parametrize(
    "body",
    [
        {"chat_template_kwargs": "enable_thinking"},
        {"metadata": {"chat_template_kwargs": "{not json"}},
        {"metadata": {"chat_template_kwargs": "[1]"}},
    ],
)
def test_bad_chat_template_kwargs_are_a_400(body: dict[str, Any]) -> None:
    tc, engine = adapter()
    resp = tc.post("/v1/responses", json={"model": "m", "input": "hi", **body})
    assert resp.status_code == 400 and "chat_template_kwargs" in resp.json()["error"]["param"]
    assert engine.chats() == []


def test_hosted_backends_take_no_chat_template_kwargs() -> None:
    tc, engine = adapter({"MODELYARD_UPSTREAM_API_KEY": "k"}, "openrouter")  # translates Responses to chat
    resp = tc.post("/v1/responses", json={"model": "m", "input": "hi", "chat_template_kwargs": {"x": 1}})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "chat_template_kwargs"
    assert engine.requests == []


@pytest.mark.parametrize(("role", "sent"), [("system", "system"), ("developer", "developer"), ("", "system")])
def test_developer_messages_are_rewritten_per_the_switch(role: str, sent: str) -> None:
    tc, engine = adapter({"MODELYARD_DEVELOPER_ROLE": role})
    convo = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert tc.post("/v1/responses", json={"model": "m", "input": convo}).status_code == 200
    assert engine.chats()[-1]["messages"][0]["role"] == sent


def test_tokenize_sees_earlier_reasoning_as_the_chat_endpoint_does() -> None:
    tc, engine = adapter({**TOKEN_MODE, "MODELYARD_REASONING_HISTORY": "send"})
    prompt, generated = turn_one()
    reasoning = {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "Hmm."}]}
    echoed = {"role": "assistant", "content": "Hello", "prompt_token_ids": prompt, "generation_token_ids": generated}
    convo = [{"role": "user", "content": "hi"}, reasoning, echoed, {"role": "user", "content": "more"}]
    assert tc.post("/v1/responses", json={"model": "m", "input": convo}).status_code == 200
    assert engine.chats()[-1]["messages"][1]["reasoning_content"] == "Hmm."
    rendered = [t for t in engine.tokenizes() if t.get("messages", [{}])[0].get("content") == "hi"]
    assert rendered and all(t["messages"][1]["reasoning"] == "Hmm." for t in rendered)
    assert all("reasoning_content" not in t["messages"][1] for t in rendered)
