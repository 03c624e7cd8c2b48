"""`/v1/messages` on the adapter, driven by the real anthropic SDK over a scripted chat upstream
(httpx.MockTransport): plain, streamed (the SDK's stream helpers), a tool_use -> tool_result loop, pings,
errors in Anthropic's format (the SDK's error classes and ErrorResponse type), count_tokens, token data."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from fastapi.testclient import TestClient

from modelyard import messages_serving
from tests.unit.anthropic_spec import check_count, check_error, check_event, check_message, check_sequence
from tests.unit.hosted_helpers import Script, adapter

VLLM = {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1"}
OPENAI = {"MODELYARD_UPSTREAM_URL": "https://api.openai.com/v1", "MODELYARD_UPSTREAM_API_KEY": "sk-proj-secret-1234"}
WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "Tokyo"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
USAGE = {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}


def completion(message: dict[str, Any], finish: str = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **extra}],
        "usage": USAGE,
    }


def as_chunks(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """A completion as the chunks of its stream: role, content in two pieces, each call, finish, usage."""
    choice, message = reply["choices"][0], reply["choices"][0]["message"]
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if message.get("reasoning_content"):
        deltas.append({"reasoning_content": message["reasoning_content"]})
    text = message.get("content") or ""
    deltas += [{"content": text[: len(text) // 2]}, {"content": text[len(text) // 2 :]}] if text else []
    for i, call in enumerate(message.get("tool_calls") or ()):
        fn = call["function"]
        deltas.append(
            {"tool_calls": [{"index": i, "id": call["id"], "type": "function", "function": {"name": fn["name"]}}]}
        )
        deltas.append({"tool_calls": [{"index": i, "function": {"arguments": fn["arguments"]}}]})
    out = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    last = {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}
    last.update({k: choice[k] for k in ("token_ids", "logprobs") if k in choice})  # all on one chunk: enough here
    out.append({**base, "choices": [last]})
    if "prompt_token_ids" in reply:
        out[0]["prompt_token_ids"] = reply["prompt_token_ids"]
    return [*out, {**base, "choices": [], "usage": reply["usage"]}]


def sse(chunks: list[dict[str, Any]], done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


class Engine:
    """A chat upstream answering each request with the next scripted completion (streamed when asked)."""

    def __init__(self, *replies: dict[str, Any]) -> None:
        self.replies = list(replies) or [completion({"content": "Paris."})]
        self.status = 200
        self.error: dict[str, Any] = {}
        self.cut = False  # streams end without [DONE]
        self.pause = 0.0  # seconds of silence after the first chunk

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"count": 3, "tokens": [1, 2, 3], "max_model_len": 2048})
        if request.url.path != "/v1/chat/completions":
            return httpx.Response(200, json={"object": "list", "data": []})
        if self.status != 200:
            return httpx.Response(self.status, json=self.error)
        body = json.loads(request.content)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if not body.get("stream"):
            return httpx.Response(200, json=reply)
        chunks, cut, pause = as_chunks(reply), self.cut, self.pause

        async def stream() -> Any:
            yield sse(chunks[:1], done=False)
            await asyncio.sleep(pause)
            yield sse(chunks[1:], done=not cut)

        return httpx.Response(200, content=stream(), headers={"content-type": "text/event-stream"})


@pytest.fixture
def engine() -> Engine:
    return Engine()


@pytest.fixture
def app(engine: Engine) -> Iterator[tuple[TestClient, Script]]:
    tc, script = adapter("vllm", VLLM, engine)
    with tc:
        yield tc, script


def sdk(tc: TestClient) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=str(tc.base_url), api_key="x", http_client=tc, max_retries=0)


def sent(script: Script) -> dict[str, Any]:
    return [json.loads(r.content) for r in script.requests if r.url.path == "/v1/chat/completions"][-1]


def raw_events(tc: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a streamed reply, each `event:` name checked against its data's type."""
    with tc.stream("POST", "/v1/messages", json={**body, "stream": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = list(resp.iter_lines())
    events, name = [], None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            event = json.loads(line[6:])
            assert event["type"] == name
            events.append(event)
    return events


HI = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "Capital of France?"}]}


def test_plain(app) -> None:
    tc, script = app
    message = sdk(tc).messages.create(**HI, system="Be brief.", metadata={"user_id": "u-1"})
    assert message.content[0].type == "text" and message.content[0].text == "Paris."
    assert message.stop_reason == "end_turn" and message.usage.input_tokens == 11 and message.usage.output_tokens == 4
    assert sent(script)["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent(script)["user"] == "u-1" and sent(script)["max_tokens"] == 16
    check_message(tc.post("/v1/messages", json=HI).json())


def test_streamed_with_the_sdk_helpers(app) -> None:
    tc, _ = app
    with sdk(tc).messages.stream(**HI) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "Paris." == final.content[0].text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4 and final.usage.input_tokens == 11
    events = raw_events(tc, HI)
    for event in events:
        check_event(event)
    check_sequence(events)


def test_tool_use_loop(engine: Engine, app) -> None:
    tc, script = app
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    engine.replies = [completion({"content": None, "tool_calls": [call]}), completion({"content": "Sunny."})] * 2
    client = sdk(tc)
    ask = {"role": "user", "content": "Weather in Paris?"}
    for stream in (False, True):
        kwargs = {
            "model": "m",
            "max_tokens": 64,
            "tools": [WEATHER],
            "tool_choice": {"type": "tool", "name": "get_weather"},
        }
        if stream:
            with client.messages.stream(messages=[ask], **kwargs) as s:
                first = s.get_final_message()
        else:
            first = client.messages.create(messages=[ask], **kwargs)
        assert first.stop_reason == "tool_use"
        [use] = [b for b in first.content if b.type == "tool_use"]
        assert use.name == "get_weather" and use.input == {"city": "Paris"} and use.id == "call_1"
        assert sent(script)["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
        result = {"type": "tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": "sunny"}]}
        turns = [ask, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}]
        final = client.messages.create(model="m", max_tokens=64, tools=[WEATHER], messages=turns)
        assert final.stop_reason == "end_turn" and final.content[0].text == "Sunny."
        history = sent(script)["messages"]
        assert [m["role"] for m in history] == ["user", "assistant", "tool"]
        assert history[1]["tool_calls"][0]["id"] == "call_1"
        assert history[2] == {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]}


def test_sampling_through_extra_body(app) -> None:
    tc, script = app
    sdk(tc).messages.create(**HI, stop_sequences=["END"], extra_body={"temperature": 0.2, "top_p": 0.5, "top_k": 5})
    body = sent(script)
    assert (body["temperature"], body["top_p"], body["top_k"], body["stop"]) == (0.2, 0.5, 5, ["END"])


def test_ping_on_a_long_gap(engine: Engine, app, monkeypatch: pytest.MonkeyPatch) -> None:
    tc, _ = app
    monkeypatch.setattr(messages_serving, "PING_INTERVAL", 0.05)
    engine.pause = 0.3
    events = raw_events(tc, HI)
    assert any(e["type"] == "ping" for e in events)
    check_sequence(events)
    with sdk(tc).messages.stream(**HI) as stream:  # the SDK skips pings
        assert stream.get_final_message().content[0].text == "Paris."


def test_stream_cut_off_ends_with_an_error_event(engine: Engine, app) -> None:
    tc, _ = app
    engine.cut = True
    events = raw_events(tc, HI)
    assert events[-1] == {"type": "error", "error": {"type": "api_error", "message": events[-1]["error"]["message"]}}
    check_error(events[-1])
    with pytest.raises(anthropic.APIStatusError), sdk(tc).messages.stream(**HI) as stream:
        stream.get_final_message()


@pytest.mark.parametrize(
    ("body", "status", "kind", "sdk_error"),
    [
        ({"model": "m", "max_tokens": 5, "messages": []}, 400, "invalid_request_error", anthropic.BadRequestError),
        ({**HI, "temperature": 3}, 400, "invalid_request_error", anthropic.BadRequestError),
        ({**HI, "container": "c"}, 400, "invalid_request_error", anthropic.BadRequestError),
    ],
)
def test_client_errors_in_anthropics_format(app, body: dict, status: int, kind: str, sdk_error: type) -> None:
    tc, script = app
    resp = tc.post("/v1/messages", json=body)
    assert resp.status_code == status
    err = check_error(resp.json())
    assert err.error.type == kind
    known = {k: body[k] for k in ("model", "max_tokens", "messages")}
    with pytest.raises(sdk_error) as caught:  # this SDK has no temperature argument: sent as extra_body
        sdk(tc).messages.create(**known, extra_body={k: v for k, v in body.items() if k not in known})
    assert caught.value.body == resp.json()
    assert not [r for r in script.requests if r.url.path == "/v1/chat/completions"]


def test_route_errors_in_anthropics_format(app) -> None:
    tc, _ = app
    for method, path, status in (("GET", "/v1/messages", 405), ("POST", "/v1/messages/nope", 404)):
        resp = tc.request(method, path, json=HI)
        assert resp.status_code == status
        check_error(resp.json())
    resp = tc.post("/v1/messages", content=b"{nope")
    assert resp.status_code == 400 and check_error(resp.json()).error.type == "invalid_request_error"
    assert "error" in tc.post("/v1/responses", content=b"{nope").json()  # elsewhere: OpenAI's format
    assert "type" not in tc.post("/v1/responses", content=b"{nope").json()


def test_body_too_large() -> None:
    tc, _ = adapter("vllm", {**VLLM, "MODELYARD_MAX_BODY_BYTES": "100"}, Engine())
    with tc:
        resp = tc.post("/v1/messages", json={**HI, "system": "x" * 200})
    assert resp.status_code == 413 and check_error(resp.json()).error.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("status", "sdk_error", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
    ],
)
def test_upstream_errors(engine: Engine, app, status: int, sdk_error: type, kind: str) -> None:
    tc, _ = app
    engine.status = status
    engine.error = {"object": "error", "message": "no", "type": "BadRequestError", "param": None, "code": status}
    with pytest.raises(sdk_error) as caught:
        sdk(tc).messages.create(**HI)
    assert check_error(caught.value.body).error.type == kind


def test_dropped_params_are_named() -> None:
    tc, _ = adapter("vllm", {**VLLM, "MODELYARD_TOLERATE_PARAMS": "container,speed"}, Engine())
    with tc:
        resp = tc.post("/v1/messages", json={**HI, "container": "c", "speed": "fast"})
    assert resp.status_code == 200 and resp.headers["x-modelyard-dropped-params"] == "container,speed"


def test_context_overflow_as_an_empty_message(engine: Engine) -> None:
    engine.status = 400
    engine.error = {"object": "error", "message": "This model's maximum context length is 2048 tokens.", "code": 400}
    tc, _ = adapter("vllm", {**VLLM, "MODELYARD_CONTEXT_OVERFLOW": "incomplete"}, engine)
    with tc:
        message = sdk(tc).messages.create(**HI)
        with sdk(tc).messages.stream(**HI) as stream:
            final = stream.get_final_message()
    assert message.stop_reason == final.stop_reason == "model_context_window_exceeded" and message.content == []


def test_count_tokens_on_vllm(app) -> None:
    tc, script = app
    count = sdk(tc).messages.count_tokens(model="m", messages=HI["messages"], system="S", tools=[WEATHER])
    assert count.input_tokens == 3
    tokenize = json.loads(script.last.content)
    assert script.last.url.path == "/tokenize"
    assert tokenize["messages"][0] == {"role": "system", "content": "S"} and tokenize["add_generation_prompt"] is True
    assert tokenize["tools"][0]["function"]["name"] == "get_weather"
    check_count(tc.post("/v1/messages/count_tokens", json={"model": "m", "messages": HI["messages"]}).json())


def test_count_tokens_elsewhere_says_not_available() -> None:
    tc, _ = adapter("openai", OPENAI, Engine())
    with tc, pytest.raises(anthropic.NotFoundError) as caught:
        sdk(tc).messages.count_tokens(model="m", messages=HI["messages"])
    assert "not available on the openai backend" in caught.value.message


def test_openai_backend_translates_thinking_to_effort() -> None:
    engine = Engine()
    tc, script = adapter("openai", OPENAI, engine)
    with tc:
        sdk(tc).messages.create(**{**HI, "max_tokens": 9000}, thinking={"type": "enabled", "budget_tokens": 5000})
    body = json.loads(script.last.content)
    assert body["reasoning_effort"] == "medium" and script.last.url.path == "/v1/chat/completions"


def test_thinking_from_the_engine() -> None:
    engine = Engine(completion({"content": "Paris.", "reasoning_content": "France's capital."}))
    tc, script = adapter("vllm", VLLM, engine)
    with tc:
        message = sdk(tc).messages.create(
            **{**HI, "max_tokens": 2048}, thinking={"type": "enabled", "budget_tokens": 1024}
        )
        assert sent(script)["chat_template_kwargs"] == {"enable_thinking": True}
        events = raw_events(tc, {**HI, "max_tokens": 2048})
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "France's capital."
    assert [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"] == ["thinking", "text"]


def test_token_data_on_vllm() -> None:
    reply = completion(
        {"content": "Paris."},
        token_ids=[5, 6],
        logprobs={"content": [{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": -0.1}]},
    )
    reply["prompt_token_ids"] = [1, 2, 3]
    tc, script = adapter("vllm", {**VLLM, "MODELYARD_RETURN_TOKEN_IDS": "true"}, Engine(reply))
    with tc:
        body = tc.post("/v1/messages", json=HI).json()
        events = raw_events(tc, HI)
    check_message(body)
    assert (body["prompt_token_ids"], body["generation_token_ids"], body["generation_log_probs"]) == (
        [1, 2, 3],
        [5, 6],
        [-0.5, -0.1],
    )
    assert sent(script)["return_token_ids"] is True and sent(script)["logprobs"] is True
    [delta] = [e for e in events if e["type"] == "message_delta"]
    assert delta["prompt_token_ids"] == [1, 2, 3]
    check_event(delta)
