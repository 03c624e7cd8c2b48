"""A lean HTTP/1.1 keep-alive transport for plain-http upstreams (a vLLM or NIM engine beside the adapter).

httpx's default transport (httpcore on anyio) was half of the adapter's CPU per request in the profile
(docs/benchmarks.md): cancel scopes, socket-readability polls of every pooled connection, h11 events.
This one is an asyncio protocol per connection with httptools' C parser, a LIFO pool of idle
connections per host, and the same contract as any httpx transport: httpx's timeouts and exception
types (ConnectError, ConnectTimeout, ReadTimeout, RemoteProtocolError, PoolTimeout), so the retry and
breaker policy in upstream.py reads them as before. https upstreams keep httpx's own transport (TLS,
proxies, HTTP/2 are not this module's business). MODELYARD_HTTP_TRANSPORT=httpx turns it off.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

_HIGH_WATER = 1 << 20  # stop reading a connection while this much body is buffered unread
_IDLE_EXPIRY = 30.0  # seconds an idle connection is kept (engines' keep-alive timeouts are longer)


def wanted(base_url: str) -> bool:
    return base_url.startswith("http://") and os.environ.get("MODELYARD_HTTP_TRANSPORT", "fast") != "httpx"


class _Conn(asyncio.Protocol):
    """One upstream connection; parses one response at a time."""

    __slots__ = (
        "transport",
        "parser",
        "key",
        "closed",
        "status",
        "headers",
        "head",
        "chunks",
        "buffered",
        "complete",
        "wake",
        "error",
        "keep_alive",
        "idle_since",
        "paused",
    )

    def __init__(self, key: tuple[str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.wake: asyncio.Future[None] | None = None
        self.error: Exception | None = None
        self.keep_alive = True
        self.paused = False

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"Malformed upstream reply: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            msg = "Upstream closed the connection" + ("" if self.head.done() else " before replying")
            self._fail(httpx.RemoteProtocolError(msg) if exc is None else httpx.ReadError(str(exc) or msg))

    def pause_writing(self) -> None:  # the upstream reads slowly; the request is small, nothing to do
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks -----------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # -- helpers -----------------------------------------------------------------------------------
    def _wake(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        if not self.head.done():
            self.head.set_exception(exc)
            self.head.exception()  # retrieved: no "never retrieved" warning when nobody waits
        self._wake()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def next_chunk(self, timeout: float | None) -> bytes | None:
        """The next body bytes, or None at the end of the reply."""
        while True:
            if self.chunks:
                data = self.chunks.popleft()
                self.buffered -= len(data)
                if self.paused and self.buffered <= _HIGH_WATER // 2 and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                return data
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            # A plain timer, not `asyncio.timeout`: this wait comes once a streamed token, and the context
            # manager (its own object, the task's cancel bookkeeping) was ~7 % of a stream's CPU.
            loop = asyncio.get_running_loop()
            self.wake = wake = loop.create_future()
            timer = loop.call_later(timeout, _read_timed_out, wake) if timeout is not None else None
            try:
                await wake
            finally:
                self.wake = None
                if timer is not None:
                    timer.cancel()


def _read_timed_out(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_exception(httpx.ReadTimeout("Upstream sent nothing within the read timeout."))


class _Body(httpx.AsyncByteStream):
    """The reply body; the connection goes back to the pool when the body was read to its end."""

    __slots__ = ("_pool", "_conn", "_timeout", "_done")

    def __init__(self, pool: FastTransport, conn: _Conn, timeout: float | None) -> None:
        self._pool, self._conn, self._timeout, self._done = pool, conn, timeout, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            try:
                data = await conn.next_chunk(self._timeout)
            except BaseException:
                await self.aclose()
                raise
            if data is None:
                break
            yield data

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        self._pool._release(self._conn, reuse=self._conn.complete and self._conn.keep_alive)


class FastTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int = 1000) -> None:
        self.max_connections = max_connections
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._open = 0  # connections open or being opened (in use or idle)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        url = request.url
        key = (url.host, url.port or 80)
        try:
            body = request.content
            raw = request.headers.raw
        except httpx.RequestNotRead:  # a streamed request body: sent whole, with its length
            body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
            raw = [(k, v) for k, v in request.headers.raw if k.lower() not in (b"transfer-encoding", b"content-length")]
            raw.append((b"content-length", str(len(body)).encode()))
        head = [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in raw:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        payload = b"".join(head) + body

        conn = await self._acquire(key, timeouts.get("connect"), timeouts.get("pool"), request)
        try:
            conn.transport.write(payload)  # type: ignore[union-attr]
            try:
                async with asyncio.timeout(timeouts.get("read")):
                    await conn.head
            except TimeoutError:
                raise httpx.ReadTimeout("Upstream did not answer within the read timeout.", request=request) from None
        except BaseException:
            self._release(conn, reuse=False)
            raise
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_Body(self, conn, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _acquire(
        self, key: tuple[str, int], connect: float | None, pool: float | None, request: httpx.Request
    ) -> _Conn:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed
            if not conn.closed and now - conn.idle_since < _IDLE_EXPIRY:
                conn._reset()
                return conn
            conn.close()
            self._open -= 1
        while self._open >= self.max_connections:
            if not self._evict_idle():
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    async with asyncio.timeout(pool):
                        await waiter
                except TimeoutError:
                    raise httpx.PoolTimeout("No upstream connection freed up in time.", request=request) from None
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                idle = self._idle.get(key)
                if idle:
                    return await self._acquire(key, connect, pool, request)
        self._open += 1
        try:
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(connect):
                    _, conn = await loop.create_connection(lambda: _Conn(key), key[0], key[1])
            except TimeoutError:
                raise httpx.ConnectTimeout(f"Connecting to {key[0]}:{key[1]} timed out.", request=request) from None
            except OSError as exc:
                msg = f"Cannot connect to {key[0]}:{key[1]}: {exc.strerror or exc}"
                raise httpx.ConnectError(msg, request=request) from None
        except BaseException:
            self._open -= 1
            self._notify()
            raise
        return conn

    def _evict_idle(self) -> bool:
        """At the limit: close one idle connection to another host to make room."""
        for conns in self._idle.values():
            if conns:
                conns.pop(0).close()
                self._open -= 1
                return True
        return False

    def _notify(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _release(self, conn: _Conn, reuse: bool) -> None:
        if reuse and not conn.closed and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            conn.close()
            self._open -= 1
        self._notify()

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
