"""The Responses API through the running stack (gateway -> adapter -> real vLLM on CPU), as the openai SDK uses it.

Every call goes through the official SDK with strict response validation, and every byte the stack sends
back is recorded on the way in: each Response and each stream event is then checked against the SDK's
types (strictly, no unknown fields) and against the OpenAPI spec, and each stream against the event-order
rules a client relies on. SmolLM2-135M-Instruct is tiny: where a test is about the protocol, the model is
constrained so that the outcome is certain. Tool calls are asked for with a named or required tool_choice
and a strict schema whose string is an enum (vLLM's guided decoding then holds the model to it: a free
string once ran past max_output_tokens), JSON with a json_schema format whose strings have a maxLength,
and every generation is kept short.

Set MODELYARD_STACK_URL (e.g. http://127.0.0.1:8080) to run these against a stack that is already up.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.unit.spec import SPEC, check_echo, check_sdk_event, check_sdk_response, check_spec
from tests.unit.test_translate_stream import check_sequence

from .conftest import free_port

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "Tokyo", "London"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


# -- recording what the stack sends -------------------------------------------------------------------------------
@dataclass
class Exchange:
    method: str
    path: str
    status: int
    headers: httpx.Headers
    body: bytes = b""
    checked: bool = False

    @property
    def is_sse(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[dict[str, Any]]:
        """The SSE events, each `event:` name checked against its data's type."""
        events, name = [], None
        for line in self.body.decode().splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and line != "data: [DONE]":
                event = json.loads(line[6:])
                assert name is None or name == event.get("type"), f"event: {name} carries a {event.get('type')}"
                events.append(event)
                name = None
        return events


class _Tee(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, done: Callable[[bytes], None]) -> None:
        self._inner, self._done, self._pieces = inner, done, []

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._inner:
            self._pieces.append(piece)
            yield piece

    def close(self) -> None:
        self._inner.close()
        self._done(b"".join(self._pieces))


class Recorder(httpx.BaseTransport):
    """An httpx transport that keeps every reply's raw bytes as they came off the wire."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = self._inner.handle_request(request)
        exchange = Exchange(request.method, request.url.path, resp.status_code, resp.headers)

        def done(raw: bytes) -> None:
            exchange.body = gzip.decompress(raw) if resp.headers.get("content-encoding") == "gzip" else raw
            self.exchanges.append(exchange)

        return httpx.Response(
            resp.status_code, headers=resp.headers, stream=_Tee(resp.stream, done), extensions=resp.extensions
        )

    def close(self) -> None:
        self._inner.close()


def check_response(obj: dict[str, Any]) -> None:
    check_sdk_response(obj)
    check_echo(obj)
    if SPEC.exists():  # test_openapi_spec_is_present says when it is not
        check_spec(obj, "Response")


def check_event(obj: dict[str, Any]) -> None:
    check_sdk_event(obj)
    if isinstance(obj.get("response"), dict):
        check_echo(obj["response"])
    if SPEC.exists():
        check_spec(obj, "ResponseStreamEvent")


@dataclass
class SDK:
    client: openai.OpenAI
    recorder: Recorder
    model: str
    streams: list[list[dict[str, Any]]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)

    def check_all(self) -> None:
        """Check every reply recorded since the last call; collect the Responses and streams for the test."""
        for ex in self.recorder.exchanges:
            if ex.checked:
                continue
            ex.checked = True
            if ex.status >= 400:
                error = ex.json()["error"]
                assert set(error) == {"message", "type", "param", "code"} and error["message"], error
            elif ex.path.endswith("/responses") and ex.is_sse:
                events = ex.events()
                for event in events:
                    check_event(event)
                assert events[-1]["type"] in TERMINAL
                check_sequence(events, events[-1]["response"])
                check_response(events[-1]["response"])
                self.streams.append(events)
            elif ex.path.endswith("/responses"):
                response = ex.json()
                check_response(response)
                self.responses.append(response)


@pytest.fixture(scope="module")
def base_url(request: pytest.FixtureRequest) -> str:
    url = os.environ.get("MODELYARD_STACK_URL")
    return url.rstrip("/") if url else request.getfixturevalue("stack").url


def open_sdk(base_url: str) -> Iterator[SDK]:
    recorder = Recorder()
    client = openai.OpenAI(
        base_url=f"{base_url}/v1",
        api_key="not-needed",
        _strict_response_validation=True,
        max_retries=0,
        http_client=httpx.Client(transport=recorder, timeout=120),
    )
    with client:
        sdk = SDK(client, recorder, client.models.list().data[0].id)
        yield sdk
    sdk.check_all()  # what a test left unchecked


@pytest.fixture
def sdk(base_url: str) -> Iterator[SDK]:
    yield from open_sdk(base_url)


@pytest.fixture(scope="module")
def tolerant_adapter(request: pytest.FixtureRequest) -> Iterator[str]:
    """A second vLLM adapter beside the stack's, on the same engine, configured the other way:
    MODELYARD_CONTEXT_OVERFLOW=incomplete and MODELYARD_TOLERATE_PARAMS=background."""
    if os.environ.get("MODELYARD_STACK_URL"):
        pytest.skip("starts an adapter in the session stack's compose project")
    stack = request.getfixturevalue("stack")
    port, name = free_port(), f"{stack.project}-tolerant-adapter"
    settings = ["-e", "MODELYARD_CONTEXT_OVERFLOW=incomplete", "-e", "MODELYARD_TOLERATE_PARAMS=background"]
    settings += ["-e", "MODELYARD_STORE_URL="]  # no store: background is not honoured, so it is tolerated
    run = stack.compose_cmd(
        "run", "-d", "--no-deps", "--name", name, "-p", f"127.0.0.1:{port}:8000", *settings, "adapter-vllm"
    )
    assert run.returncode == 0, run.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            logs = subprocess.run(["docker", "logs", "--tail", "40", name], capture_output=True, text=True)
            pytest.fail(f"the second adapter never got ready: {logs.stdout[-3000:]} {logs.stderr[-3000:]}")
        yield url
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


@pytest.fixture
def tolerant(tolerant_adapter: str) -> Iterator[SDK]:
    yield from open_sdk(tolerant_adapter)


def normalized(response: dict[str, Any]) -> dict[str, Any]:
    """A Response minus what differs between two calls: its id (item ids derive from it) and times."""
    out = {k: v for k, v in response.items() if k not in ("id", "created_at", "completed_at")}
    out["output"] = [{k: v for k, v in item.items() if k != "id"} for item in response["output"]]
    return out


# -- tests ----------------------------------------------------------------------------------------------------------
def test_openapi_spec_is_present() -> None:
    if not SPEC.exists():
        pytest.skip(f"{SPEC} not found (set MODELYARD_OPENAPI_SPEC): replies are checked against the SDK's types only")


def test_create(sdk: SDK) -> None:
    resp = sdk.client.responses.create(
        model=sdk.model,
        instructions="Answer in one short sentence.",
        input="What is the capital of France?",
        max_output_tokens=24,
        temperature=0,
        metadata={"run": "sdk-test"},
    )
    sdk.check_all()
    (raw,) = sdk.responses
    assert raw["id"] == resp.id and raw["object"] == "response"
    assert resp.status in ("completed", "incomplete") and resp.output_text.strip()
    assert (resp.instructions, resp.temperature, resp.max_output_tokens) == ("Answer in one short sentence.", 0, 24)
    assert resp.metadata == {"run": "sdk-test"} and resp.model == sdk.model
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens > 0


def test_stream_ends_in_the_response_a_create_returns(sdk: SDK) -> None:
    request = {"model": sdk.model, "input": "Name three colors.", "max_output_tokens": 20, "temperature": 0}
    with sdk.client.responses.stream(**request) as stream:
        events = list(stream)
        final = stream.get_final_response()
    sdk.client.responses.create(**request)
    sdk.check_all()
    (raw_events,) = sdk.streams
    (twin,) = sdk.responses
    types = [e.type for e in events]
    assert types == [e["type"] for e in raw_events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    message = [
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * types.count("response.output_text.delta"),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert types == ["response.created", "response.in_progress", *message, types[-1]]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert types.count("response.output_text.delta") > 1, "streamed token by token, not in one piece"
    # get_final_response() is the terminal event's Response, and that is what a non-streamed call returns.
    assert final.model_dump(mode="json") == type(final).model_validate(raw_events[-1]["response"]).model_dump(
        mode="json"
    )
    assert final.id == raw_events[0]["response"]["id"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == final.output_text
    assert normalized(raw_events[-1]["response"]) == normalized(twin)


class Person(BaseModel):
    name: str = Field(max_length=24)  # a name cannot run past max_output_tokens
    age: int


def test_parse_with_a_pydantic_model(sdk: SDK) -> None:
    resp = sdk.client.responses.parse(
        model=sdk.model,
        input="Give the name and age of a fictional person.",
        text_format=Person,
        max_output_tokens=64,
        temperature=0,
    )
    sdk.check_all()
    assert resp.status == "completed"
    person = resp.output_parsed
    assert isinstance(person, Person) and person.name and person.age >= 0
    fmt = sdk.responses[0]["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["name"] == "Person" and fmt["strict"] is True
    assert set(fmt["schema"]["properties"]) == {"name", "age"}


def test_two_turn_tool_loop(sdk: SDK) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = sdk.client.responses.create(
        model=sdk.model,
        input=[question],
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=80,
        temperature=0,
    )
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    args = json.loads(call.arguments)
    assert set(args) == {"city"} and isinstance(args["city"], str)
    assert first.tool_choice.type == "function" and first.tool_choice.name == "get_weather"

    result = {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"temp_c": 18})}
    second = sdk.client.responses.create(
        model=sdk.model,
        instructions="Answer in one short sentence using the tool result.",
        input=[question, *first.output, result],  # the first turn's items, sent back as they came
        tools=[WEATHER],
        tool_choice="none",  # an answer, not another call: the outcome is certain
        max_output_tokens=32,
        temperature=0,
    )
    sdk.check_all()
    assert [item.type for item in second.output] == ["message"]
    assert second.output_text.strip() and "<tool_call>" not in second.output_text
    assert second.id != first.id
    assert second.usage.input_tokens > first.usage.input_tokens  # the call and its result reached the model


def test_stream_with_a_tool_call(sdk: SDK) -> None:
    with sdk.client.responses.stream(
        model=sdk.model,
        input="What is the weather in Tokyo?",
        tools=[WEATHER],
        tool_choice="required",
        max_output_tokens=80,
        temperature=0,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    sdk.check_all()
    types = [e.type for e in events]
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert deltas, "arguments are streamed as they are generated"
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * len(deltas),
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (item,) = final.output
    assert "".join(e.delta for e in deltas) == done.arguments == item.arguments
    assert {e.item_id for e in [*deltas, done]} == {item.id} and item.name == "get_weather"
    assert set(json.loads(item.arguments)) == {"city"}
    assert not any(e.type == "response.output_text.delta" for e in events), "no tool-call markup as text"


def test_max_output_tokens_truncation_is_incomplete(sdk: SDK) -> None:
    request = {"model": sdk.model, "input": "Write a long story about a dragon.", "max_output_tokens": 4}
    resp = sdk.client.responses.create(**request, temperature=0)
    with sdk.client.responses.stream(**request, temperature=0) as stream:
        events = list(stream)  # get_final_response() wants a response.completed: the SDK's rule
    sdk.check_all()
    assert events[-1].type == "response.incomplete"
    for response in (resp, events[-1].response):
        assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
        assert response.usage.output_tokens == 4 and response.output[-1].status == "incomplete"


def test_input_too_long_for_the_model_is_a_400(sdk: SDK) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.client.responses.create(model=sdk.model, input="hello " * 2100, max_output_tokens=4)
    sdk.check_all()
    assert info.value.code == "context_length_exceeded" and info.value.param == "input"
    assert "context" in info.value.message


def test_unsupported_param_is_a_400_naming_it(sdk: SDK) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        # background is honoured now that the stack stores responses (docs/state.md); prompt templates are not
        sdk.client.responses.create(model=sdk.model, input="Hi", prompt={"id": "pmpt_1"}, max_output_tokens=4)
    sdk.check_all()
    assert info.value.param == "prompt" and info.value.code == "unsupported_parameter"


def test_chat_completions_stream_passes_through_chunk_by_chunk(sdk: SDK) -> None:
    stream = sdk.client.chat.completions.create(
        model=sdk.model,
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"min_tokens": 12},  # vLLM's: exactly 12 tokens, whatever the model would stop at
    )
    chunks = list(stream)
    sdk.check_all()
    (exchange,) = [ex for ex in sdk.recorder.exchanges if ex.path.endswith("/chat/completions")]
    assert exchange.is_sse and exchange.body.endswith(b"data: [DONE]\n\n")
    raw = exchange.events()
    assert [c.model_dump(mode="json", exclude_unset=True)["id"] for c in chunks] == [r["id"] for r in raw]
    assert all(r["object"] == "chat.completion.chunk" and r["id"].startswith("chatcmpl-") for r in raw)
    # vLLM sends one chunk per generated token; the stack passes each on as its own event, unmerged.
    content = [r for r in raw if r["choices"] and r["choices"][0]["delta"].get("content")]
    assert len(content) == raw[-1]["usage"]["completion_tokens"] == 12
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()


def test_overflow_as_incomplete_and_tolerated_params(tolerant: SDK) -> None:
    request = {"model": tolerant.model, "input": "hello " * 2100, "max_output_tokens": 4, "background": True}
    raw = tolerant.client.responses.with_raw_response.create(**request)
    resp = raw.parse()
    with tolerant.client.responses.with_streaming_response.create(**request, stream=True) as streamed:
        events = [e.type for e in streamed.parse()]
    tolerant.check_all()
    assert resp.status == "incomplete" and resp.output == [] and resp.incomplete_details.reason == "max_output_tokens"
    assert resp.background is False
    assert events == ["response.created", "response.in_progress", "response.incomplete"]
    assert raw.headers["x-modelyard-dropped-params"] == streamed.headers["x-modelyard-dropped-params"] == "background"
    # What fits is answered as usual.
    ok = tolerant.client.responses.create(model=tolerant.model, input="Hi", max_output_tokens=4, background=True)
    tolerant.check_all()
    assert ok.output_text and ok.usage.output_tokens <= 4
