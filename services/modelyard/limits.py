"""A concurrency limit per upstream with a bounded FIFO queue: past the queue, or after waiting too long
in it, a request is refused at once (429) instead of piling up. A released slot is handed straight to
the next waiter, so nobody can overtake the queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class QueueFull(Exception):
    pass


class ConcurrencyLimit:
    __slots__ = ("limit", "queue_size", "active", "waiters")

    def __init__(self, limit: int, queue_size: int) -> None:
        self.limit = limit  # 0: unlimited (still counted, for the in-flight gauge)
        self.queue_size = queue_size
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, timeout: float | None) -> None:
        """Take a slot, waiting at most `timeout` seconds (None: no limit). Raises QueueFull or TimeoutError."""
        if not self.limit or self.active < self.limit:
            self.active += 1
            return
        if len(self.waiters) >= self.queue_size:
            raise QueueFull
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we gave up: pass it on
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):  # already popped by a release
                    self.waiters.remove(fut)
            raise

    def release(self) -> None:
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot moves to the waiter; `active` is unchanged
                return
        self.active -= 1
