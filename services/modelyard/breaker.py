"""A circuit breaker per upstream: after `threshold` consecutive failures (no connection, timeouts, 502,
503, 504) requests fail fast for `cooldown` seconds; then one probe request goes through, and its outcome
closes the circuit or opens it again."""

from __future__ import annotations

from collections.abc import Callable

CLOSED, HALF_OPEN, OPEN = 0, 1, 2  # the values of the modelyard_upstream_circuit_state gauge


class CircuitBreaker:
    __slots__ = ("threshold", "cooldown", "clock", "state", "failures", "until", "on_open")

    def __init__(
        self,
        threshold: int,
        cooldown: float,
        clock: Callable[[], float],
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self.threshold = threshold  # 0: never opens
        self.cooldown = cooldown
        self.clock = clock
        self.on_open = on_open
        self.state = CLOSED
        self.failures = 0
        self.until = 0.0  # OPEN: end of the cooldown; HALF_OPEN: when an unanswered probe is given up on

    def allow(self) -> bool:
        """May a request go upstream now? In HALF_OPEN only one does (the probe) until it reports back,
        or until a cooldown passes without an answer (its client went away), when another may probe."""
        if self.state == CLOSED:
            return True
        now = self.clock()
        if now < self.until:
            return False
        self.state = HALF_OPEN
        self.until = now + self.cooldown
        return True

    def retry_after(self) -> float:
        return max(0.0, self.until - self.clock()) if self.state != CLOSED else 0.0

    def success(self) -> None:
        self.failures = 0
        self.state = CLOSED

    def failure(self) -> None:
        if not self.threshold:
            return
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.threshold:
            if self.state != OPEN and self.on_open:
                self.on_open()
            self.state = OPEN
            self.until = self.clock() + self.cooldown
