"""Anthropic's Messages API through the running stack, as the anthropic SDK uses it: the cpu stack (gateway ->
vLLM adapter -> the real vLLM CPU engine), and the openrouter profile against its stand-in (a chat-bridged
hosted backend). Every reply and every stream event is checked against the SDK's types (strictly, no
unknown fields) and every stream against the event order a client relies on.

SmolLM2-135M-Instruct is tiny: the tool turn is forced (`tool_choice` of type tool) with an enum schema so
the engine holds the model to it, and the assertions are about the protocol, not the text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.unit.anthropic_spec import check_count, check_error, check_event, check_message, check_sequence

from .conftest import Stack
from .hosted import Hosted, checked_requests, running, standin_config

pytestmark = pytest.mark.integration

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "London", "Tokyo"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
STOPS = ("end_turn", "max_tokens", "stop_sequence", "tool_use")


def client(url: str, key: str = "not-needed") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=300)


def raw_events(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A streamed reply's events as they came over the wire, each `event:` name matching its data, each valid."""
    events, name = [], None
    with httpx.stream("POST", f"{url}/v1/messages", json={**body, "stream": True}, headers=headers, timeout=300) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert event["type"] == name
                check_event(event)
                events.append(event)
    check_sequence(events)
    return events


# -- the cpu stack: the real engine ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cpu(stack: Stack) -> str:
    return stack.url


@pytest.mark.parametrize("prefix", ["", "/vllm"])
def test_plain(cpu: str, model: str, prefix: str) -> None:
    raw = client(f"{cpu}{prefix}").messages.with_raw_response.create(
        model=model, max_tokens=24, system="Answer briefly.", messages=[{"role": "user", "content": "Hi"}]
    )
    message = check_message(json.loads(raw.text()))
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert [b.type for b in message.content] == ["text"] and message.content[0].text
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 24


def test_streamed_accumulates_the_final_message(cpu: str, model: str) -> None:
    body = {"model": model, "max_tokens": 24, "messages": [{"role": "user", "content": "Name a colour."}]}
    with client(cpu).messages.stream(**body) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == final.content[0].text
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0
    assert final.usage.input_tokens > 0  # from message_delta: a chat stream says usage at its end
    events = raw_events(cpu, body)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"


def test_stop_sequences_and_max_tokens(cpu: str, model: str) -> None:
    short = client(cpu).messages.create(model=model, max_tokens=2, messages=[{"role": "user", "content": "Count to 9"}])
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 2
    question = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    stopped = client(cpu).messages.create(
        model=model, max_tokens=32, messages=question, stop_sequences=["Paris"], extra_body={"temperature": 0}
    )
    if "Paris" in "".join(b.text for b in stopped.content if b.type == "text"):
        pytest.fail("the stop sequence was generated")
    assert stopped.stop_reason in ("stop_sequence", "end_turn", "max_tokens")
    if stopped.stop_reason == "stop_sequence":
        assert stopped.stop_sequence == "Paris"


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_then_tool_result(cpu: str, model: str, stream: bool) -> None:
    sdk = client(cpu)
    forced = {
        "model": model,
        "max_tokens": 200,
        "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    }
    if stream:
        with sdk.messages.stream(messages=ASK, **forced) as s:
            first = s.get_final_message()
        raw_events(cpu, {**forced, "messages": ASK})
    else:
        first = check_message(json.loads(sdk.messages.with_raw_response.create(messages=ASK, **forced).text()))
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input["city"] in ("Paris", "London", "Tokyo") and use.id
    result = {"type": "tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": "Sunny, 21 C"}]}
    turns = [*ASK, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}]
    final = sdk.messages.create(
        model=model, max_tokens=32, tools=[WEATHER], tool_choice={"type": "none"}, messages=turns
    )
    assert final.stop_reason in ("end_turn", "max_tokens") and final.content[0].type == "text"
    failed = {**result, "is_error": True, "content": "The weather service is down."}
    again = sdk.messages.create(
        model=model, max_tokens=200, tools=[WEATHER], tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[*turns[:2], {"role": "user", "content": [failed]}],
    )  # fmt: skip
    assert again.stop_reason == "tool_use" and len([b for b in again.content if b.type == "tool_use"]) == 1


def test_count_tokens(cpu: str, model: str) -> None:
    """The engine's own count: what the same request's reply reports as its input tokens."""
    sdk = client(cpu)
    for extra in ({}, {"system": "Answer briefly.", "tools": [WEATHER]}):
        count = sdk.messages.count_tokens(model=model, messages=ASK, **extra)
        reply = sdk.messages.create(model=model, max_tokens=1, messages=ASK, **extra)
        assert count.input_tokens == reply.usage.input_tokens > 0
    with httpx.Client(base_url=cpu, timeout=60) as http:
        check_count(http.post("/v1/messages/count_tokens", json={"model": model, "messages": ASK}).json())


def test_errors_in_anthropics_format(cpu: str, model: str) -> None:
    sdk = client(cpu)
    with pytest.raises(anthropic.BadRequestError) as err:
        sdk.messages.create(model=model, max_tokens=8, messages=ASK, extra_body={"temperature": 3})
    assert check_error(err.value.body).error.type == "invalid_request_error" and "temperature" in err.value.message
    with pytest.raises(anthropic.BadRequestError) as err:
        sdk.messages.create(model=model, max_tokens=8, messages=ASK, extra_body={"container": "c1"})
    assert "container" in err.value.message
    with pytest.raises(anthropic.BadRequestError) as err:  # the engine's own refusal, in Anthropic's format
        sdk.messages.create(model=model, max_tokens=8, messages=[{"role": "user", "content": "x " * 5000}])
    check_error(err.value.body)


# -- a chat-bridged hosted backend: OpenRouter's stand-in, keys checked at the gateway -------------------------
OR_KEY = "sk-or-v1-standin-0123456789"
GATEWAY_KEY = "sk-gw-anthropic-0123"


@pytest.fixture(scope="module")
def openrouter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosted]:
    env = {
        "OPENROUTER_API_KEY": OR_KEY,
        "GATEWAY_API_KEYS": GATEWAY_KEY,
        "STANDIN_OPENROUTER_CONFIG": standin_config({"key": OR_KEY}),
    }
    with running("openrouter", env, tmp_path_factory.mktemp("openrouter-messages")) as hosted:
        yield hosted


@pytest.fixture
def sent(openrouter: Hosted) -> Iterator[list]:
    yield from checked_requests(openrouter)


MODEL = "anthropic/claude-sonnet-4"


def test_openrouter_x_api_key_at_the_gateway(openrouter: Hosted) -> None:
    reply = client(openrouter.url, GATEWAY_KEY).messages.create(model=MODEL, max_tokens=32, messages=ASK)
    assert reply.content[0].text == f"You said: {ASK[0]['content']}"
    with pytest.raises(anthropic.AuthenticationError):
        client(openrouter.url, "sk-not-our-key-000").messages.create(model=MODEL, max_tokens=8, messages=ASK)
    bearer = anthropic.Anthropic(base_url=openrouter.url, auth_token=GATEWAY_KEY, max_retries=0)
    assert bearer.messages.create(model=MODEL, max_tokens=8, messages=ASK).stop_reason == "end_turn"


def test_openrouter_plain_streamed_and_thinking(openrouter: Hosted, sent: list) -> None:
    sdk = client(f"{openrouter.url}/openrouter", GATEWAY_KEY)
    body = {"model": MODEL, "max_tokens": 4096, "messages": ASK, "thinking": {"type": "enabled", "budget_tokens": 2048}}
    plain = check_message(json.loads(sdk.messages.with_raw_response.create(**body).text()))
    with sdk.messages.stream(**body) as stream:
        final = stream.get_final_message()
    assert plain.content[0].text == final.content[0].text == f"You said: {ASK[0]['content']}"
    assert final.usage.input_tokens == plain.usage.input_tokens > 0
    raw_events(f"{openrouter.url}/openrouter", body, {"x-api-key": GATEWAY_KEY})
    requests = openrouter.requests()
    assert requests and all(r["path"] == "/api/v1/chat/completions" for r in requests)
    assert all(r["body"]["reasoning"] == {"max_tokens": 2048} for r in requests)


def test_openrouter_tool_loop(openrouter: Hosted, sent: list) -> None:
    sdk = client(openrouter.url, GATEWAY_KEY)
    first = sdk.messages.create(model=MODEL, max_tokens=64, messages=ASK, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.input == {"city": "Paris"}
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}
    turns = [*ASK, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}]
    with sdk.messages.stream(model=MODEL, max_tokens=64, messages=turns, tools=[WEATHER]) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "The tool said: sunny" and final.stop_reason == "end_turn"
    last = openrouter.requests()[-1]["body"]["messages"]
    assert last[-1] == {"role": "tool", "tool_call_id": use.id, "content": "sunny"}


def test_openrouter_count_tokens_is_not_available(openrouter: Hosted) -> None:
    with pytest.raises(anthropic.NotFoundError) as err:
        client(openrouter.url, GATEWAY_KEY).messages.count_tokens(model=MODEL, messages=ASK)
    check_error(err.value.body)
