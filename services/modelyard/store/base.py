"""The store: what is kept and how it is asked for, over an SQL engine (sqlite.py, postgres.py).

Every row carries the scope of the caller that made it (the gateway's key id, or "open" without keys):
a lookup from another scope finds nothing, so one key never sees another key's data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

log = logging.getLogger("modelyard")

Statement = tuple[str, Sequence[Any]]


class Engine(Protocol):
    """An SQL database: statements use `?` placeholders (postgres.py numbers them)."""

    async def start(self) -> None: ...
    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    async def commit(self, statements: list[Statement]) -> None: ...
    async def close(self) -> None: ...


@dataclass
class StoredResponse:
    id: str
    scope: str
    status: str
    previous_id: str | None
    conversation_id: str | None
    request: dict[str, Any]
    input_items: list[dict[str, Any]]
    response: dict[str, Any]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class GroupCommit:
    """Writes wait for the transaction that carries them; what queues up meanwhile goes in the next one,
    so a burst of stored replies costs one commit per batch, not one per reply."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pending: list[tuple[list[Statement], asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None

    async def write(self, statements: list[Statement]) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((statements, fut))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await self.engine.commit([s for statements, _ in batch for s in statements])
            except Exception as exc:  # noqa: BLE001 - each writer hears it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)


class Store:
    """Responses, their events and conversations, scoped to the caller."""

    def __init__(self, engine: Engine, ttl: float = 0.0) -> None:
        self.engine = engine
        self.ttl = ttl  # seconds a stored object is kept (0: until deleted)
        self.writes = GroupCommit(engine)
        self._purger: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.engine.start()
        interrupted = await self.engine.fetch(
            "SELECT id, response FROM responses WHERE status IN ('queued', 'in_progress')"
        )
        for rid, raw in interrupted:  # what an adapter restart cut short: said, not left running forever
            response = orjson.loads(raw)
            response.update(
                status="failed",
                error={
                    "code": "server_error",
                    "message": "The adapter restarted while this response was running; create it again.",
                },
            )
            await self.writes.write(
                [("UPDATE responses SET status = 'failed', response = ? WHERE id = ?", (_dumps(response), rid))]
            )
        if interrupted:
            log.warning("%d stored responses were running when the adapter stopped: marked failed", len(interrupted))
        if self.ttl:
            self._purger = asyncio.create_task(self._purge_loop(), name="modelyard-store-purge")

    async def close(self) -> None:
        if self._purger:
            self._purger.cancel()
        if self.writes.task:
            await asyncio.gather(self.writes.task, return_exceptions=True)
        await self.engine.close()

    def _expiry(self) -> int | None:
        return int(time.time() + self.ttl) if self.ttl else None

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(min(max(self.ttl / 10, 1.0), 300.0))
            try:
                await self.purge()
            except Exception:  # noqa: BLE001 - try again next round
                log.exception("purging expired stored objects failed")

    async def purge(self, now: float | None = None) -> None:
        cutoff = int(now if now is not None else time.time())
        await self.writes.write(
            [
                (
                    "DELETE FROM response_events WHERE response_id IN (SELECT id FROM responses WHERE expires_at < ?)",
                    (cutoff,),
                ),
                ("DELETE FROM responses WHERE expires_at < ?", (cutoff,)),
                (
                    "DELETE FROM conversation_items WHERE conversation_id IN"
                    " (SELECT id FROM conversations WHERE expires_at < ?)",
                    (cutoff,),
                ),
                ("DELETE FROM conversations WHERE expires_at < ?", (cutoff,)),
            ]
        )

    # -- responses -----------------------------------------------------------------------------------
    async def put_response(self, rec: StoredResponse) -> None:
        sql = (
            "INSERT INTO responses (id, scope, created_at, expires_at, status, previous_id, conversation_id, request,"
            " input_items, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status, response = excluded.response"
        )
        args = (
            rec.id, rec.scope, int(rec.response.get("created_at") or time.time()), self._expiry(), rec.status,
            rec.previous_id, rec.conversation_id, _dumps(rec.request), _dumps(rec.input_items), _dumps(rec.response),
        )  # fmt: skip
        await self.writes.write([(sql, args)])

    async def update_response(self, rid: str, response: dict[str, Any], extra: list[Statement] = ()) -> None:
        sql = "UPDATE responses SET status = ?, response = ? WHERE id = ?"
        await self.writes.write([(sql, (response["status"], _dumps(response), rid)), *extra])

    async def get_response(self, rid: str, scope: str) -> StoredResponse | None:
        rows = await self.engine.fetch(
            "SELECT id, scope, status, previous_id, conversation_id, request, input_items, response FROM responses"
            " WHERE id = ? AND scope = ?",
            (rid, scope),
        )
        if not rows:
            return None
        r = rows[0]
        return StoredResponse(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5]), orjson.loads(r[6]), orjson.loads(r[7]))

    async def delete_response(self, rid: str, scope: str) -> bool:
        if await self.get_response(rid, scope) is None:
            return False
        await self.writes.write(
            [
                ("DELETE FROM response_events WHERE response_id = ?", (rid,)),
                ("DELETE FROM responses WHERE id = ?", (rid,)),
            ]
        )
        return True

    # -- stream events (background streams, resumable) ----------------------------------------------
    async def add_events(self, rid: str, events: list[dict[str, Any]]) -> None:
        sql = "INSERT INTO response_events (response_id, seq, event) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        await self.writes.write([(sql, (rid, e["sequence_number"], _dumps(e))) for e in events])

    async def events_after(self, rid: str, after: int) -> list[dict[str, Any]]:
        rows = await self.engine.fetch(
            "SELECT event FROM response_events WHERE response_id = ? AND seq > ? ORDER BY seq", (rid, after)
        )
        return [orjson.loads(r[0]) for r in rows]

    # -- conversations -------------------------------------------------------------------------------
    async def put_conversation(self, cid: str, scope: str, created_at: int, metadata: dict[str, Any]) -> None:
        sql = (
            "INSERT INTO conversations (id, scope, created_at, expires_at, metadata) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET metadata = excluded.metadata"
        )
        await self.writes.write([(sql, (cid, scope, created_at, self._expiry(), _dumps(metadata)))])

    async def get_conversation(self, cid: str, scope: str) -> tuple[int, dict[str, Any]] | None:
        rows = await self.engine.fetch(
            "SELECT created_at, metadata FROM conversations WHERE id = ? AND scope = ?", (cid, scope)
        )
        return (int(rows[0][0]), orjson.loads(rows[0][1])) if rows else None

    async def delete_conversation(self, cid: str, scope: str) -> bool:
        if await self.get_conversation(cid, scope) is None:
            return False
        await self.writes.write(
            [
                ("DELETE FROM conversation_items WHERE conversation_id = ?", (cid,)),
                ("DELETE FROM conversations WHERE id = ?", (cid,)),
            ]
        )
        return True

    async def add_items(self, cid: str, items: list[dict[str, Any]]) -> None:
        rows = await self.engine.fetch(
            "SELECT COALESCE(MAX(pos), -1) FROM conversation_items WHERE conversation_id = ?", (cid,)
        )
        start = int(rows[0][0]) + 1
        sql = "INSERT INTO conversation_items (conversation_id, pos, id, item) VALUES (?, ?, ?, ?)"
        await self.writes.write([(sql, (cid, start + i, item["id"], _dumps(item))) for i, item in enumerate(items)])

    async def items(self, cid: str) -> list[dict[str, Any]]:
        rows = await self.engine.fetch(
            "SELECT item FROM conversation_items WHERE conversation_id = ? ORDER BY pos", (cid,)
        )
        return [orjson.loads(r[0]) for r in rows]

    async def delete_item(self, cid: str, item_id: str) -> bool:
        rows = await self.engine.fetch(
            "SELECT pos FROM conversation_items WHERE conversation_id = ? AND id = ?", (cid, item_id)
        )
        if not rows:
            return False
        await self.writes.write(
            [("DELETE FROM conversation_items WHERE conversation_id = ? AND id = ?", (cid, item_id))]
        )
        return True


class Registry:
    """Replicas registered through the admin API, kept so an adapter restart keeps them (docs/fleet.md)."""

    def __init__(self, store: Store, backend: str) -> None:
        self.store, self.backend = store, backend

    async def put(self, url: str, weight: float, labels: dict[str, str]) -> None:
        sql = (
            "INSERT INTO replicas (backend, url, weight, labels, registered_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (backend, url) DO UPDATE SET weight = excluded.weight, labels = excluded.labels"
        )
        await self.store.writes.write([(sql, (self.backend, url, weight, _dumps(labels), int(time.time())))])

    async def delete(self, url: str) -> None:
        sql = "DELETE FROM replicas WHERE backend = ? AND url = ?"
        await self.store.writes.write([(sql, (self.backend, url))])

    async def all(self) -> list[tuple[str, float, dict[str, str]]]:
        sql = "SELECT url, weight, labels FROM replicas WHERE backend = ? ORDER BY registered_at, url"
        rows = await self.store.engine.fetch(sql, (self.backend,))
        return [(r[0], float(r[1]), orjson.loads(r[2])) for r in rows]


def open_store(url: str, ttl: float = 0.0) -> Store:
    """`sqlite:///path/to/file.db` (or a bare path) or `postgresql://user:pass@host/db`."""
    if url.startswith(("postgres://", "postgresql://")):
        from .postgres import PostgresEngine

        return Store(PostgresEngine(url), ttl)
    from .sqlite import SQLiteEngine

    return Store(SQLiteEngine(url.removeprefix("sqlite://")), ttl)
