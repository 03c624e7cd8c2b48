"""Profile openai end to end: the openai SDK -> gateway -> adapter -> a stand-in of api.openai.com that checks
each request as OpenAI would (path, Bearer key, organization/project headers, body) and answers in OpenAI's
documented shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from .hosted import TOOL, Hosted, checked_requests, no_problems, running, standin_config

pytestmark = pytest.mark.integration

KEY = "sk-standin-openai-0123456789"
MODEL = "gpt-4.1-mini"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosted]:
    env = {
        "OPENAI_API_KEY": KEY,
        "OPENAI_ORGANIZATION": "org-standin",
        "OPENAI_PROJECT": "proj_standin",
        "POLICY_MODEL_NAME": MODEL,
        "STANDIN_OPENAI_CONFIG": standin_config({"key": KEY, "organization": "org-standin", "project": "proj_standin"}),
    }
    with running("openai", env, tmp_path_factory.mktemp("openai")) as hosted:
        yield hosted


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosted]:
    """The same stack with MODELYARD_NATIVE_STATE=local: chains and stored responses in the local store."""
    env = {
        "OPENAI_API_KEY": KEY,
        "POLICY_MODEL_NAME": MODEL,
        "MODELYARD_NATIVE_STATE": "local",
        "STANDIN_OPENAI_CONFIG": standin_config({"key": KEY}),
    }
    with running("openai", env, tmp_path_factory.mktemp("openai-local")) as hosted:
        yield hosted


@pytest.fixture
def sent(stack: Hosted) -> Iterator[list]:
    yield from checked_requests(stack)


def test_responses_non_streaming(stack: Hosted, sent: list) -> None:
    resp = stack.client().responses.create(model=MODEL, input="Hello", max_output_tokens=50)
    assert resp.output_text == "You said: Hello" and resp.status == "completed"
    [req] = stack.requests()
    assert (req["method"], req["path"]) == ("POST", "/v1/responses")
    assert req["headers"]["authorization"] == f"Bearer {KEY}"
    assert req["headers"]["openai-organization"] == "org-standin"
    assert req["headers"]["openai-project"] == "proj_standin"
    assert req["body"] == {"model": MODEL, "input": "Hello", "max_output_tokens": 50}


def test_responses_streaming_is_relayed_event_by_event(stack: Hosted, sent: list) -> None:
    with stack.client().responses.stream(model=MODEL, input="Hello there") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == final.output_text
    # The relay keeps OpenAI's framing: `event:` lines and all.
    with (
        stack.http() as http,
        http.stream("POST", "/openai/v1/responses", json={"model": MODEL, "input": "x", "stream": True}) as raw,
    ):
        assert raw.headers["content-type"].startswith("text/event-stream")
        body = b"".join(raw.iter_raw())
    assert body.startswith(b"event: response.created\ndata: {")


def test_tool_call_round_trip(stack: Hosted, sent: list) -> None:
    client = stack.client()
    first = client.responses.create(model=MODEL, input="Weather in Paris?", tools=[TOOL])
    [call] = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    # Stateless: the whole history as input.
    history = [{"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True)]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "sunny"})
    assert client.responses.create(model=MODEL, input=history, tools=[TOOL]).output_text == "The tool said: sunny"
    # Stateful: OpenAI keeps the first response, so previous_response_id works through the relay.
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "rainy"}
    again = client.responses.create(model=MODEL, previous_response_id=first.id, input=[output], tools=[TOOL])
    assert again.output_text == "The tool said: rainy" and again.previous_response_id == first.id


def test_stored_responses_get_items_cancel_delete(stack: Hosted, sent: list) -> None:
    client = stack.client()
    resp = client.responses.create(model=MODEL, input="Remember me")
    assert client.responses.retrieve(resp.id).output_text == "You said: Remember me"
    items = client.responses.input_items.list(resp.id, limit=5)
    assert items.data[0].type == "message" and items.first_id == items.data[0].id
    background = client.responses.create(model=MODEL, input="Long job", background=True)
    assert client.responses.cancel(background.id).status == "cancelled"
    client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    paths = [(r["method"], r["path"], r["query"]) for r in stack.requests()]
    assert ("GET", f"/v1/responses/{resp.id}/input_items", {"limit": "5"}) in paths
    assert ("POST", f"/v1/responses/{background.id}/cancel", {}) in paths
    assert ("DELETE", f"/v1/responses/{resp.id}", {}) in paths


def test_input_tokens_and_compact_are_relayed(stack: Hosted, sent: list) -> None:
    client = stack.client()
    count = client.responses.input_tokens.count(
        model=MODEL, input="Hello there", instructions="Be brief.", tools=[TOOL]
    )
    assert count.object == "response.input_tokens" and count.input_tokens == 4  # the stand-in counts words
    # Read raw: the strict SDK's CompactedResponse type has no place for the user messages OpenAI returns.
    raw = client.responses.with_raw_response.compact(model=MODEL, input=[{"role": "user", "content": "Hello"}])
    compacted = raw.http_response.json()
    assert compacted["object"] == "response.compaction" and compacted["output"][-1]["type"] == "compaction"
    with stack.http() as http:
        bogus = http.post("/openai/v1/responses/nope", json={})
    assert bogus.status_code == 404 and bogus.json()["error"]["code"] == "unknown_url"
    counted, compact = stack.requests()
    assert (counted["method"], counted["path"]) == ("POST", "/v1/responses/input_tokens")
    assert counted["body"] == {"model": MODEL, "input": "Hello there", "instructions": "Be brief.", "tools": [TOOL]}
    assert counted["headers"]["authorization"] == f"Bearer {KEY}"
    assert counted["headers"]["openai-project"] == "proj_standin"
    assert (compact["path"], compact["body"]) == (
        "/v1/responses/compact",
        {"model": MODEL, "input": [{"role": "user", "content": "Hello"}]},
    )


def test_chat_completions_plain_streamed_and_with_tools(stack: Hosted, sent: list) -> None:
    client = stack.client()
    messages = [{"role": "user", "content": "Hi"}]
    assert client.chat.completions.create(model=MODEL, messages=messages).choices[0].message.content == "You said: Hi"
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: Hi"
    assert chunks[-1].usage.total_tokens > 0
    tool = {"type": "function", "function": {k: v for k, v in TOOL.items() if k != "type"}}
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[tool]).choices[0].message
    [call] = first.tool_calls
    history = [*messages, first.model_dump(exclude_none=True)]
    history.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    final = client.chat.completions.create(model=MODEL, messages=history, tools=[tool])
    assert final.choices[0].message.content == "The tool said: sunny"


def test_models_and_the_model_pin(stack: Hosted, sent: list) -> None:
    client = stack.client()
    assert [m.id for m in client.models.list().data] == ["gpt-4.1-mini", "o4-mini"]
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="o4-mini", input="x")
    assert err.value.body["param"] == "model"
    assert all(r["body"] is None or r["body"].get("model") == MODEL for r in stack.requests())


def test_wrong_key_is_openai_401_without_the_key(stack: Hosted) -> None:
    with stack.standin_config(key="sk-rotated-elsewhere"):  # our key is now wrong at the provider
        with pytest.raises(openai.AuthenticationError) as err:
            stack.client().responses.create(model=MODEL, input="x")
        with stack.http() as http:
            raw = http.post("/openai/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    assert raw.status_code == 401 and set(raw.json()["error"]) == {"message", "type", "param", "code"}
    for text in (err.value.message, raw.text):
        assert KEY not in text and KEY[:8] not in text and "****" not in text  # OpenAI echoes it masked


def test_secrets_stay_out_of_readyz_metrics_and_logs(stack: Hosted) -> None:
    with stack.http() as http:
        ready, metrics = http.get("/openai/readyz"), http.get("/openai/metrics")
    assert ready.status_code == 200
    for text in (ready.text, metrics.text, stack.logs()):
        assert KEY not in text


def test_local_native_state_chains_through_the_local_store(local_stack: Hosted) -> None:
    local_stack.clear()
    client = local_stack.client()
    one = client.responses.create(model=MODEL, input="Capital of France?")
    two = client.responses.create(model=MODEL, input="And of Spain?", previous_response_id=one.id)
    assert two.output_text == "You said: And of Spain?" and two.previous_response_id == one.id and two.store
    assert client.responses.retrieve(two.id).output_text == two.output_text
    items = client.responses.input_items.list(two.id)
    assert [i.content[0].text for i in items.data] == ["And of Spain?"]
    client.responses.delete(two.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(two.id)
    seen = local_stack.requests()
    assert [(r["method"], r["path"]) for r in seen] == [("POST", "/v1/responses")] * 2  # the rest served here
    second = seen[1]["body"]
    assert second["store"] is False and "previous_response_id" not in second
    texts = [i["content"] if isinstance(i["content"], str) else i["content"][0]["text"] for i in second["input"]]
    assert texts == ["Capital of France?", "You said: Capital of France?", "And of Spain?"]
    no_problems(seen)
