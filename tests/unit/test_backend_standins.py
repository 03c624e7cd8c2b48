"""The stand-in providers themselves: they accept exactly what the official openai SDK sends (the record in
tests/standins/sdk_requests.json), and the SDK, validating strictly, accepts everything they answer."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import openai
import pytest
from fastapi.testclient import TestClient

from tests.standins import azure_api, openai_api, openrouter_api
from tests.unit.spec import check_spec

RECORD = json.loads((Path(__file__).parents[1] / "standins" / "sdk_requests.json").read_text())
ATTRIBUTION = {"referer": "https://modelyard.test", "title": "modelyard tests"}
APPS = {
    "openai": lambda: openai_api.make_app({"organization": "org-standin", "project": "proj_standin"}),
    "azure-dated": azure_api.make_app,
    "azure-v1": azure_api.make_app,
    "openrouter": lambda: openrouter_api.make_app(ATTRIBUTION),
}
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def recorded(tc: TestClient) -> list[dict]:
    return tc.get("/_requests").json()


@pytest.mark.parametrize("call", RECORD["calls"], ids=lambda c: f"{c['provider']}:{c['call']}")
def test_standin_accepts_what_the_sdk_sends(call: dict) -> None:
    req = call["request"]
    with TestClient(APPS[call["provider"]]()) as tc:
        url = urlsplit(req["url"])
        resp = tc.request(
            req["method"],
            f"{url.path}?{url.query}" if url.query else url.path,
            content=json.dumps(req["body"]).encode() if req["body"] is not None else None,
            headers=req["headers"],
        )
        assert resp.status_code in (200, 404), resp.text  # 404 only for the stored response resp_1
        if resp.status_code == 404:
            assert "/responses/resp_1" in url.path and "not found" in resp.text
        [entry] = recorded(tc)
        assert entry["problems"] == []


def sdk(app, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(http_client=TestClient(app), _strict_response_validation=True, max_retries=0, **kwargs)


def tool_round_trip(client: openai.OpenAI, model: str, **output_fields: str) -> None:
    first = client.responses.create(model=model, input="Weather in Paris?", tools=[TOOL])
    [call] = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    history = [{"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True)]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "sunny", **output_fields})
    second = client.responses.create(model=model, input=history, tools=[TOOL])
    assert second.output_text == "The tool said: sunny"


def test_openai_standin_through_the_sdk() -> None:
    client = sdk(openai_api.make_app(), base_url="http://testserver/v1", api_key="sk-standin-openai")
    resp = client.responses.create(model="gpt-4.1-mini", input="Hello")
    assert resp.output_text == "You said: Hello" and resp.usage.total_tokens > 0
    with client.responses.stream(model="gpt-4.1-mini", input="Hello there") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        assert stream.get_final_response().output_text == text == "You said: Hello there"
    tool_round_trip(client, "gpt-4.1-mini")
    assert client.responses.retrieve(resp.id).id == resp.id
    assert client.responses.input_items.list(resp.id).data[0].type == "message"
    bg = client.responses.create(model="gpt-4.1-mini", input="x", background=True)
    assert client.responses.cancel(bg.id).status == "cancelled"
    assert client.responses.delete(resp.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4.1-mini",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: Hi"
    assert chunks[-1].usage.total_tokens > 0


def test_openai_standin_401_shapes() -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        sdk(openai_api.make_app(), base_url="http://testserver/v1", api_key="sk-wrong-key-1234").models.list()
    assert err.value.code == "invalid_api_key" and "sk-wrong" in err.value.message  # OpenAI echoes it masked


def test_azure_standin_both_forms_through_the_sdk() -> None:
    app = azure_api.make_app()
    dated = openai.AzureOpenAI(
        azure_endpoint="http://testserver",
        api_version="2025-04-01-preview",
        azure_ad_token="entra-token-1",
        http_client=TestClient(app),
        _strict_response_validation=True,
        max_retries=0,
    )
    reply = dated.chat.completions.create(model="gpt-4o-mini-dep", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "You said: Hi"
    stream = dated.chat.completions.create(
        model="gpt-4o-mini-dep", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices == [] and all(c.usage is None for c in chunks)  # Azure: filter results first
    tool_round_trip(dated, "gpt-4o-mini-dep", status="completed")  # Azure wants the status
    v1 = sdk(app, base_url="http://testserver/openai/v1/", api_key="azure-standin-key")
    assert v1.responses.create(model="gpt-4o-mini-dep", input="Yo").output_text == "You said: Yo"
    with pytest.raises(openai.BadRequestError, match="input\\[1\\].status"):
        v1.responses.create(
            model="gpt-4o-mini-dep",
            input=[
                {"role": "user", "content": "x"},
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            ],
        )
    with pytest.raises(openai.BadRequestError, match="max_completion_tokens"):
        v1.chat.completions.create(model="o4-mini-dep", messages=[{"role": "user", "content": "x"}], max_tokens=5)
    with pytest.raises(openai.AuthenticationError, match="Access token is missing, invalid"):
        sdk(app, base_url="http://testserver/openai/v1/", api_key="nope").models.list()


def test_input_tokens_and_compact_standins_through_the_sdk() -> None:
    """The two routes in OpenAI's wire format on both stand-ins (and Azure's both URL forms), each reply
    valid for the strict SDK and for the spec's TokenCountsResource and CompactResource."""
    azure = azure_api.make_app()
    clients = {
        "gpt-4.1-mini": sdk(openai_api.make_app(), base_url="http://testserver/v1", api_key="sk-standin-openai"),
        "gpt-4o-mini-dep": sdk(azure, base_url="http://testserver/openai/v1/", api_key="azure-standin-key"),
    }
    dated = openai.AzureOpenAI(
        azure_endpoint="http://testserver", api_version="2025-04-01-preview", azure_ad_token="entra-token-1",
        http_client=TestClient(azure), _strict_response_validation=True, max_retries=0,
    )  # fmt: skip
    for model, client in [*clients.items(), ("gpt-4o-mini-dep", dated)]:
        count = client.responses.input_tokens.count(model=model, input="Hello there", instructions="Be brief.")
        assert count.input_tokens == 4 and count.object == "response.input_tokens"
        check_spec(count.model_dump(mode="json"), "TokenCountsResource")
        # Read raw: the user messages OpenAI returns (input_text parts) are not ResponseOutputItems to the
        # strict SDK's CompactedResponse type, though the spec's ItemField (and OpenAI's example) has them.
        raw = client.responses.with_raw_response.compact(model=model, input=[{"role": "user", "content": "Hello"}])
        compacted = raw.http_response.json()
        assert [o["type"] for o in compacted["output"]] == ["message", "compaction"]
        check_spec(compacted, "CompactResource")
        with pytest.raises(openai.BadRequestError, match="Unknown parameter: 'stream'"):
            client.responses.input_tokens.count(model=model, input="x", extra_body={"stream": True})


def test_openrouter_standin_through_the_sdk() -> None:
    app = openrouter_api.make_app()
    client = sdk(app, base_url="http://testserver/api/v1", api_key="sk-or-v1-standin")
    with TestClient(app) as tc:
        raw = tc.post(
            "/api/v1/chat/completions",
            json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
            headers={"authorization": "Bearer sk-or-v1-standin"},
        ).text
    assert raw.startswith(": OPENROUTER PROCESSING\n\n")
    chunks = list(
        client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: Hi"
    with pytest.raises(openai.APIError, match="Provider disconnected"):
        list(
            client.chat.completions.create(
                model="standin/mid-stream-error", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
        )
    with client.responses.stream(model="openai/gpt-4o-mini", input="Hey") as stream:
        assert stream.get_final_response().output_text == "You said: Hey"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="standin/provider-error", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["metadata"]["provider_name"] == "Fireworks"
