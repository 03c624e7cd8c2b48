"""Profile openrouter end to end: the openai SDK -> gateway -> adapter -> a stand-in of openrouter.ai/api/v1
that checks the Bearer key, the HTTP-Referer / X-Title attribution headers and the `provider` / `reasoning`
options, streams with `: OPENROUTER PROCESSING` comments and answers errors in OpenRouter's own shape.

The stack comes up twice: /v1/responses through the translation core over chat completions (the default),
and through OpenRouter's stateless native Responses endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from .hosted import CHAT_TOOL, TOOL, Hosted, checked_requests, no_problems, running, standin_config

pytestmark = pytest.mark.integration

KEY = "sk-or-v1-standin-0123456789"
MODEL = "openai/gpt-4o-mini"
ATTRIBUTION = {"referer": "https://modelyard.test", "title": "modelyard tests"}
ROUTING = {"provider": {"order": ["openai", "azure"], "allow_fallbacks": False}, "reasoning": {"effort": "high"}}


@pytest.fixture(scope="module", params=["translate", "native"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosted]:
    env = {
        "OPENROUTER_API_KEY": KEY,
        "OPENROUTER_HTTP_REFERER": ATTRIBUTION["referer"],
        "OPENROUTER_X_TITLE": ATTRIBUTION["title"],
        "OPENROUTER_RESPONSES_MODE": request.param,
        "STANDIN_OPENROUTER_CONFIG": standin_config({"key": KEY, **ATTRIBUTION}),
    }
    with running("openrouter", env, tmp_path_factory.mktemp("openrouter")) as hosted:
        hosted.mode = request.param  # type: ignore[attr-defined]
        yield hosted


@pytest.fixture
def sent(stack: Hosted) -> Iterator[list]:
    yield from checked_requests(stack)


def native(stack: Hosted) -> bool:
    return stack.mode == "native"  # type: ignore[attr-defined]


def test_chat_passes_routing_and_reasoning_through(stack: Hosted, sent: list) -> None:
    reply = stack.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], extra_body=ROUTING
    )
    assert reply.choices[0].message.content == "You said: Hi"
    [req] = stack.requests()
    assert req["path"] == "/api/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {KEY}"
    assert req["headers"]["http-referer"] == ATTRIBUTION["referer"]
    assert req["headers"]["x-title"] == ATTRIBUTION["title"]
    assert req["body"]["provider"] == ROUTING["provider"] and req["body"]["reasoning"] == ROUTING["reasoning"]


def test_chat_stream_with_processing_comments(stack: Hosted, sent: list) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with stack.http() as http, http.stream("POST", "/openrouter/v1/chat/completions", json=body) as raw:
        text = b"".join(raw.iter_raw())
    assert text.startswith(b": OPENROUTER PROCESSING\n\n")  # relayed as sent; SSE clients skip comments
    chunks = list(stack.client().chat.completions.create(**body))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: Hi"


def test_chat_tool_round_trip(stack: Hosted, sent: list) -> None:
    client = stack.client()
    messages = [{"role": "user", "content": "Weather?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[CHAT_TOOL])
    [call] = first.choices[0].message.tool_calls
    history = [*messages, first.choices[0].message.model_dump(exclude_none=True)]
    history.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    final = client.chat.completions.create(model=MODEL, messages=history, tools=[CHAT_TOOL])
    assert final.choices[0].message.content == "The tool said: sunny"


def test_responses_non_streaming_with_routing(stack: Hosted, sent: list) -> None:
    resp = stack.client().responses.create(model=MODEL, input="Hello", extra_body={"provider": ROUTING["provider"]})
    assert resp.output_text == "You said: Hello"
    [req] = stack.requests()
    assert req["path"] == ("/api/v1/responses" if native(stack) else "/api/v1/chat/completions")
    assert req["body"]["provider"] == ROUTING["provider"]


def test_responses_streaming(stack: Hosted, sent: list) -> None:
    with stack.client().responses.stream(model=MODEL, input="Hello there") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == final.output_text


def test_responses_tool_round_trip(stack: Hosted, sent: list) -> None:
    client = stack.client()
    first = client.responses.create(model=MODEL, input="Weather in Paris?", tools=[TOOL], store=False)
    [call] = [o for o in first.output if o.type == "function_call"]
    assert json.loads(call.arguments) == {"city": "Paris"}
    history = [{"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True)]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "sunny"})
    final = client.responses.create(model=MODEL, input=history, tools=[TOOL], store=False)
    assert final.output_text == "The tool said: sunny"


def test_native_mode_keeps_state_in_the_local_store(stack: Hosted) -> None:
    """OpenRouter's Responses API is stateless: with the stack's store (compose sets one), native mode chains
    through it (docs/state.md "Native backends"); without a store the fields are refused by name (unit tests)."""
    if not native(stack):
        pytest.skip("the native Responses mode")
    stack.clear()
    client = stack.client()
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model=MODEL, input="x", previous_response_id="resp_123")
    assert err.value.body["param"] == "previous_response_id" and stack.requests() == []  # never sent
    one = client.responses.create(model=MODEL, input="Hello", store=True)
    two = client.responses.create(model=MODEL, input="Again", previous_response_id=one.id)
    assert two.output_text == "You said: Again" and two.previous_response_id == one.id
    assert client.responses.retrieve(two.id).output_text == two.output_text
    first, second = stack.requests()
    assert first["body"]["store"] is False and second["body"]["store"] is False
    assert "previous_response_id" not in second["body"]
    assert [i.get("role") for i in second["body"]["input"]] == ["user", "assistant", "user"]
    no_problems([first, second])


def test_upstream_provider_error_is_mapped(stack: Hosted) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        stack.client().chat.completions.create(
            model="standin/provider-error", messages=[{"role": "user", "content": "x"}]
        )
    body = err.value.body
    assert set(body) == {"message", "type", "param", "code"} and body["type"] == "invalid_request_error"
    assert "Provider returned error" in body["message"] and "Fireworks" in body["message"]
    assert "maximum context length" in body["message"]


def test_mid_stream_error_reaches_the_client(stack: Hosted) -> None:
    stream = stack.client().chat.completions.create(
        model="standin/mid-stream-error", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError, match="Provider disconnected"):
        list(stream)


def test_wrong_key_is_openai_401_without_the_key(stack: Hosted) -> None:
    with stack.standin_config(key="sk-or-v1-rotated"), pytest.raises(openai.AuthenticationError) as err:
        stack.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    assert set(err.value.body) == {"message", "type", "param", "code"} and KEY not in err.value.message


def test_secrets_stay_out_of_readyz_metrics_and_logs(stack: Hosted) -> None:
    with stack.http() as http:
        ready, metrics = http.get("/openrouter/readyz"), http.get("/openrouter/metrics")
    assert ready.status_code == 200, ready.text
    for text in (ready.text, metrics.text, stack.logs()):
        assert KEY not in text
