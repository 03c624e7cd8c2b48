"""Profile azure end to end, in both URL forms and both auth modes: the openai SDK -> gateway -> adapter -> a
stand-in Azure OpenAI resource that checks the URL form, api-version, `api-key` or Entra ID bearer, the
deployment, and refuses what Azure refuses (chat-shaped tools on /responses, tool items without status,
max_tokens for reasoning deployments).

The stack comes up twice: v1 URLs with an `api-key`, and dated URLs with an Entra ID token file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from .hosted import CHAT_TOOL, TOOL, Hosted, checked_requests, running, standin_config

pytestmark = pytest.mark.integration

KEY = "azure-standin-key-0123456789"
TOKENS = ["entra-token-1", "entra-token-2"]
DEPLOYMENTS = {"gpt-4o-mini": "gpt-4o-mini-dep", "o4-mini": "o4-mini-dep"}
FORMS = {
    "v1-api-key": {"AZURE_OPENAI_URL_STYLE": "v1", "AZURE_OPENAI_API_KEY": KEY},
    "dated-entra-token-file": {
        "AZURE_OPENAI_URL_STYLE": "dated",
        "AZURE_OPENAI_API_VERSION": "2025-04-01-preview",
        "AZURE_OPENAI_AD_TOKEN_FILE": "/run/azure-token/token",
    },
}


def write_token(directory: Path, token: str) -> None:
    tmp = directory / "token.tmp"
    tmp.write_text(token + "\n")
    tmp.chmod(0o644)  # the adapter runs as an unprivileged user
    os.replace(tmp, directory / "token")  # as a renewing sidecar would: a new file in one step


@pytest.fixture(scope="module", params=list(FORMS))
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosted]:
    tmp = tmp_path_factory.mktemp("azure")
    token_dir = tmp / "token"
    token_dir.mkdir()
    token_dir.chmod(0o755)
    write_token(token_dir, TOKENS[0])
    env = {
        **FORMS[request.param],
        "AZURE_OPENAI_DEPLOYMENT_MAP": json.dumps(DEPLOYMENTS),
        "AZURE_TOKEN_DIR": str(token_dir),
        "STANDIN_AZURE_CONFIG": standin_config({"key": KEY, "tokens": TOKENS[:1]}),
    }
    with running("azure", env, tmp) as hosted:
        hosted.form = request.param  # type: ignore[attr-defined]
        hosted.token_dir = token_dir  # type: ignore[attr-defined]
        yield hosted


@pytest.fixture
def sent(stack: Hosted) -> Iterator[list]:
    yield from checked_requests(stack)


def dated(stack: Hosted) -> bool:
    return stack.form.startswith("dated")  # type: ignore[attr-defined]


def check_auth(stack: Hosted, req: dict) -> None:
    if dated(stack):
        assert req["headers"]["authorization"] == f"Bearer {TOKENS[0]}" and "api-key" not in req["headers"]
        assert req["query"] == {"api-version": "2025-04-01-preview"}
    else:
        assert req["headers"]["api-key"] == KEY and "authorization" not in req["headers"]
        assert req["query"] == {}


def test_responses_non_streaming(stack: Hosted, sent: list) -> None:
    resp = stack.client().responses.create(model="gpt-4o-mini", input="Hello")
    assert resp.output_text == "You said: Hello" and resp.model == "gpt-4o-mini-dep"
    [req] = stack.requests()
    assert req["path"] == ("/openai/responses" if dated(stack) else "/openai/v1/responses")
    assert req["body"] == {"model": "gpt-4o-mini-dep", "input": "Hello"}
    check_auth(stack, req)


def test_responses_streaming(stack: Hosted, sent: list) -> None:
    with stack.client().responses.stream(model="gpt-4o-mini", input="Hello there") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == final.output_text


def test_responses_tool_round_trip_with_azure_quirks(stack: Hosted, sent: list) -> None:
    client = stack.client()
    # A chat-shaped (nested) tool, as many clients send: Azure's /responses wants it flat.
    first = client.responses.create(model="gpt-4o-mini", input="Weather in Paris?", tools=[CHAT_TOOL])
    [call] = [o for o in first.output if o.type == "function_call"]
    assert json.loads(call.arguments) == {"city": "Paris"}
    # Replayed items without status, which Azure refuses: the adapter completes them.
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    assert client.responses.create(model="gpt-4o-mini", input=history, tools=[TOOL]).output_text == (
        "The tool said: sunny"
    )
    bodies = [r["body"] for r in stack.requests()]
    assert bodies[0]["tools"][0]["name"] == "get_weather" and "function" not in bodies[0]["tools"][0]
    assert [i.get("status") for i in bodies[1]["input"][1:]] == ["completed", "completed"]


def test_stored_response_retrieved(stack: Hosted, sent: list) -> None:
    client = stack.client()
    resp = client.responses.create(model="gpt-4o-mini", input="Keep this")
    assert client.responses.retrieve(resp.id).id == resp.id
    assert stack.requests()[-1]["path"].endswith(f"/responses/{resp.id}")


def test_input_tokens_and_compact_are_relayed_in_azures_url_form(stack: Hosted, sent: list) -> None:
    client = stack.client()
    count = client.responses.input_tokens.count(model="gpt-4o-mini", input="Hello there", tools=[CHAT_TOOL])
    assert count.input_tokens == 2  # the stand-in counts words
    raw = client.responses.with_raw_response.compact(model="gpt-4o-mini", input="Hello")
    assert raw.http_response.json()["output"][-1]["type"] == "compaction"
    prefix = "/openai/responses" if dated(stack) else "/openai/v1/responses"
    counted, compact = stack.requests()
    assert counted["path"] == f"{prefix}/input_tokens" and compact["path"] == f"{prefix}/compact"
    assert counted["body"]["model"] == compact["body"]["model"] == "gpt-4o-mini-dep"
    assert counted["body"]["tools"][0]["name"] == "get_weather"  # flat, as Azure's Responses API wants it
    check_auth(stack, counted)
    check_auth(stack, compact)


def test_chat_completions_url_form_usage_and_reasoning_tokens(stack: Hosted, sent: list) -> None:
    client = stack.client()
    messages = [{"role": "user", "content": "Hi"}]
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert reply.choices[0].message.content == "You said: Hi"
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: Hi"
    # Usage is asked for upstream (counted per key) but not sent to a client that did not ask for it.
    assert all(c.usage is None for c in chunks)
    # A reasoning deployment refuses max_tokens: the adapter sends max_completion_tokens.
    client.chat.completions.create(model="o4-mini", messages=messages, max_tokens=20)
    reqs = stack.requests()
    path = "/openai/deployments/gpt-4o-mini-dep/chat/completions" if dated(stack) else "/openai/v1/chat/completions"
    assert [r["path"] for r in reqs[:2]] == [path, path]
    assert reqs[1]["body"]["stream_options"] == {"include_usage": True}
    assert reqs[2]["body"]["max_completion_tokens"] == 20 and "max_tokens" not in reqs[2]["body"]
    for req in reqs:
        check_auth(stack, req)


def test_chat_tool_round_trip(stack: Hosted, sent: list) -> None:
    client = stack.client()
    messages = [{"role": "user", "content": "Weather?"}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[CHAT_TOOL])
    [call] = first.choices[0].message.tool_calls
    history = [*messages, first.choices[0].message.model_dump(exclude_none=True)]
    history.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    final = client.chat.completions.create(model="gpt-4o-mini", messages=history, tools=[CHAT_TOOL])
    assert final.choices[0].message.content == "The tool said: sunny"


def test_wrong_credentials_are_openai_401_without_secrets(stack: Hosted) -> None:
    change = {"tokens": ["someone-else"]} if dated(stack) else {"key": "rotated-key"}
    with stack.standin_config(**change), pytest.raises(openai.AuthenticationError) as err:
        stack.client().responses.create(model="gpt-4o-mini", input="x")
    assert err.value.status_code == 401 and set(err.value.body) == {"message", "type", "param", "code"}
    assert KEY not in err.value.message and TOKENS[0] not in err.value.message


def test_token_file_is_read_again_when_it_changes(stack: Hosted, sent: list) -> None:
    if not dated(stack):
        pytest.skip("the token file is the Entra ID configuration")
    write_token(stack.token_dir, TOKENS[1])  # type: ignore[attr-defined]
    try:
        with stack.standin_config(tokens=[TOKENS[1]]):  # the old token no longer works
            assert stack.client().responses.create(model="gpt-4o-mini", input="x").output_text
        assert stack.requests()[-1]["headers"]["authorization"] == f"Bearer {TOKENS[1]}"
    finally:
        write_token(stack.token_dir, TOKENS[0])  # type: ignore[attr-defined]


def test_secrets_stay_out_of_readyz_metrics_and_logs(stack: Hosted) -> None:
    with stack.http() as http:
        # The token-file test swaps the credentials just before: a readiness probe made in between is
        # a 401, kept for the readiness TTL (2 s). Wait that out, as an operator after a rotation would.
        deadline = time.monotonic() + 15
        while (ready := http.get("/azure/readyz")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        metrics = http.get("/azure/metrics")
    assert ready.status_code == 200, ready.text
    for text in (ready.text, metrics.text, stack.logs()):
        assert KEY not in text and TOKENS[0] not in text and TOKENS[1] not in text
