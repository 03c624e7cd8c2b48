"""Profile nim-hosted end to end: the openai SDK (strict validation) -> gateway /nim/v1 -> adapter-nim -> a
stand-in NIM (tests/standins/nim_api.py) serving NIM's documented /v1/health/ready, /v1/health/live,
/v1/models and error shapes, with the Bearer key the hosted catalog wants. Chat's wire format is vLLM's,
which the cpu-profile tests cover on the real engine.

The stack comes up twice: /v1/responses through the translation core over chat completions (the default)
and relayed to NIM's own /v1/responses (NIM_RESPONSES_MODE=native)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from .hosted import Hosted, checked_requests, running, standin_config

pytestmark = pytest.mark.integration

KEY = "nvapi-standin-0123456789abcdef"
MODEL = "meta/llama-3.1-8b-instruct"


@pytest.fixture(scope="module", params=["translate", "native"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosted]:
    env = {
        "POLICY_BACKEND": "nim",
        "NVIDIA_API_KEY": KEY,
        "NIM_RESPONSES_MODE": request.param,
        "STANDIN_NIM_CONFIG": standin_config({"key": KEY}),
    }
    with running("nim-hosted", env, tmp_path_factory.mktemp("nim")) as hosted:
        hosted.mode = request.param  # type: ignore[attr-defined]
        yield hosted


@pytest.fixture
def sent(stack: Hosted) -> Iterator[list]:
    yield from checked_requests(stack)


def client(stack: Hosted) -> openai.OpenAI:
    return stack.client(prefix="/nim")


def test_models_and_readiness_come_from_nim(stack: Hosted, sent: list) -> None:
    assert [m.id for m in client(stack).models.list().data] == [MODEL]
    with stack.http() as http:
        ready = http.get("/nim/readyz")
        assert ready.status_code == 200 and ready.json()["upstream"] == "GET /v1/health/ready -> 200"
        # Not ready while NIM says so (its 503 body), ready again after.
        with stack.standin_config(ready=False):
            time.sleep(2.5)  # past the readiness cache (MODELYARD_READINESS_TTL)
            assert http.get("/nim/readyz").json()["upstream"] == "GET /v1/health/ready -> 503"
        # Ready again once NIM is (after the breaker's cooldown where the failed probes opened it).
        deadline = time.monotonic() + 30
        while http.get("/nim/readyz").status_code != 200:
            assert time.monotonic() < deadline, "not ready again within 30 s"
            time.sleep(0.5)


def test_responses_through_translation_or_native(stack: Hosted, sent: list) -> None:
    resp = client(stack).responses.create(model=MODEL, input="Hi")
    assert resp.status == "completed" and resp.output_text
    with client(stack).responses.stream(model=MODEL, input="Hello there") as events:
        final = events.get_final_response()
    assert final.status == "completed" and final.output_text
    paths = {r["path"] for r in stack.requests()}
    assert paths == ({"/v1/responses"} if stack.mode == "native" else {"/v1/chat/completions"})  # type: ignore[attr-defined]
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in stack.requests())


def test_chat_passthrough_streamed_and_not(stack: Hosted, sent: list) -> None:
    reply = client(stack).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "You said: Hi"
    chunks = list(
        client(stack).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: Hi"


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
def test_nim_errors_reach_the_sdk_in_openai_format(stack: Hosted, endpoint: str) -> None:
    def call(model: str):
        if endpoint == "chat":
            return client(stack).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
        return client(stack).responses.create(model=model, input="x")

    with pytest.raises(openai.BadRequestError) as bad:
        call("standin/bad-request")
    assert "temperature must be non-negative" in bad.value.body["message"]
    with pytest.raises(openai.NotFoundError) as missing:
        call("meta/no-such-model")
    assert "does not exist" in missing.value.body["message"]
    with pytest.raises(openai.InternalServerError) as busy:
        call("standin/busy")
    assert busy.value.status_code == 503 and "The server is busy" in busy.value.body["message"]
    assert set(busy.value.body) == {"message", "type", "param", "code"}
