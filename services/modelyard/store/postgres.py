"""PostgreSQL, for several adapters or hosts sharing one store (asyncpg, a small pool). Migrations run
under an advisory lock, so adapters starting together apply each one once."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .base import Statement
from .schema import MIGRATIONS

_PLACEHOLDER = re.compile(r"\?")
_LOCK = 7_361_954_210  # pg_advisory_lock key: "modelyard migrations"


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's $1, $2, …"""
    n = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(n)}", sql)


class PostgresEngine:
    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url, self.pool_size = url, pool_size
        self._pool: Any = None

    async def start(self) -> None:
        import asyncpg

        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            done = {row[0] for row in await conn.fetch("SELECT version FROM schema_version")}
            for version, statements in MIGRATIONS:
                if version in done:
                    continue
                for sql in statements:
                    await conn.execute(sql)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows = await self._pool.fetch(numbered(sql), *args)
        return [tuple(r) for r in rows]

    async def commit(self, statements: list[Statement]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            for sql, args in statements:
                await conn.execute(numbered(sql), *args)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
