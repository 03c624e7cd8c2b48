"""The stored-response must-show set, once, for any gateway in front of a backend the local store serves
(the cpu stack's real vLLM: test_state_stack.py; a chat-bridged hosted backend's stand-in:
test_state_hosted.py): the openai SDK (strict) and the Agents SDK through the gateway. Protocol only: no
model's words are asserted."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from .test_sdk_responses import WEATHER


@dataclass
class Gateway:
    url: str  # the gateway's root; its /v1 is the default backend
    api_key: str = "not-needed"

    def client(self) -> openai.OpenAI:
        """The official SDK, validating every reply strictly."""
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=self.api_key, _strict_response_validation=True, max_retries=0
        )

    def aclient(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=self.api_key, max_retries=0)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, headers={"authorization": f"Bearer {self.api_key}"})


def poll(client: openai.OpenAI, rid: str, until: set[str], timeout: float = 120) -> openai.types.responses.Response:
    end = time.monotonic() + timeout
    while True:
        got = client.responses.retrieve(rid)
        if got.status in until or time.monotonic() > end:
            return got
        time.sleep(0.2)


def three_turn_tool_chain(gw: Gateway, model: str) -> list[Any]:
    """A tool call, its output, a follow-up, each by previous_response_id; read back, listed, deleted.
    The three Responses, for a caller to check what the backend was sent."""
    client = gw.client()
    one = client.responses.create(
        model=model, input="What is the weather in Paris?", tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=40,
    )  # fmt: skip
    (call,) = [i for i in one.output if i.type == "function_call"]
    assert one.store is True
    two = client.responses.create(
        model=model, previous_response_id=one.id, tools=[WEATHER], tool_choice="none", max_output_tokens=16,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'}],
    )  # fmt: skip
    three = client.responses.create(
        model=model, previous_response_id=two.id, input="Thanks. And tomorrow?", max_output_tokens=16
    )
    assert (two.previous_response_id, three.previous_response_id) == (one.id, two.id)
    assert three.status in ("completed", "incomplete")
    for r in (one, two, three):
        got = client.responses.retrieve(r.id)
        assert got.id == r.id and got.output == r.output  # the SDK validated it strictly on the way in
    items = client.responses.input_items.list(three.id)
    assert [i.type for i in items.data] == ["message"]
    fco = client.responses.input_items.list(two.id).data
    assert [i.type for i in fco] == ["function_call_output"]
    deleted = client.responses.delete(one.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(one.id)
    with pytest.raises(openai.NotFoundError) as err:  # mid-chain: the first turn is gone
        client.responses.create(model=model, previous_response_id=two.id, input="again", max_output_tokens=4)
    assert err.value.code == "previous_response_not_found"
    return [one, two, three]


def agents_sdk_chain(gw: Gateway, model: str, output_type: Any = None) -> list[str]:
    """Three Agents SDK runs chained by previous_response_id; each stored response links to the one before."""
    agents = pytest.importorskip("agents")
    agent = agents.Agent(
        name="chain",
        instructions="Answer in a few words.",
        model=agents.OpenAIResponsesModel(model=model, openai_client=gw.aclient()),
        model_settings=agents.ModelSettings(max_tokens=64),
        output_type=output_type,
    )

    async def run() -> list[str]:
        ids, previous = [], None
        for text in ("Hello.", "Say it again.", "Once more."):
            result = await agents.Runner.run(agent, text, previous_response_id=previous)
            previous = result.last_response_id
            ids.append(previous)
        return ids

    ids = asyncio.run(run())
    sync = gw.client()
    chain = [sync.responses.retrieve(i) for i in ids]
    assert [r.previous_response_id for r in chain] == [None, ids[0], ids[1]]
    return ids


def background_polled_and_cancelled(gw: Gateway, model: str) -> None:
    client = gw.client()
    queued = client.responses.create(model=model, input="Count to three.", background=True, max_output_tokens=12)
    assert queued.status == "queued" and queued.background is True
    done = poll(client, queued.id, {"completed", "incomplete", "failed"})
    assert done.status in ("completed", "incomplete") and done.usage is not None
    long = client.responses.create(
        model=model, input="Write a very long story.", background=True, max_output_tokens=400
    )
    cancelled = client.responses.cancel(long.id)
    assert cancelled.status in ("cancelled", "completed")  # cancelled, unless it ended first
    assert client.responses.retrieve(long.id).status == cancelled.status


def conversation(gw: Gateway, model: str) -> None:
    http = gw.http()
    conv = http.post("/v1/conversations", json={"metadata": {"rollout": "1"}}).json()
    client = gw.client()
    client.responses.create(model=model, input="Hi.", conversation=conv["id"], max_output_tokens=8)
    client.responses.create(model=model, input="Again.", conversation=conv["id"], max_output_tokens=8)
    items = http.get(f"/v1/conversations/{conv['id']}/items", params={"order": "asc"}).json()["data"]
    assert [i.get("role") for i in items] == ["user", "assistant", "user", "assistant"]
    assert http.delete(f"/v1/conversations/{conv['id']}").json()["deleted"] is True


def websocket_two_continued_turns(gw: Gateway, model: str) -> None:
    client = gw.client()
    with client.responses.connect() as conn:
        conn.response.create(model=model, input="Hello.", max_output_tokens=8, store=False)
        first = next(e for e in conn if e.type in ("response.completed", "response.incomplete")).response
        conn.response.create(model=model, input="And again.", previous_response_id=first.id, max_output_tokens=8)
        second = next(e for e in conn if e.type in ("response.completed", "response.incomplete", "error"))
    assert second.type != "error" and second.response.previous_response_id == first.id
