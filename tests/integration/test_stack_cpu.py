"""The embedded default (profile cpu) end to end: gateway (nginx) -> adapter -> real vLLM on CPU.

Every call goes through the gateway with the official openai SDK, validating replies strictly.
"""

from __future__ import annotations

import uuid

import openai
import pytest

from .conftest import Stack, logged

pytestmark = pytest.mark.integration


def test_models_lists_the_embedded_model(stack: Stack) -> None:
    ids = [m.id for m in stack.client().models.list().data]
    assert ids == ["SmolLM2-135M-Instruct"]


def test_responses_create_answers_from_the_real_model(stack: Stack, model: str) -> None:
    resp = stack.client().responses.create(
        model=model, input="What is the capital of France?", max_output_tokens=24, temperature=0
    )
    assert resp.object == "response"
    assert resp.id.startswith("resp_")
    assert resp.model == model
    assert resp.status in ("completed", "incomplete")
    assert resp.output_text.strip(), resp
    assert resp.usage.input_tokens > 5
    assert 0 < resp.usage.output_tokens <= 24
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    # Greedy decoding on the same engine is deterministic: the same question gives the same answer.
    again = stack.client().responses.create(
        model=model, input="What is the capital of France?", max_output_tokens=24, temperature=0
    )
    assert again.output_text == resp.output_text
    assert again.id != resp.id


def test_responses_length_limit_is_reported_as_incomplete(stack: Stack, model: str) -> None:
    resp = stack.client().responses.create(
        model=model, input="Write a long story about a dragon.", max_output_tokens=3, temperature=0
    )
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.usage.output_tokens == 3


def test_responses_stream_matches_final_response(stack: Stack, model: str) -> None:
    with stack.client().responses.stream(
        model=model, input="Name three colors.", max_output_tokens=24, temperature=0
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] in ("response.completed", "response.incomplete")
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert len([t for t in types if t == "response.output_text.delta"]) > 1, "streamed in one piece"
    assert deltas == final.output_text and final.output_text.strip()
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_chat_completions_pass_through(stack: Stack, model: str) -> None:
    chat = stack.client().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    choice = chat.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert len(choice.logprobs.content) == chat.usage.completion_tokens
    assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)


def test_chat_completions_stream_chunk_by_chunk(stack: Stack, model: str) -> None:
    stream = stack.client().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3 and text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_responses_input_tokens_is_the_engines_count(stack: Stack, model: str) -> None:
    """The count is vLLM's /tokenize of the chat-templated messages the request translates to, and what
    the same request's generation reports as its input tokens."""
    client = stack.client()
    ask = {"model": model, "input": "What is the capital of France?", "instructions": "Answer briefly."}
    count = client.responses.input_tokens.count(**ask)
    messages = [{"role": "system", "content": ask["instructions"]}, {"role": "user", "content": ask["input"]}]
    with stack.http() as http:
        tokenized = http.post(
            "/v1/tokenize", json={"model": model, "messages": messages, "add_generation_prompt": True}
        )
    assert tokenized.status_code == 200, tokenized.text
    assert count.object == "response.input_tokens" and count.input_tokens == len(tokenized.json()["tokens"]) > 5
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    for extra in ({}, {"tools": [tool], "tool_choice": "none"}):
        counted = client.responses.input_tokens.count(**ask, **extra).input_tokens
        reply = client.responses.create(**ask, **extra, max_output_tokens=16, temperature=0)
        assert counted == reply.usage.input_tokens


def test_responses_compact_and_unknown_sub_routes_are_refused(stack: Stack, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        stack.client().responses.compact(model=model, input="Hello")
    assert err.value.code == "unsupported_endpoint" and "vllm backend" in err.value.message
    with stack.http() as http:
        resp = http.post("/v1/responses/resp_nope", json={})
    assert resp.status_code == 404 and set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert resp.json()["error"]["code"] == "unknown_url"


def test_backend_path_reaches_the_same_adapter(stack: Stack, model: str) -> None:
    resp = stack.client("/vllm").responses.create(model=model, input="Hi", max_output_tokens=4)
    assert resp.output_text


def test_gateway_health_and_request_ids(stack: Stack) -> None:
    with stack.http() as http:
        health = http.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok", "service": "modelyard-gateway"}
        assert health.headers["x-request-id"]
        rid = f"test-{uuid.uuid4()}"
        resp = http.get("/v1/models", headers={"x-request-id": rid})
        assert resp.status_code == 200 and resp.headers["x-request-id"] == rid
        ready = http.get("/vllm/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        logs = logged(lambda: stack.compose_cmd("logs", "gateway").stdout, f'"request_id":"{rid}"')
        assert f'"request_id":"{rid}"' in logs


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/nowhere", None, 404, "unknown_url"),
        ("GET", "/openai/v1/models", None, 502, "backend_unavailable"),  # profile not running
        ("POST", "/v1/responses", b"{not json", 400, "invalid_json"),
        ("POST", "/v1/responses", b"[1, 2]", 400, "invalid_type"),
        ("POST", "/v1/chat/completions", b"{not json", 400, "invalid_json"),
        ("GET", "/v1/responses", None, 405, "method_not_allowed"),
    ],
)
def test_errors_are_openai_format(
    stack: Stack, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    with stack.http() as http:
        resp = http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code and err["message"]


def test_unknown_model_is_a_clear_404_from_the_engine(stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        stack.client().responses.create(model="no-such-model", input="Hi", max_output_tokens=4)
    assert "no-such-model" in info.value.message
