"""Stored responses on a chat-bridged hosted backend (OpenRouter's translate mode, an Azure chat
deployment; stand-ins that speak each provider's wire format): the same must-show set as the cpu stack
(state_checks.py) through a gateway with two API keys, plus what a local store in front of a stateless
backend is for: turn 3 of a chain reaches the provider as the whole conversation rebuilt, and a
response made under one key is a 404 under the other."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from . import state_checks as checks
from .hosted import Hosted, no_problems, running, standin_config

pytestmark = pytest.mark.integration

KEYS = ("sk-state-alpha-0123456789", "sk-state-beta-0123456789")
OPENROUTER_KEY = "sk-or-v1-standin-0123456789"
AZURE_KEY = "azure-standin-key-0123456789"
BACKENDS = {
    "openrouter": ("openai/gpt-4o-mini", {
        "OPENROUTER_API_KEY": OPENROUTER_KEY, "OPENROUTER_RESPONSES_MODE": "translate",
        "STANDIN_OPENROUTER_CONFIG": standin_config({"key": OPENROUTER_KEY}),
    }),
    "azure": ("gpt-4o-mini", {
        "AZURE_OPENAI_URL_STYLE": "v1", "AZURE_OPENAI_API_KEY": AZURE_KEY, "AZURE_OPENAI_RESPONSES_MODE": "translate",
        "AZURE_OPENAI_DEPLOYMENT_MAP": '{"gpt-4o-mini": "gpt-4o-mini-dep"}',
        "STANDIN_AZURE_CONFIG": standin_config({"key": AZURE_KEY}),
    }),
}  # fmt: skip


@pytest.fixture(scope="module", params=list(BACKENDS))
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosted]:
    model, env = BACKENDS[request.param]
    env = {**env, "GATEWAY_API_KEYS": ",".join(KEYS)}
    with running(request.param, env, tmp_path_factory.mktemp(request.param)) as hosted:
        hosted.model = model  # type: ignore[attr-defined]
        yield hosted


@pytest.fixture
def gw(stack: Hosted) -> Iterator[checks.Gateway]:
    stack.clear()
    yield checks.Gateway(stack.url, KEYS[0])
    no_problems(stack.requests())  # every request the provider got was what the real one expects


def model(stack: Hosted) -> str:
    return stack.model  # type: ignore[attr-defined]


def chats(stack: Hosted) -> list[dict]:
    return [r["body"] for r in stack.requests() if r["method"] == "POST" and r["path"].endswith("/chat/completions")]


def test_three_turn_tool_chain_reaches_the_provider_rebuilt(stack: Hosted, gw: checks.Gateway) -> None:
    one, two, three = checks.three_turn_tool_chain(gw, model(stack))
    sent = chats(stack)
    assert len(sent) == 3  # the refused continuation (its first turn deleted) never reached the provider
    messages = sent[2]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "user"]
    (call,) = [i for i in one.output if i.type == "function_call"]
    assert "What is the weather in Paris?" in str(messages[0]["content"])
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert (messages[2]["tool_call_id"], messages[2]["content"]) == (call.call_id, '{"temp_c": 21}')
    assert two.output_text in str(messages[3]["content"])
    assert "Thanks. And tomorrow?" in str(messages[4]["content"])
    assert three.previous_response_id == two.id


def test_agents_sdk_chains_by_previous_response_id(stack: Hosted, gw: checks.Gateway) -> None:
    checks.agents_sdk_chain(gw, model(stack))
    last = chats(stack)[-1]["messages"]
    assert [m["role"] for m in last if m["role"] != "system"] == ["user", "assistant"] * 2 + ["user"]


def test_background_polled_and_cancelled(stack: Hosted, gw: checks.Gateway) -> None:
    checks.background_polled_and_cancelled(gw, model(stack))


def test_conversation(stack: Hosted, gw: checks.Gateway) -> None:
    checks.conversation(gw, model(stack))
    last = chats(stack)[-1]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user"]


def test_websocket_session_of_two_continued_turns(stack: Hosted, gw: checks.Gateway) -> None:
    checks.websocket_two_continued_turns(gw, model(stack))
    assert [m["role"] for m in chats(stack)[-1]["messages"]] == ["user", "assistant", "user"]


def test_a_response_is_a_404_under_another_key(stack: Hosted, gw: checks.Gateway) -> None:
    mine, theirs = gw.client(), checks.Gateway(stack.url, KEYS[1]).client()
    made = mine.responses.create(model=model(stack), input="Hello.", max_output_tokens=8)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.input_items.list(made.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError) as err:
        theirs.responses.create(model=model(stack), input="Go on.", previous_response_id=made.id)
    assert err.value.code == "previous_response_not_found"
    assert mine.responses.retrieve(made.id).id == made.id  # still there for its own key
