"""Retry decisions: which failures are worth another attempt, Retry-After, and a budget that keeps
retries from multiplying the load on an upstream that is already struggling."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

# Worth another attempt when nothing has reached the client yet: rate limits and transient server trouble.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def retry_after(headers: Mapping[str, str], wall: Callable[[], float]) -> float | None:
    """Seconds the upstream asked us to wait: `retry-after-ms` (OpenAI, Azure), `Retry-After` as seconds or
    an HTTP date. None when it said nothing usable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - wall())


class RetryBudget:
    """Retries allowed: `min_per_s` per second plus `ratio` of the requests seen, over a sliding window of
    one-second buckets (Finagle's budget). Plain int lists, touched in place: no allocation per request."""

    __slots__ = ("ratio", "reserve", "n", "clock", "stamps", "requests", "retries")

    def __init__(self, ratio: float, min_per_s: float, window: float, clock: Callable[[], float]) -> None:
        self.n = n = max(1, int(window))
        self.ratio = ratio
        self.reserve = min_per_s * n
        self.clock = clock
        self.stamps = [-1] * n
        self.requests = [0] * n
        self.retries = [0] * n

    def _bucket(self) -> int:
        sec = int(self.clock())
        i = sec % self.n
        if self.stamps[i] != sec:
            self.stamps[i] = sec
            self.requests[i] = 0
            self.retries[i] = 0
        return i

    def deposit(self) -> None:
        """One request arrived."""
        self.requests[self._bucket()] += 1

    def withdraw(self) -> bool:
        """Take one retry if the budget has room."""
        i = self._bucket()
        oldest = self.stamps[i] - self.n
        reqs = tries = 0
        for j in range(self.n):
            if self.stamps[j] > oldest:
                reqs += self.requests[j]
                tries += self.retries[j]
        if tries >= self.reserve + self.ratio * reqs:
            return False
        self.retries[i] += 1
        return True
