"""The upstream client under its policy, against httpx.MockTransport with an injected clock and sleep:
what is retried and how long it waits, the budget, the deadline, the breaker, the limit and queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from modelyard import metrics
from modelyard.errors import APIError
from modelyard.policy import Policy
from modelyard.upstream import Upstream


class Clock:
    """Fake monotonic time; `sleep` advances it and records the waits."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += seconds


Reply = int | httpx.Response | Exception


class Script:
    """Answers in order (the last answer repeats); a status, a whole response, or an exception to raise."""

    def __init__(self, *answers: Reply) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return httpx.Response(answer, json={"error": {"message": f"status {answer}"}})
        return answer


def make(script: Callable[..., Any], name: str = "test", **policy: Any) -> tuple[Upstream, Clock]:
    clock = Clock()
    base = Policy(
        backoff_base=1.0, backoff_max=8.0, budget_min=100, clock=clock, sleep=clock.sleep, random=lambda: 1.0,
        wall=lambda: 1_700_000_000.0,
    )  # fmt: skip
    up = Upstream("http://engine/v1", transport=httpx.MockTransport(script), policy=replace(base, **policy), name=name)
    return up, clock


class Chunks(httpx.AsyncByteStream):
    """A body that arrives in pieces, as over the network (a `content=` body is read at once)."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self):
        for chunk in self.chunks:
            yield chunk


def ok() -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


async def post(up: Upstream) -> httpx.Response:
    return await up.request("POST", "/chat/completions", {"model": "m"})


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried_with_exponential_backoff(status: int) -> None:
    script = Script(status, status, status, ok())
    up, clock = make(script)
    resp = await post(up)
    assert resp.status_code == 200 and len(script.seen) == 4
    assert clock.waits == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_client_errors_are_not_retried(status: int) -> None:
    script = Script(status, ok())
    up, clock = make(script)
    assert (await post(up)).status_code == status
    assert len(script.seen) == 1 and clock.waits == []


async def test_gives_up_after_the_retries_with_the_last_reply() -> None:
    script = Script(503)
    up, clock = make(script, retries=5, backoff_max=3.0, breaker_failures=0)
    resp = await post(up)
    assert resp.status_code == 503 and len(script.seen) == 6
    assert clock.waits == [1.0, 2.0, 3.0, 3.0, 3.0]  # capped


async def test_full_jitter_draws_below_the_exponential_bound() -> None:
    draws = iter([0.0, 0.5, 0.25])
    script = Script(502, 502, 502, ok())
    up, clock = make(script, random=lambda: next(draws))
    await post(up)
    assert clock.waits == [0.0, 1.0, 1.0]  # 0*1, 0.5*2, 0.25*4


async def test_retries_off() -> None:
    script = Script(503, ok())
    up, _ = make(script, retries=0)
    assert (await post(up)).status_code == 503 and len(script.seen) == 1


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
    ],
)
async def test_connection_failures_are_retried(exc: Exception) -> None:
    script = Script(exc, ok())
    up, clock = make(script)
    assert (await post(up)).status_code == 200 and len(script.seen) == 2 and clock.waits == [1.0]


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (httpx.ConnectError("refused"), 502, "upstream_unreachable"),
        (httpx.ConnectTimeout("slow"), 504, "upstream_timeout"),
    ],
)
async def test_connection_failure_that_persists_is_an_openai_error(exc: Exception, status: int, code: str) -> None:
    script = Script(exc)
    up, _ = make(script, retries=2)
    with pytest.raises(APIError) as err:
        await post(up)
    assert (err.value.status, err.value.code) == (status, code) and len(script.seen) == 3


async def test_read_timeout_is_not_retried() -> None:
    script = Script(httpx.ReadTimeout("slow reply"), ok())
    up, _ = make(script)
    with pytest.raises(APIError) as err:
        await post(up)
    assert err.value.status == 504 and err.value.code == "upstream_timeout" and len(script.seen) == 1


async def test_retry_after_is_honoured() -> None:
    script = Script(httpx.Response(429, headers={"retry-after": "5"}), ok())
    up, clock = make(script)
    assert (await post(up)).status_code == 200
    assert clock.waits == [5.0]  # not the 1 s backoff


async def test_retry_after_date_and_ms() -> None:
    date = "Tue, 14 Nov 2023 22:13:27 GMT"  # 7 s after the fake wall clock
    script = Script(
        httpx.Response(503, headers={"retry-after": date}),
        httpx.Response(429, headers={"retry-after-ms": "1500"}),
        ok(),
    )
    up, clock = make(script)
    assert (await post(up)).status_code == 200
    assert clock.waits == [7.0, 2.0]  # 1.5 s asked, but the backoff (2 s) is longer


async def test_retry_after_beyond_the_cap_goes_back_to_the_client() -> None:
    script = Script(httpx.Response(429, headers={"retry-after": "120"}), ok())
    up, clock = make(script, retry_after_max=30)
    resp = await post(up)
    assert resp.status_code == 429 and resp.headers["retry-after"] == "120"
    assert len(script.seen) == 1 and clock.waits == []


async def test_no_retry_that_would_end_past_the_total_timeout() -> None:
    script = Script(httpx.Response(503, headers={"retry-after": "20"}), ok())
    up, clock = make(script, total_timeout=15, retry_after_max=60)
    assert (await post(up)).status_code == 503 and len(script.seen) == 1


async def test_total_timeout_bounds_a_hanging_upstream() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return ok()

    up, _ = make(hang, total_timeout=0.05)
    with pytest.raises(APIError) as err:
        await post(up)
    assert err.value.status == 504 and err.value.code == "upstream_timeout"
    assert up.limit.active == 0


async def test_budget_stops_retries_multiplying_load() -> None:
    script = Script(503)
    up, _ = make(script, budget_min=0, budget_ratio=0.2, retries=3, breaker_failures=0)
    for _ in range(50):
        await post(up)
    # without a budget: 200 attempts; with it, at most 20% more than the 50 requests
    assert len(script.seen) <= 50 + 10 + 1


async def test_budget_reserve_per_second() -> None:
    script = Script(503)
    up, clock = make(script, budget_min=1, budget_ratio=0, budget_window=10, breaker_failures=0, random=lambda: 0.0)
    for _ in range(20):  # all within one second: the reserve is 1/s over the 10 s window
        await post(up)
    assert len(script.seen) == 20 + 10
    clock.t += 10  # the window has moved on: the reserve is back
    await post(up)
    assert len(script.seen) == 30 + 4


# -- circuit breaker -------------------------------------------------------------------------------
async def test_breaker_fails_fast_then_probes_back() -> None:
    script = Script(httpx.ConnectError("refused"))
    up, clock = make(script, retries=0, breaker_failures=3, breaker_cooldown=10)
    for _ in range(3):
        with pytest.raises(APIError) as err:
            await post(up)
        assert err.value.code == "upstream_unreachable"
    with pytest.raises(APIError) as err:
        await post(up)
    assert err.value.status == 503 and err.value.code == "upstream_circuit_open"
    assert err.value.headers["retry-after"] == "10" and err.value.body()["error"]["type"] == "server_error"
    assert len(script.seen) == 3  # the fast failure never reached the upstream
    clock.t += 10
    script.answers = [ok()]
    assert (await post(up)).status_code == 200  # the probe
    assert up.breaker.state == 0 and (await post(up)).status_code == 200


async def test_breaker_lets_one_probe_at_a_time() -> None:
    release = asyncio.Event()

    async def slow_ok(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return ok()

    up, clock = make(slow_ok, retries=0, breaker_failures=1, breaker_cooldown=5)
    up.breaker.failure()
    clock.t += 5
    probe = asyncio.create_task(post(up))
    await asyncio.sleep(0.01)
    with pytest.raises(APIError) as err:
        await post(up)
    assert err.value.code == "upstream_circuit_open"
    release.set()
    assert (await probe).status_code == 200 and (await post(up)).status_code == 200


@pytest.mark.parametrize("status", [429, 500, 400])
async def test_breaker_ignores_an_upstream_that_answers(status: int) -> None:
    script = Script(status)
    up, _ = make(script, retries=0, breaker_failures=2)
    for _ in range(5):
        assert (await post(up)).status_code == status
    assert up.breaker.state == 0


async def test_breaker_opening_during_retries_ends_the_request_with_its_error() -> None:
    script = Script(502)
    up, _ = make(script, retries=5, breaker_failures=2, breaker_cooldown=100)
    assert (await post(up)).status_code == 502
    assert len(script.seen) == 2  # the breaker opened after the second failure: no third attempt


# -- concurrency limit -----------------------------------------------------------------------------
async def test_limit_queues_then_refuses_with_429() -> None:
    gate = asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return ok()

    up, _ = make(held, max_concurrency=2, queue_size=1)
    running = [asyncio.create_task(post(up)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert up.limit.active == 2 and len(up.limit.waiters) == 1
    with pytest.raises(APIError) as err:
        await post(up)
    assert err.value.status == 429 and err.value.code == "upstream_busy" and err.value.headers["retry-after"] == "1"
    assert err.value.body()["error"]["type"] == "rate_limit_error"
    gate.set()
    assert [r.status_code for r in await asyncio.gather(*running)] == [200, 200, 200]
    assert up.limit.active == 0


async def test_get_is_not_held_behind_the_queue() -> None:
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            await gate.wait()
        return ok()

    up, _ = make(handler, max_concurrency=1, queue_size=0)
    busy = asyncio.create_task(post(up))
    await asyncio.sleep(0.01)
    resp = await asyncio.wait_for(up.request("GET", "/models"), 1)
    assert resp.status_code == 200
    gate.set()
    await busy


async def test_queue_timeout_is_429() -> None:
    gate = asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return ok()

    up, _ = make(held, max_concurrency=1, queue_size=5, queue_timeout=0.02)
    first = asyncio.create_task(post(up))
    await asyncio.sleep(0.01)
    with pytest.raises(APIError) as err:
        await post(up)
    assert err.value.status == 429 and "in time" in err.value.message
    gate.set()
    await first


async def test_cancelled_request_gives_its_slot_back() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return ok()

    up, _ = make(hang, max_concurrency=1, queue_size=1)
    task = asyncio.create_task(post(up))
    queued = asyncio.create_task(post(up))
    await asyncio.sleep(0.01)
    assert up.limit.active == 1 and len(up.limit.waiters) == 1
    task.cancel()
    queued.cancel()
    await asyncio.gather(task, queued, return_exceptions=True)
    assert up.limit.active == 0 and not up.limit.waiters


# -- streams ---------------------------------------------------------------------------------------
async def test_stream_retried_before_it_starts_and_slot_held_until_closed() -> None:
    body = b"data: {}\n\ndata: [DONE]\n\n"
    sse = httpx.Response(200, stream=Chunks(body[:10], body[10:]), headers={"content-type": "text/event-stream"})
    script = Script(503, sse)
    up, clock = make(script, name="stream-test")
    before = metrics.TTFT.labels("stream-test")._sum.get()
    ctx = up.stream("POST", "/chat/completions", {"model": "m", "stream": True})
    resp = await ctx.__aenter__()
    assert resp.status_code == 200 and len(script.seen) == 2 and clock.waits == [1.0]
    assert up.limit.active == 1
    assert b"".join([c async for c in resp.aiter_bytes()]) == body
    assert metrics.TTFT.labels("stream-test")._sum.get() - before == pytest.approx(1.0)  # the fake clock's retry wait
    await ctx.__aexit__(None, None, None)
    await ctx.__aexit__(None, None, None)  # idempotent: the app may close twice (generator + background)
    assert up.limit.active == 0


async def test_stream_error_reply_stays_readable_after_retries() -> None:
    script = Script(httpx.Response(503, json={"error": {"message": "overloaded"}}))
    up, _ = make(script, retries=1)
    async with up.stream("POST", "/chat/completions", {"stream": True}) as resp:
        assert resp.status_code == 503 and b"overloaded" in await resp.aread()
    assert up.limit.active == 0


async def test_stream_circuit_open_fails_before_taking_a_slot() -> None:
    up, _ = make(Script(ok()), breaker_failures=1)
    up.breaker.failure()
    with pytest.raises(APIError) as err:
        async with up.stream("POST", "/chat/completions", {}):
            pass
    assert err.value.code == "upstream_circuit_open" and up.limit.active == 0


async def test_metrics_report_circuit_queue_and_retries() -> None:
    up, _ = make(Script(502, ok()), name="metrics-test", breaker_failures=1, breaker_cooldown=60)
    await post(up)
    text = metrics.render().decode()
    assert 'modelyard_upstream_retries_total{backend="metrics-test",reason="502"} 1.0' in text
    assert 'modelyard_upstream_circuit_state{backend="metrics-test"} 2.0' in text
    assert 'modelyard_upstream_queue_depth{backend="metrics-test"} 0.0' in text
    assert 'modelyard_upstream_in_flight_requests{backend="metrics-test"} 0.0' in text
