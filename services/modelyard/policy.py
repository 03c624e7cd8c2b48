"""How hard an adapter tries before it gives up on its upstream: timeouts, retries, limits, circuit breaker.

One frozen object per upstream, built once from Settings; the clock, sleep and random source are
injectable so the retry and breaker logic is tested without waiting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings


@dataclass(frozen=True, slots=True)
class Policy:
    total_timeout: float = 1800.0  # request start to reply (a stream: to its headers), retries included; 0 = none
    retries: int = 3  # extra attempts after the first
    backoff_base: float = 0.25  # full jitter: sleep uniform(0, min(backoff_max, base * 2**attempt))
    backoff_max: float = 8.0
    retry_after_max: float = 30.0  # a longer Retry-After is passed to the client instead of waited out
    budget_ratio: float = 0.2  # retries allowed per request over the window...
    budget_min: float = 10.0  # ...plus this many per second, so a quiet adapter still retries
    budget_window: float = 10.0
    max_concurrency: int = 1000  # generation requests (POST) in flight upstream; 0 = unlimited
    queue_size: int = 4000  # waiting for a slot; beyond this a 429
    queue_timeout: float = 300.0  # longest wait for a slot before a 429; 0 = until total_timeout
    breaker_failures: int = 5  # consecutive failures that open the circuit; 0 = no breaker
    breaker_cooldown: float = 10.0  # open this long, then one probe request
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time  # for Retry-After given as an HTTP date
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    random: Callable[[], float] = random.random

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        return cls(
            total_timeout=s.total_timeout,
            retries=s.retries,
            backoff_base=s.retry_backoff_base,
            backoff_max=s.retry_backoff_max,
            retry_after_max=s.retry_after_max,
            budget_ratio=s.retry_budget_ratio,
            budget_min=s.retry_budget_min,
            budget_window=s.retry_budget_window,
            max_concurrency=s.max_concurrency,
            queue_size=s.queue_size,
            queue_timeout=s.queue_timeout,
            breaker_failures=s.breaker_failures,
            breaker_cooldown=s.breaker_cooldown,
        )


# An Upstream built without a policy (tests, scripts) behaves as a plain client: one attempt, no limits.
OFF = Policy(total_timeout=0, retries=0, max_concurrency=0, queue_size=0, breaker_failures=0)
