"""Exactness (issue H): streamed and non-streamed replies agree, the echo says what is in force, a cut-short
generation never looks successful, every backend validates alike, and nothing is accepted silently.

Each test goes through the adapter app over a scripted upstream, as a client sees it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.unit.hosted_helpers import adapter, streamed
from tests.unit.spec import check_event, check_response
from tests.unit.test_translate_stream import check_sequence

VLLM = {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1"}
OPENROUTER = {"MODELYARD_UPSTREAM_URL": "https://openrouter.ai/api/v1", "MODELYARD_UPSTREAM_API_KEY": "k"}
TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


def completion(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    return {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice], "usage": usage}


def engine(chat: dict[str, Any], chunks: list[dict[str, Any]]):
    """An upstream answering every chat request with `chat`, or streamed, with `chunks`."""

    def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("stream"):
            raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
            return streamed(raw)
        return httpx.Response(200, json=chat)

    return handler


def ask(tc, request: dict[str, Any]) -> tuple[httpx.Response, dict[str, Any], httpx.Response, list[dict[str, Any]]]:
    """The same request non-streamed and streamed: (reply, its Response, streamed reply, its events)."""
    resp = tc.post("/v1/responses", json=request)
    with tc.stream("POST", "/v1/responses", json={**request, "stream": True}) as sresp:
        sresp.read()
    events = [json.loads(line[6:]) for line in sresp.text.splitlines() if line.startswith("data: ")]
    return resp, resp.json() if resp.status_code == 200 else {}, sresp, events


def settled(response: dict[str, Any]) -> dict[str, Any]:
    """A Response minus what differs between two calls (id, times; item ids and generated call ids derive
    from the id)."""
    out = {k: v for k, v in response.items() if k not in ("id", "created_at", "completed_at")}
    generated = "call_" + response["id"][5:29]
    output = [
        {k: v for k, v in item.items() if k != "id" and not (k == "call_id" and v.startswith(generated))}
        for item in response["output"]
    ]
    return {**out, "output": output}


def dones(events: list[dict[str, Any]]) -> list[int]:
    return [e["output_index"] for e in events if e["type"] == "response.output_item.done"]


def checked(response: dict[str, Any], events: list[dict[str, Any]]) -> None:
    check_response(response)
    for event in events:
        check_event(event)
    check_sequence(events, events[-1]["response"])


# -- D1, D2: one rule for the order of output items --------------------------------------------------------------
def test_d1_calls_before_text_close_in_output_order() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    chunks = [chunk({"tool_calls": [call]}), chunk({"content": "Checking."}), chunk({}, "tool_calls")]
    tc, _ = adapter("vllm", VLLM, engine(completion({"content": "x"}), chunks))
    with tc:
        _, _, _, events = ask(tc, {"model": "m", "input": "x", "tools": [TOOL]})
    final = events[-1]["response"]
    checked(final, events)
    assert [i["type"] for i in final["output"]] == ["function_call", "message"]  # the order the engine produced
    assert dones(events) == [0, 1], "output_item.done in output order"


def test_d1_text_then_calls_stream_exactly_as_not_streamed() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    chat = completion({"content": "Checking.", "tool_calls": [call]}, "tool_calls")
    pieces = [chunk({"content": "Check"}), chunk({"content": "ing."})]
    pieces += [chunk({"tool_calls": [{"index": 0, **call, "function": {"name": "get_weather", "arguments": ""}}]})]
    pieces += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}) for a in ('{"city": ', '"Oslo"}')]
    tc, _ = adapter("vllm", VLLM, engine(chat, [*pieces, chunk({}, "tool_calls"), {**chat, "choices": []}]))
    with tc:
        _, response, _, events = ask(tc, {"model": "m", "input": "x", "tools": [TOOL]})
    checked(response, events)
    assert [i["type"] for i in response["output"]] == ["message", "function_call"]
    assert settled(events[-1]["response"]) == settled(response)
    assert dones(events) == [0, 1]


def test_d2_reasoning_and_text_alternating_keep_the_engine_order() -> None:
    """Streamed, each switch between reasoning and text is a new item, in the order the engine produced them;
    a non-streamed message holds one reasoning and one text, and comes back as those two items, in that order,
    exactly as a stream in that order does."""
    alternating = [chunk({"reasoning_content": "a"}), chunk({"content": "b"})] * 2 + [chunk({}, "stop")]
    tc, _ = adapter("vllm", VLLM, engine(completion({"content": "x"}), alternating))
    with tc:
        _, _, _, events = ask(tc, {"model": "m", "input": "x"})
    final = events[-1]["response"]
    checked(final, events)
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "reasoning", "message"]
    assert dones(events) == [0, 1, 2, 3]

    chat = completion({"reasoning_content": "ab", "content": "cd"})
    once = [chunk({"reasoning_content": "a"}), chunk({"reasoning_content": "b"}), chunk({"content": "cd"})]
    tc, _ = adapter("vllm", VLLM, engine(chat, [*once, chunk({}, "stop"), {**chat, "choices": []}]))
    with tc:
        _, response, _, events = ask(tc, {"model": "m", "input": "x"})
    assert [i["type"] for i in response["output"]] == ["reasoning", "message"]
    assert settled(events[-1]["response"]) == settled(response)


# -- D3: the echo says what is in force -------------------------------------------------------------------------
@pytest.mark.parametrize(("backend", "env"), [("vllm", VLLM), ("openrouter", OPENROUTER)])
def test_d3_pinned_sampling_is_echoed_on_every_backend(backend: str, env: dict[str, str]) -> None:
    pins = {"MODELYARD_SAMPLING_OVERRIDES": json.dumps({"temperature": 0.2, "top_p": 0.5})}
    tc, up = adapter(backend, {**env, **pins}, engine(completion({"content": "hi"}), []))
    with tc:
        resp = tc.post("/v1/responses", json={"model": "m", "input": "x", "temperature": 0.9, "top_p": 0.9})
    assert (up.body()["temperature"], up.body()["top_p"]) == (0.2, 0.5)
    assert (resp.json()["temperature"], resp.json()["top_p"]) == (0.2, 0.5)


# -- D4: a generation cut short never looks successful ------------------------------------------------------------
@pytest.mark.parametrize("finish", ["abort", "error"])
def test_d4_unknown_finish_reason_is_a_failed_response_naming_it(finish: str) -> None:
    chat = completion({"content": "Par"}, finish)
    chunks = [chunk({"content": "Par"}), chunk({}, finish), {**chat, "choices": []}]
    tc, _ = adapter("vllm", VLLM, engine(chat, chunks))
    with tc:
        resp, response, _, events = ask(tc, {"model": "m", "input": "x"})
    checked(response, events)
    for r in (response, events[-1]["response"]):
        assert r["status"] == "failed" and r["completed_at"] is None
        assert finish in r["error"]["message"] and r["output"][-1]["status"] == "incomplete"
    assert events[-1]["type"] == "response.failed"
    assert settled(events[-1]["response"]) == settled(response)


# -- D5: one validation on every backend --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("backend", "env"),
    [("vllm", VLLM), ("openrouter", OPENROUTER), ("openrouter", {**OPENROUTER, "MODELYARD_RESPONSES_MODE": "native"})],
)
def test_d5_bad_reasoning_effort_is_a_400_on_every_backend(backend: str, env: dict[str, str]) -> None:
    tc, up = adapter(backend, env, engine(completion({"content": "hi"}), []))
    with tc:
        resp = tc.post("/v1/responses", json={"model": "m", "input": "x", "reasoning": {"effort": "bogus"}})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "reasoning.effort"
    assert "low" in resp.json()["error"]["message"]  # it says what is accepted
    assert not up.requests


def test_d5_openrouter_reasoning_is_echoed_and_sent_as_its_own_object() -> None:
    tc, up = adapter("openrouter", OPENROUTER, engine(completion({"content": "hi"}), []))
    with tc:
        resp = tc.post(
            "/v1/responses", json={"model": "m", "input": "x", "reasoning": {"effort": "high", "max_tokens": 9}}
        )
    assert up.body()["reasoning"] == {"effort": "high", "max_tokens": 9} and "reasoning_effort" not in up.body()
    assert resp.json()["reasoning"] == {"effort": "high", "summary": None}


# -- D6: honoured, refused by name, or dropped and named ----------------------------------------------------------
def test_d6_store_true_is_refused_by_name() -> None:
    tc, up = adapter("vllm", VLLM, engine(completion({"content": "hi"}), []))
    with tc:
        resp = tc.post("/v1/responses", json={"model": "m", "input": "x", "store": True})
        assert tc.post("/v1/responses", json={"model": "m", "input": "x", "store": False}).status_code == 200
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "store"
    assert resp.json()["error"]["code"] == "unsupported_parameter"


def test_d6_store_true_tolerated_is_dropped_and_named() -> None:
    tc, _ = adapter("vllm", {**VLLM, "MODELYARD_TOLERATE_PARAMS": "store"}, engine(completion({"content": "hi"}), []))
    with tc:
        resp = tc.post("/v1/responses", json={"model": "m", "input": "x", "store": True})
    assert resp.status_code == 200 and resp.json()["store"] is False
    assert resp.headers["x-modelyard-dropped-params"] == "store"


def test_d6_unknown_stream_options_key_is_a_400() -> None:
    tc, _ = adapter("vllm", VLLM, engine(completion({"content": "hi"}), []))
    with tc:
        resp = tc.post("/v1/responses", json={"model": "m", "input": "x", "stream_options": {"include_usage": True}})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "stream_options.include_usage"
    assert resp.json()["error"]["code"] == "unknown_parameter"


ASSISTANT = {"role": "assistant", "content": "A", "phase": "final_answer"}
CALL = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "namespace": "ns"}
REASONING = {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "think"}]}
BREAKPOINT = {"role": "user", "content": [{"type": "input_text", "text": "Q", "prompt_cache_breakpoint": True}]}


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        ({"stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation"),
        ({"reasoning": {"effort": "low", "summary": "auto"}}, "reasoning.summary"),
        ({"input": [BREAKPOINT]}, "input[0].content[0].prompt_cache_breakpoint"),
        ({"input": [{"role": "user", "content": "Q"}, ASSISTANT]}, "input[1].phase"),
        ({"input": [{"role": "user", "content": "Q"}, CALL, {**BREAKPOINT, "content": "Q"}]}, "input[1].namespace"),
        ({"input": [{"role": "user", "content": "Q"}, REASONING, ASSISTANT | {"phase": None}]}, "input[1]"),
    ],
    ids=["include_obfuscation", "reasoning.summary", "prompt_cache_breakpoint", "phase", "namespace", "reasoning"],
)
def test_d6_accepted_but_not_honoured_is_dropped_and_named(request_: dict[str, Any], named: str) -> None:
    tc, _ = adapter("vllm", VLLM, engine(completion({"content": "hi"}), [chunk({"content": "hi"}, "stop")]))
    with tc:
        resp, response, sresp, _ = ask(tc, {"model": "m", "input": "x", **request_})
    assert resp.status_code == sresp.status_code == 200, resp.text
    assert resp.headers["x-modelyard-dropped-params"] == sresp.headers["x-modelyard-dropped-params"] == named
    check_response(response)


# -- tool-call markup never reaches output_text -------------------------------------------------------------------
CUT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "To'


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_weather"}, "auto"])
def test_markup_of_a_call_cut_short_is_an_incomplete_function_call(choice: Any) -> None:
    chat = completion({"content": CUT}, "length")
    pieces = ["<tool", "_call>\n", '{"name": "get_weather", ', '"arguments": {"city": "To']
    chunks = [*(chunk({"content": p}) for p in pieces), chunk({}, "length"), {**chat, "choices": []}]
    tc, _ = adapter("vllm", VLLM, engine(chat, chunks))
    with tc:
        _, response, _, events = ask(
            tc, {"model": "m", "input": "x", "tools": [TOOL], "tool_choice": choice, "max_output_tokens": 12}
        )
    checked(response, events)
    (item,) = response["output"]
    assert (item["type"], item["status"], item["name"]) == ("function_call", "incomplete", "get_weather")
    assert item["arguments"] == '{"city": "To'
    assert response["status"] == "incomplete"
    assert not [e for e in events if e["type"] == "response.output_text.delta"], "no markup as text"
    assert settled(events[-1]["response"]) == settled(response)


def test_markup_of_a_whole_call_is_a_function_call() -> None:
    chat = completion({"content": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'})
    tc, _ = adapter("vllm", VLLM, engine(chat, []))
    with tc:
        response = tc.post("/v1/responses", json={"model": "m", "input": "x", "tools": [TOOL]}).json()
    check_response(response)
    (item,) = response["output"]
    assert (item["type"], item["status"], json.loads(item["arguments"])) == (
        "function_call",
        "completed",
        {"city": "Oslo"},
    )


def test_markup_under_tool_choice_none_is_the_text_the_model_wrote() -> None:
    chat = completion({"content": CUT}, "length")
    tc, _ = adapter("vllm", VLLM, engine(chat, []))
    with tc:
        request = {"model": "m", "input": "x", "tools": [TOOL], "tool_choice": "none"}
        response = tc.post("/v1/responses", json=request).json()
    assert [i["type"] for i in response["output"]] == ["message"]
    assert response["output"][0]["content"][0]["text"] == CUT


def test_text_that_only_looks_like_markup_is_text() -> None:
    chat = completion({"content": "<tool> is a word"})
    tc, _ = adapter(
        "vllm", VLLM, engine(chat, [chunk({"content": "<tool"}), chunk({"content": "> is a word"}, "stop")])
    )
    with tc:
        _, response, _, events = ask(tc, {"model": "m", "input": "x", "tools": [TOOL]})
    assert response["output"][0]["content"][0]["text"] == "<tool> is a word"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "<tool> is a word"


# -- C: the Response object to the letter of the spec -------------------------------------------------------------
def test_c_echo_numbers_and_usage_key_on_every_event() -> None:
    tc, _ = adapter("vllm", VLLM, engine(completion({"content": "hi"}), [chunk({"content": "hi"}, "stop")]))
    with tc:
        _, response, _, events = ask(tc, {"model": "m", "input": "x"})
    expected = {"temperature": 1.0, "top_p": 1.0, "top_logprobs": 0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
    for r in (response, *(e["response"] for e in events if "response" in e)):
        assert {k: r.get(k) for k in expected} == expected and r["service_tier"] == "default"
    created, in_progress = events[0]["response"], events[1]["response"]
    assert "usage" in created and created["usage"] is None and in_progress["usage"] is None
    checked(response, events)
