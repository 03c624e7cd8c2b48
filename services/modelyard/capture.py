"""Per-rollout call capture (docs/capture-and-usage.md): with MODELYARD_CAPTURE on, every model call that
carries a rollout id is recorded — route, the request as sent, the final reply (a stream's final
Response or message), status, latency, time to first token, usage (token ids and logprobs ride on the
reply where token data is on), backend and replica — in the store, in batches written off the request's
path. `GET /v1/rollouts/{id}` (admin key) lists a rollout's calls in order; scripts/export-rollouts
writes them as JSONL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import orjson

from .calls import Call
from .store import Store

log = logging.getLogger("modelyard")


class Capture:
    def __init__(self, store: Store, backend: str, ttl: float = 0.0) -> None:
        self.store, self.backend, self.ttl = store, backend, ttl
        self.pending: list[tuple[str, str, str, int, float, int | None, str]] = []
        self._task: asyncio.Task[None] | None = None
        self._seq = time.time_ns()

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop(), name="modelyard-capture-flush")

    def record(self, call: Call) -> None:
        now = time.time()
        latency = time.perf_counter() - call.start
        entry = {
            "rollout_id": call.rollout, "route": call.route, "backend": self.backend,
            "replica": call.replica, "status": call.status,
            "created_at": now - latency, "latency_ms": round(latency * 1000, 3),
            "ttft_ms": round((call.first - call.start) * 1000, 3) if call.first else None,
            "model": call.model, "usage": call.usage, "error": call.error,
            "request": call.request, "reply": call.reply,
        }  # fmt: skip
        self._seq = max(self._seq + 1, time.time_ns())
        expires = int(now + self.ttl) if self.ttl else None
        cid = f"call_{secrets.token_hex(12)}"
        self.pending.append(
            (cid, call.rollout or "", call.scope, self._seq, entry["created_at"], expires, orjson.dumps(entry).decode())
        )

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - kept, tried again next round
                log.exception("writing captured calls failed")

    async def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        sql = (
            "INSERT INTO captures (id, rollout_id, scope, seq, created_at, expires_at, call)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        try:
            await self.store.writes.write([(sql, row) for row in batch])
        except Exception:
            self.pending = batch + self.pending
            raise

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def calls(self, rollout: str | None = None, since: float | None = None, until: float | None = None,
                    scope: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        await self.flush()
        where, args = ["1 = 1"], []
        for column, op, value in (("rollout_id", "=", rollout), ("created_at", ">=", since), ("created_at", "<", until),
                                  ("scope", "=", scope)):  # fmt: skip
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        rows = await self.store.engine.fetch(
            f"SELECT id, scope, call FROM captures WHERE {' AND '.join(where)} ORDER BY seq", args
        )
        return [{"id": r[0], "key": r[1], **orjson.loads(r[2])} for r in rows]

    async def purge(self, now: float | None = None) -> None:
        cutoff = int(now if now is not None else time.time())
        await self.store.writes.write([("DELETE FROM captures WHERE expires_at < ?", (cutoff,))])
