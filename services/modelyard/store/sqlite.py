"""SQLite, the embedded default: one connection on one thread of its own (sqlite3 is blocking), WAL so
readers never wait for the writer, and synchronous=NORMAL: a committed write survives the adapter being
killed (the WAL is on disk; only a power cut could lose the last commits)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .base import Statement
from .schema import MIGRATIONS


class SQLiteEngine:
    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelyard-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        if self.path not in ("", ":memory:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path or ":memory:", check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        done = {row[0] for row in db.execute("SELECT version FROM schema_version")}
        for version, statements in MIGRATIONS:
            if version in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            for sql in statements:
                db.execute(sql)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            db.execute("COMMIT")
        self._db = db

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._run(self._fetch, sql, args)

    def _fetch(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(sql, tuple(args)).fetchall()

    async def commit(self, statements: list[Statement]) -> None:
        await self._run(self._commit, statements)

    def _commit(self, statements: list[Statement]) -> None:
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                db.execute(sql, tuple(args))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=False)
