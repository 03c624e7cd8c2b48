"""The pieces of the upstream policy on their own: Retry-After, the retry budget, the breaker, the limit."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import pytest

from modelyard.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from modelyard.limits import ConcurrencyLimit, QueueFull
from modelyard.retry import RetryBudget, retry_after


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- Retry-After -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "want"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the precise one wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": formatdate(1_700_000_042, usegmt=True)}, 42.0),
        ({"retry-after": formatdate(1_699_999_000, usegmt=True)}, 0.0),  # a date in the past: now
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00"}, 0.0),  # no zone: read as UTC, long past
        ({"retry-after": "whenever"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds_date_and_ms(headers: dict[str, str], want: float | None) -> None:
    assert retry_after(headers, lambda: 1_700_000_000.0) == want


# -- retry budget ----------------------------------------------------------------------------------
def test_budget_allows_a_fraction_of_requests() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_per_s=0, window=10, clock=clock)
    for _ in range(100):
        budget.deposit()
    granted = sum(budget.withdraw() for _ in range(100))
    assert granted == 20


def test_budget_reserve_lets_a_quiet_adapter_retry() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_per_s=1, window=10, clock=clock)
    budget.deposit()
    assert sum(budget.withdraw() for _ in range(50)) == 11  # 1/s over 10 s, and a share of the one request


def test_budget_window_slides() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.5, min_per_s=0, window=10, clock=clock)
    for _ in range(10):
        budget.deposit()
    assert sum(budget.withdraw() for _ in range(10)) == 5
    clock.t += 5  # still inside the window: spent
    assert not budget.withdraw()
    clock.t += 6  # the old second has left the window: no requests, no retries
    assert not budget.withdraw()
    for _ in range(4):
        budget.deposit()
    assert sum(budget.withdraw() for _ in range(10)) == 2


# -- circuit breaker -------------------------------------------------------------------------------
def test_breaker_opens_after_consecutive_failures_and_probes_back() -> None:
    clock, opened = Clock(), []
    br = CircuitBreaker(3, 10.0, clock, lambda: opened.append(clock.t))
    br.failure()
    br.failure()
    br.success()  # not consecutive
    br.failure()
    br.failure()
    assert br.state == CLOSED and br.allow()
    br.failure()
    assert br.state == OPEN and opened == [clock.t]
    assert not br.allow() and br.retry_after() == 10.0
    clock.t += 9.5
    assert not br.allow() and br.retry_after() == pytest.approx(0.5)
    clock.t += 0.5
    assert br.allow() and br.state == HALF_OPEN  # the probe
    assert not br.allow()  # one at a time
    br.success()
    assert br.state == CLOSED and br.allow()


def test_breaker_failed_probe_opens_again() -> None:
    clock, opened = Clock(), []
    br = CircuitBreaker(2, 5.0, clock, lambda: opened.append(clock.t))
    br.failure()
    br.failure()
    clock.t += 5
    assert br.allow()
    br.failure()  # one failure is enough in half-open
    assert br.state == OPEN and not br.allow() and len(opened) == 2


def test_breaker_unanswered_probe_is_given_up_after_a_cooldown() -> None:
    clock = Clock()
    br = CircuitBreaker(1, 5.0, clock)
    br.failure()
    clock.t += 5
    assert br.allow()  # a probe whose client then went away: it never reports
    clock.t += 4.9
    assert not br.allow()
    clock.t += 0.1
    assert br.allow()


def test_breaker_disabled_never_opens() -> None:
    br = CircuitBreaker(0, 5.0, Clock())
    for _ in range(100):
        br.failure()
    assert br.state == CLOSED and br.allow()


# -- concurrency limit -----------------------------------------------------------------------------
async def test_limit_queues_in_order_then_refuses() -> None:
    limit = ConcurrencyLimit(2, 2)
    await limit.acquire(None)
    await limit.acquire(None)
    order: list[int] = []

    async def waiter(i: int) -> None:
        await limit.acquire(None)
        order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(2)]
    await asyncio.sleep(0)
    assert len(limit.waiters) == 2
    with pytest.raises(QueueFull):
        await limit.acquire(None)
    limit.release()
    limit.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1] and limit.active == 2 and not limit.waiters
    limit.release()
    limit.release()
    assert limit.active == 0


async def test_limit_wait_times_out_and_leaves_the_queue() -> None:
    limit = ConcurrencyLimit(1, 5)
    await limit.acquire(None)
    with pytest.raises(TimeoutError):
        await limit.acquire(0.01)
    assert not limit.waiters and limit.active == 1
    limit.release()
    assert limit.active == 0


async def test_limit_cancelled_waiter_frees_its_place() -> None:
    limit = ConcurrencyLimit(1, 1)
    await limit.acquire(None)
    task = asyncio.create_task(limit.acquire(None))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not limit.waiters
    limit.release()
    assert limit.active == 0
    await limit.acquire(None)  # the slot is really free
    assert limit.active == 1


async def test_limit_slot_handed_over_as_waiter_gives_up_is_passed_on() -> None:
    limit = ConcurrencyLimit(1, 5)
    await limit.acquire(None)
    first = asyncio.create_task(limit.acquire(None))
    second = asyncio.create_task(limit.acquire(None))
    await asyncio.sleep(0)
    limit.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)  # the slot went on to `second`, not lost
    assert limit.active == 1


async def test_unlimited_still_counts() -> None:
    limit = ConcurrencyLimit(0, 0)
    for _ in range(5000):
        await limit.acquire(None)
    assert limit.active == 5000 and not limit.waiters
