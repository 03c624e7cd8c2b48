"""Per-key usage and per-rollout capture through the gateway, on the cpu stack (the real vLLM CPU engine),
with gateway keys, the admin key, capture and a quota on (docs/capture-and-usage.md).

- A mixed concurrent load over three keys: /v1/responses, /v1/chat/completions (include_usage) and
  /v1/messages, plain and streamed, some cut short by their token limit, some refused by the engine
  (an input past its context) or the adapter (a model not served). What the clients saw in their replies,
  summed per key id and model, equals `GET /v1/usage` and the `modelyard_key_*` Prometheus counters.
- A quota: a key's third request of the day is a 429 in both formats, and not counted as a request.
- A rollout under NeMo Gym's `/ng-rollout/<id>/` prefix: NeMo Gym's own vllm_model server (when .venv-ng
  exists, scripts/nemo-gym-venv; otherwise the openai SDK making the same calls), a streamed Response and a
  message, captured in order with what was sent and received, and written by scripts/export-rollouts;
  another rollout's calls stay out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ROOT, _start, free_port
from .hosted import quote

pytestmark = pytest.mark.integration

KEYS = ("usage-key-alpha-01", "usage-key-bravo-02", "usage-key-charlie-03")
ROLLOUT_KEY = "usage-key-rollout-04"
QUOTA_KEY = "usage-key-quota-05"
ADMIN_KEY = "usage-admin-key-06"
MISSING_MODEL = "no-such-model"
PROMPT = "Count from 1 to 100, separated by commas."
TOO_LONG = "hello " * 3000  # past the CPU engine's 2048-token context: the engine's 400


def key_id(key: str) -> str:
    """The key id the gateway sends as X-Modelyard-Key (images/gateway/entrypoint.sh)."""
    return "key-" + hashlib.sha256(f"modelyard-scope:{key}".encode()).hexdigest()[:24]


@dataclass
class UsageStack:
    port: int
    model: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin(self, path: str, **params: Any) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {KEYS[0]}", "x-modelyard-admin-key": ADMIN_KEY}
        resp = httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=30)
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
        return resp.json()

    def metrics(self) -> str:
        resp = httpx.get(f"{self.url}/vllm/metrics", headers={"authorization": f"Bearer {KEYS[0]}"}, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.text


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UsageStack]:
    port = free_port()
    env_file = tmp_path_factory.mktemp("usage") / "usage.env"
    quotas = json.dumps({key_id(QUOTA_KEY): {"requests_per_day": 2}}, separators=(",", ":"))
    settings = {
        "COMPOSE_PROJECT_NAME": f"modelyard-usage-{uuid.uuid4().hex[:8]}",
        "COMPOSE_PROFILES": "cpu",
        "POLICY_BACKEND": "vllm",
        "GATEWAY_PORT": str(port),
        "GATEWAY_API_KEYS": ",".join((*KEYS, ROLLOUT_KEY, QUOTA_KEY)),
        "MODELYARD_ADMIN_KEY": ADMIN_KEY,
        "MODELYARD_CAPTURE": "true",
        "MODELYARD_QUOTAS": quotas,
    }
    env_file.write_text("".join(f"{k}={quote(v)}\n" for k, v in settings.items()))
    compose = _start(env_file)
    try:
        yield UsageStack(port, served_model(f"http://127.0.0.1:{port}"))
    finally:
        compose.stop()


def served_model(url: str) -> str:
    """The served model, once the gateway answers for it (the engine may still be warming up)."""
    deadline, last = time.monotonic() + 300, ""
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {KEYS[0]}"}, timeout=10)
            if resp.status_code == 200:
                return resp.json()["data"][0]["id"]
            last = resp.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(2)
    raise AssertionError(f"the stack's /v1/models did not answer within 300 s: {last}")


def wait_equal(what: str, expected: Any, read: Any, timeout: float = 30) -> None:
    """Poll read() until it equals expected (the ledger counts a call once its reply has gone out, a moment
    after the client has it); then assert once more, showing the difference."""
    deadline = time.monotonic() + timeout
    while (got := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert got == expected, what


# -- what the clients saw ------------------------------------------------------------------------
def zero() -> dict[str, Any]:
    return {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "reasoning_tokens": 0,
            "errors": {}}  # fmt: skip


def openai_usage(u: Any) -> tuple[int, int, int, int]:
    """(input, output, cached, reasoning) of a Response's or a chat completion's usage."""
    if hasattr(u, "input_tokens"):  # Responses
        cached = u.input_tokens_details.cached_tokens if u.input_tokens_details else 0
        reasoning = u.output_tokens_details.reasoning_tokens if u.output_tokens_details else 0
        return u.input_tokens, u.output_tokens, cached or 0, reasoning or 0
    cached = (u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else 0) or 0
    reasoning = (u.completion_tokens_details.reasoning_tokens if u.completion_tokens_details else 0) or 0
    return u.prompt_tokens, u.completion_tokens, cached, reasoning


def anthropic_usage(u: Any) -> tuple[int, int, int, int]:
    """Anthropic's input_tokens leave out cache reads and writes: the total input is their sum."""
    read, made = u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0
    return u.input_tokens + read + made, u.output_tokens, read, 0


@dataclass
class Seen:
    """One client request as its client saw it."""

    key: str
    model: str
    usage: tuple[int, int, int, int] | None = None
    error: str | None = None
    status: int = 200
    cut_short: bool = False


async def responses(client: openai.AsyncOpenAI, model: str, stream: bool, limit: int, text: str) -> Seen:
    kwargs = {"model": model, "input": text, "max_output_tokens": limit, "temperature": 0}
    if not stream:
        r = await client.responses.create(**kwargs)
    else:
        r = None
        async for event in await client.responses.create(**kwargs, stream=True):
            if event.type in ("response.completed", "response.incomplete", "response.failed"):
                r = event.response
        assert r is not None, "the stream ended without a final Response"
    assert r.status in ("completed", "incomplete"), r.status
    return Seen("", model, openai_usage(r.usage), cut_short=r.status == "incomplete")


async def chat(client: openai.AsyncOpenAI, model: str, stream: bool, limit: int, text: str) -> Seen:
    kwargs = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": limit, "temperature": 0}
    if not stream:
        c = await client.chat.completions.create(**kwargs)
        return Seen("", model, openai_usage(c.usage), cut_short=c.choices[0].finish_reason == "length")
    usage, finish = None, None
    async for chunk in await client.chat.completions.create(
        **kwargs, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
    assert usage is not None, "include_usage: the last chunk carries the usage"
    return Seen("", model, openai_usage(usage), cut_short=finish == "length")


async def messages(client: anthropic.AsyncAnthropic, model: str, stream: bool, limit: int, text: str) -> Seen:
    kwargs = {"model": model, "max_tokens": limit, "messages": [{"role": "user", "content": text}]}
    if not stream:
        m = await client.messages.create(**kwargs)
    else:
        async with client.messages.stream(**kwargs) as s:
            m = await s.get_final_message()
    return Seen("", model, anthropic_usage(m.usage), cut_short=m.stop_reason == "max_tokens")


ROUTES = {"responses": responses, "chat": chat, "messages": messages}


async def one(stack: UsageStack, key: str, route: str, stream: bool, model: str, limit: int, text: str) -> Seen:
    if route == "messages":
        client: Any = anthropic.AsyncAnthropic(base_url=stack.url, api_key=key, max_retries=0, timeout=300)
        errors: Any = anthropic.APIStatusError
    else:
        client = openai.AsyncOpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=300)
        errors = openai.APIStatusError
    async with client:
        try:
            seen = await ROUTES[route](client, model, stream, limit, text)
        except errors as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            body = body.get("error", body)  # the SDKs hand over OpenAI's body without its "error" wrapper
            seen = Seen("", model, error=body.get("type"), status=exc.status_code)
    seen.key = key_id(key)
    return seen


def load() -> list[tuple[str, str, bool, str | None, int, str]]:
    """(key, route, stream, model, token limit, input): every route plain and streamed for every key, with a
    roomy and a tight limit (the tight one cuts most replies short), an input past the context on every
    route, and a model that is not served."""
    jobs = []
    for key in KEYS:
        for route in ROUTES:
            for stream in (False, True):
                jobs += [(key, route, stream, None, 12, PROMPT), (key, route, stream, None, 2, PROMPT)]
                jobs.append((key, route, stream, None, 8, TOO_LONG))
            jobs.append((key, route, False, MISSING_MODEL, 8, PROMPT))
    return jobs


async def run_load(stack: UsageStack, concurrency: int = 8) -> list[Seen]:
    gate = asyncio.Semaphore(concurrency)

    async def job(key: str, route: str, stream: bool, model: str | None, limit: int, text: str) -> Seen:
        async with gate:
            return await one(stack, key, route, stream, model or stack.model, limit, text)

    return await asyncio.gather(*(job(*j) for j in load()))


def summed(seen: list[Seen]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = defaultdict(zero)
    for s in seen:
        row = out[(s.key, s.model)]
        row["requests"] += 1
        if s.usage is not None:
            for name, n in zip(("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"), s.usage,
                               strict=True):  # fmt: skip
                row[name] += n
        if s.error is not None:
            row["errors"][s.error] = row["errors"].get(s.error, 0) + 1
    return dict(out)


def ledger(stack: UsageStack, key: str, model: str) -> dict[str, Any]:
    data = stack.admin("/v1/usage", key=key, model=model, group_by="none")["data"]
    if not data:
        return zero()
    (row,) = data
    return {k: row[k] for k in zero()}


def prometheus(stack: UsageStack) -> dict[tuple[str, str], dict[str, Any]]:
    """The modelyard_key_* counters, in the ledger's shape."""
    out: dict[tuple[str, str], dict[str, Any]] = defaultdict(zero)
    for family in text_string_to_metric_families(stack.metrics()):
        for sample in family.samples:
            if not sample.name.startswith("modelyard_key_") or not sample.name.endswith("_total"):
                continue
            row = out[(sample.labels["key"], sample.labels["model"])]
            n = int(sample.value)
            if sample.name == "modelyard_key_requests_total":
                row["requests"] += n
            elif sample.name == "modelyard_key_tokens_total":
                row[f"{sample.labels['kind']}_tokens"] += n
            elif sample.name == "modelyard_key_errors_total":
                row["errors"][sample.labels["type"]] = n
    return dict(out)


def test_usage_per_key_equals_what_the_clients_saw(stack: UsageStack) -> None:
    seen = asyncio.run(run_load(stack))
    assert {s.status for s in seen} <= {200, 400, 404}, sorted({s.status for s in seen})
    long = [s for s in seen if s.status == 400]
    assert len(long) == 3 * 3 * 2 and {s.error for s in long} == {"invalid_request_error"}
    missing = [s for s in seen if s.model == MISSING_MODEL]
    assert {(s.status, s.error) for s in missing} == {(404, "not_found_error")}
    expected = summed(seen)
    assert len(expected) == 2 * len(KEYS)
    for (key, model), want in expected.items():
        wait_equal(f"GET /v1/usage for {key} {model}", want, lambda k=key, m=model: ledger(stack, k, m))
    mine = {k for k, _ in expected}
    wait_equal(
        "the modelyard_key_* counters",
        expected,
        lambda: {k: v for k, v in prometheus(stack).items() if k[0] in mine},
    )
    ok = [s for s in seen if s.usage is not None]
    print(
        f"[figures] {len(seen)} requests over {len(KEYS)} keys, 2 models: {len(ok)} answered"
        f" ({sum(s.cut_short for s in ok)} cut short), {len(seen) - len(ok)} errors;"
        f" {sum(s.usage[0] for s in ok)} input + {sum(s.usage[1] for s in ok)} output tokens;"
        f" GET /v1/usage and Prometheus equal the clients' sums for all {len(expected)} (key, model) pairs"
    )


def test_a_quota_refuses_in_both_formats_and_is_not_a_request(stack: UsageStack) -> None:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=QUOTA_KEY, max_retries=0)
    for _ in range(2):
        client.chat.completions.create(
            model=stack.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0
        )
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model=stack.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert refused.value.body["code"] == "quota_exceeded" and "requests_per_day" in refused.value.body["message"]
    assert int(refused.value.response.headers["retry-after"]) > 0
    gone = anthropic.Anthropic(base_url=stack.url, api_key=QUOTA_KEY, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as refused_too:
        gone.messages.create(model=stack.model, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert refused_too.value.body["error"]["type"] == "rate_limit_error"
    row = ledger(stack, key_id(QUOTA_KEY), stack.model)
    assert row["requests"] == 2 and row["errors"] == {}, row
    # Refused before the body is read: Prometheus counts the refusals under model "unknown".
    refusals = prometheus(stack)[(key_id(QUOTA_KEY), "unknown")]
    assert refusals["requests"] == 0 and refusals["errors"] == {"quota_exceeded": 2}, refusals


# -- a rollout under NeMo Gym's prefix ----------------------------------------------------------
NG_PYTHON = ROOT / ".venv-ng" / "bin" / "python"


def nemo_gym_calls(stack: UsageStack, base_url: str, tmp: Path) -> list[dict[str, Any]]:
    """A model call as NeMo Gym's training config makes it, through base_url: NeMo Gym's own vllm_model
    server where .venv-ng exists; otherwise the openai SDK sending what that server sends (a chat
    completion with logprobs as token ids, then /tokenize of the prompt). [{"request", "reply"}]"""
    question = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    if NG_PYTHON.exists():
        from .test_nemo_gym import TRAINING, model_server

        with model_server(NG_PYTHON, TRAINING, base_url, stack.model, tmp, api_key=ROLLOUT_KEY) as gym:
            out = gym.responses(model=stack.model, input=question, max_output_tokens=16, temperature=0)
            calls = gym.exchanges()
        item = next(i for i in out["output"] if i["type"] == "message")
        assert item["prompt_token_ids"] and item["generation_token_ids"], item  # via the prefixed /tokenize
        return calls
    request = {"model": stack.model, "messages": question, "max_tokens": 16, "temperature": 0, "logprobs": True,
               "return_tokens_as_token_ids": True}  # fmt: skip
    client = openai.OpenAI(base_url=base_url, api_key=ROLLOUT_KEY, max_retries=0)
    extra = {k: request[k] for k in ("return_tokens_as_token_ids",)}
    plain = {k: v for k, v in request.items() if k not in extra}
    reply = client.chat.completions.with_raw_response.create(**plain, extra_body=extra).http_response.json()
    tokenized = httpx.post(
        base_url.removesuffix("/v1") + "/tokenize",
        json={"model": stack.model, "messages": question},
        headers={"authorization": f"Bearer {ROLLOUT_KEY}"},
        timeout=60,
    )
    assert tokenized.status_code == 200 and tokenized.json()["tokens"], tokenized.text
    return [{"request": request, "reply": reply}]


def test_a_rollout_under_the_ng_prefix_is_captured_and_exported(stack: UsageStack, tmp_path: Path) -> None:
    rollout, other = f"r-{uuid.uuid4().hex[:8]}", f"r-{uuid.uuid4().hex[:8]}"
    base_url = f"{stack.url}/ng-rollout/{rollout}/v1"
    (gym_call,) = nemo_gym_calls(stack, base_url, tmp_path)
    sdk = openai.OpenAI(base_url=base_url, api_key=ROLLOUT_KEY, max_retries=0)
    streamed = {"model": stack.model, "input": "Say hello.", "max_output_tokens": 8, "temperature": 0, "stream": True}
    events = list(sdk.responses.create(**streamed))
    final = events[-1].response
    assert events[-1].type in ("response.completed", "response.incomplete"), events[-1].type
    message = {"model": stack.model, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
    anth = anthropic.Anthropic(base_url=f"{stack.url}/ng-rollout/{rollout}", api_key=ROLLOUT_KEY, max_retries=0)
    reply = anth.messages.with_raw_response.create(**message).http_response.json()
    # Another rollout (by header), and a call of none: neither is in this rollout's record.
    plain = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=ROLLOUT_KEY, max_retries=0)
    chat = {"model": stack.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    plain.chat.completions.create(**chat, extra_headers={"x-rollout-id": other})
    plain.chat.completions.create(**chat)

    calls = stack.admin(f"/v1/rollouts/{rollout}")["data"]
    assert [c["route"] for c in calls] == ["/v1/chat/completions", "/v1/responses", "/v1/messages"], calls
    for c in calls:
        assert c["rollout_id"] == rollout and c["status"] == 200 and c["key"] == key_id(ROLLOUT_KEY), c
        assert c["backend"] == "vllm" and "replica" in c and c["model"] == stack.model and c["error"] is None, c
        assert c["latency_ms"] > 0 and c["created_at"] <= time.time(), c
    gym, resp, msg = calls
    assert gym["request"] == gym_call["request"] and gym["reply"] == gym_call["reply"]  # as sent, as received
    assert gym["usage"] == gym_call["reply"]["usage"] and gym["ttft_ms"] is None
    token_logprobs = gym["reply"]["choices"][0]["logprobs"]["content"]
    assert token_logprobs and all(lp["token"].startswith("token_id:") for lp in token_logprobs)
    assert resp["request"] == streamed and resp["reply"]["id"] == final.id
    seen = final.model_dump(mode="json", exclude_unset=True)  # the fields the final event carried
    assert resp["reply"]["output"] == seen["output"] and resp["reply"]["status"] == seen["status"]
    assert resp["usage"] == seen["usage"] and 0 < resp["ttft_ms"] <= resp["latency_ms"]
    assert msg["request"] == message and msg["reply"] == reply and msg["usage"] == reply["usage"]
    assert [c["route"] for c in stack.admin(f"/v1/rollouts/{other}")["data"]] == ["/v1/chat/completions"]

    env = os.environ | {"MODELYARD_URL": stack.url, "MODELYARD_ADMIN_KEY": ADMIN_KEY, "MODELYARD_API_KEY": KEYS[0]}
    out = tmp_path / f"{rollout}.jsonl"
    done = subprocess.run([str(ROOT / "scripts" / "export-rollouts"), "--rollout", rollout, "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [sorted(r) for r in rows] == [
        ["chat_completions_create_params", "modelyard", "response"],
        ["modelyard", "response", "responses_create_params"],
        ["messages_create_params", "modelyard", "response"],
    ]
    assert rows[0]["chat_completions_create_params"] == gym_call["request"] and rows[0]["response"] == gym["reply"]
    assert rows[1]["responses_create_params"] == streamed and rows[1]["response"] == resp["reply"]
    assert rows[2]["messages_create_params"] == message and rows[2]["response"] == reply
    for r, c in zip(rows, calls, strict=True):
        meta = {k: c[k] for k in ("rollout_id", "route", "status", "latency_ms", "ttft_ms", "usage", "model",
                                  "backend", "replica", "created_at", "error", "key", "id")}  # fmt: skip
        assert r["modelyard"] == meta
    print(
        f"[figures] rollout {rollout} ({'NeMo Gym vllm_model' if NG_PYTHON.exists() else 'openai SDK'}):"
        f" {len(calls)} calls captured in order and exported; TTFT {resp['ttft_ms']:.0f} of {resp['latency_ms']:.0f} ms"
    )
