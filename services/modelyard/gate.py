"""Pausing generation between RL steps (docs/fleet.md "Weight updates"): while the trainer swaps the
policy's weights, new generations wait (bounded by their own deadlines) instead of reaching an engine
mid-update; `resume` lets them go with the new `policy_version`, which every reply then carries.

`pause` returns once the generations in flight have finished, or, with `abort`, ends each of them with a
clear error (a stream with `response.failed` naming the reason; a plain request with a 503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from .errors import APIError

log = logging.getLogger("modelyard")

ABORTED = "aborted: the policy's weights are being updated (POST /admin/pause with abort); retry after resume"


class Aborted(httpx.ReadError):
    """A stream ended by `pause(abort=True)`: read by the relay as a failure with this message."""


class Gate:
    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.version = ""  # the policy version replies are stamped with ("" until a resume names one)
        self.aborting = False
        self.calls: set[asyncio.Task[object]] = set()  # plain generations in flight, for abort
        self.streams = 0  # streamed generations open

    @property
    def paused(self) -> bool:
        return not self.open.is_set()

    async def wait(self) -> None:
        """Where a new generation waits while paused (its total timeout still runs)."""
        if self.paused:
            await self.open.wait()

    async def pause(
        self, in_flight: Callable[[], int], abort: bool = False, timeout: float = 600.0
    ) -> dict[str, object]:
        """Stop dispatch; return once `in_flight()` is 0 (or after `timeout`), aborting what runs if asked."""
        self.open.clear()
        start = time.monotonic()
        if abort:
            self.aborting = True
            for task in list(self.calls):
                task.cancel(ABORTED)
        log.info("generation paused%s", " (aborting in-flight)" if abort else "")
        while in_flight() and time.monotonic() - start < timeout:
            await asyncio.sleep(0.02)
        self.aborting = False
        left = in_flight()
        return {"paused": True, "in_flight": left, "drained": left == 0, "waited_s": round(time.monotonic() - start, 3)}

    def resume(self, version: str | None) -> dict[str, Any]:
        if version is not None:
            self.version = version
        self.open.set()
        log.info("generation resumed (policy version %r)", self.version)
        return {"paused": False, "policy_version": self.version}

    def aborted(self) -> APIError:
        return APIError(503, ABORTED, code="policy_update", headers={"retry-after": "1"})
