"""The one upstream client: a shared keep-alive connection pool per upstream, errors mapped once, and the
reliability policy (policy.py) applied to every request: a circuit breaker, a concurrency limit with a
bounded queue, a total timeout, and bounded retries with backoff and a budget. Retries happen only
before a reply reaches the client: a stream is handed over once its upstream answered 200."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import orjson

from . import metrics
from . import transport as transport_mod
from .breaker import CircuitBreaker
from .errors import APIError
from .limits import ConcurrencyLimit, QueueFull
from .policy import OFF, Policy
from .retry import RETRY_STATUSES, RetryBudget, retry_after

# Attempt outcomes that say the upstream itself is unwell (the breaker counts them); a 429 or a 500
# comes from an upstream that is up and answering.
_BREAKER_STATUSES = frozenset({502, 503, 504})
# Failures before any reply byte, safe to try again: no connection, a connection dropped or reset
# (a stale keep-alive one, an upstream restarting). A read timeout is not retried: the upstream is
# slow, and asking again would only add to its load.
_RETRY_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_LIMITED_METHODS = frozenset({"POST"})  # generation; GETs (models, health, stored responses) never queue


def _transport_error(exc: httpx.TransportError) -> APIError:
    if isinstance(exc, httpx.TimeoutException):
        return APIError(504, f"Upstream timed out ({type(exc).__name__}).", code="upstream_timeout")
    return APIError(502, f"Upstream unreachable ({type(exc).__name__}).", code="upstream_unreachable")


def _seconds(value: float) -> str:
    return str(max(1, math.ceil(value)))


def passthrough_headers(resp: httpx.Response) -> dict[str, str]:
    """Headers of an upstream error worth passing to the client (when to come back)."""
    ra = resp.headers.get("retry-after")
    return {"retry-after": ra} if ra else {}


def bad_reply(resp: httpx.Response) -> APIError:
    ctype = resp.headers.get("content-type", "none")
    return APIError(502, f"Upstream sent a reply that is not what was asked for ({ctype}).", code="bad_upstream_reply")


def json_reply(resp: httpx.Response) -> Any:
    """The parsed body of a 200 reply. A 502 when it is not JSON (a proxy's HTML page, a cut-off body):
    relayed as it is, it would reach the client as a 200 it cannot parse."""
    ctype = resp.headers.get("content-type")
    if ctype is not None and "json" not in ctype:
        raise bad_reply(resp)
    try:
        return orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        raise bad_reply(resp) from None


def is_event_stream(resp: httpx.Response) -> bool:
    ctype = resp.headers.get("content-type")
    return ctype is None or ctype.startswith("text/event-stream")


class Upstream:
    replicated = False  # one base URL; replicas.Replicas spreads over several

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 600.0,
        max_connections: int = 1000,
        transport: httpx.AsyncBaseTransport | None = None,
        policy: Policy | None = None,
        name: str = "upstream",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._fast: transport_mod.FastTransport | None = None
        if transport is None and transport_mod.wanted(self.base_url):
            transport = self._fast = transport_mod.FastTransport(max_connections)  # plain http: the lean pool
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=dict(headers or {}),
            params=dict(params or {}),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            trust_env=False,  # a proxy variable in the container must not reroute upstream traffic
        )
        self.name = name
        self.policy = p = policy or OFF
        self.breaker = CircuitBreaker(p.breaker_failures, p.breaker_cooldown, p.clock, self._opened)
        self.limit = ConcurrencyLimit(p.max_concurrency, p.queue_size)
        self.budget = RetryBudget(p.budget_ratio, p.budget_min, p.budget_window, p.clock)
        self._ttft = metrics.TTFT.labels(name)
        metrics.watch(metrics.CIRCUIT_STATE, name, lambda: self.breaker.state)
        metrics.watch(metrics.UPSTREAM_IN_FLIGHT, name, lambda: self.limit.active)
        metrics.watch(metrics.QUEUE_DEPTH, name, lambda: len(self.limit.waiters))

    async def aclose(self) -> None:
        await self.client.aclose()

    def _opened(self) -> None:
        metrics.CIRCUIT_OPENED.labels(self.name).inc()

    def _request(
        self,
        method: str,
        path: str,
        body: Any,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
    ) -> httpx.Request:
        content = None if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
        hdrs = dict(headers or {})
        if content is not None:
            hdrs.setdefault("content-type", "application/json")
        return self.client.build_request(method, path, content=content, headers=hdrs, params=params)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send and read the whole reply (retried as the policy allows). Transport failures, an open
        circuit and a full queue become OpenAI-format errors (502/504, 503, 429)."""
        req = self._request(method, path, body, headers, params)
        limited = method in _LIMITED_METHODS
        start = self.policy.clock()
        self._admit()
        try:
            async with asyncio.timeout(self.policy.total_timeout or None):
                if limited:
                    await self._acquire()
                try:
                    return await self._attempts(req, False, start)
                finally:
                    if limited:
                        self.limit.release()
        except TimeoutError:
            raise self._total_timeout() from None

    def stream(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> UpstreamStream:
        """Open a streamed reply (`async with`); the caller reads it. Leaving the block, or calling its
        `__aexit__` (idempotent), closes the upstream connection, which cancels the upstream request."""
        return UpstreamStream(self, self._request(method, path, body, headers, params), method in _LIMITED_METHODS)

    # -- the policy ------------------------------------------------------------------------------
    def _admit(self) -> None:
        """Fail fast while the circuit is open; count the request towards the retry budget."""
        if not self.breaker.allow():
            metrics.REJECTED.labels(self.name, "circuit_open").inc()
            wait = self.breaker.retry_after()
            msg = f"Upstream is failing; requests fail fast for {wait:.0f} s more, then one probes it."
            raise APIError(503, msg, code="upstream_circuit_open", headers={"retry-after": _seconds(wait)})
        self.budget.deposit()

    async def _acquire(self) -> None:
        try:
            await self.limit.acquire(self.policy.queue_timeout or None)
        except QueueFull:
            metrics.REJECTED.labels(self.name, "queue_full").inc()
            raise self._busy("the queue for the upstream is full") from None
        except TimeoutError:
            metrics.REJECTED.labels(self.name, "queue_timeout").inc()
            raise self._busy("no upstream slot freed up in time") from None

    def _busy(self, why: str) -> APIError:
        msg = f"Too many requests in flight to the upstream: {why}. Try again shortly."
        return APIError(429, msg, code="upstream_busy", headers={"retry-after": "1"})

    def _total_timeout(self) -> APIError:
        msg = f"Upstream did not answer within {self.policy.total_timeout:g} s (MODELYARD_TOTAL_TIMEOUT)."
        return APIError(504, msg, code="upstream_timeout")

    async def _attempts(self, req: httpx.Request, stream: bool, start: float) -> httpx.Response:
        """Send `req` until it succeeds, fails for good, or the policy says stop. Returns the last reply
        (which may be an error status for the caller to map); raises the last transport failure."""
        p, breaker, attempt = self.policy, self.breaker, 0
        while True:
            try:
                resp = await self._send(req, stream)
            except httpx.TransportError as exc:
                if not isinstance(exc, httpx.PoolTimeout):  # our own pool, not the upstream's health
                    breaker.failure()
                err = _transport_error(exc)
                if not isinstance(exc, _RETRY_ERRORS):
                    raise err from None
                delay = self._retry_delay(attempt, None, start, type(exc).__name__)
                if delay is None:
                    raise err from None
                last: httpx.Response | APIError = err
            else:
                status = resp.status_code
                if status in _BREAKER_STATUSES:
                    breaker.failure()
                else:
                    breaker.success()
                if status not in RETRY_STATUSES:
                    return resp
                delay = self._retry_delay(attempt, resp.headers, start, str(status))
                if stream:  # keep the (small) error body readable after the connection goes back
                    try:
                        await resp.aread()
                    finally:
                        await resp.aclose()
                if delay is None:
                    return resp
                last = resp
            await p.sleep(delay)
            attempt += 1
            if not breaker.allow():  # opened meanwhile: this request ends with what it got
                if isinstance(last, APIError):
                    raise last
                return last

    async def _send(self, req: httpx.Request, stream: bool) -> httpx.Response:
        """client.send, or straight to the lean transport where the client would add nothing: no auth
        hook set (Azure's token file sets one), no redirects followed, and upstream cookies are not
        wanted. It skips the client's per-request layers (auth and redirect generators, the cookie jar's
        urllib round trip), a tenth of the adapter's CPU per request in the profile."""
        if self._fast is None or self.client.auth is not None:
            return await self.client.send(req, stream=stream)
        resp = await self._fast.handle_async_request(req)
        resp.request = req
        if not stream:
            try:
                await resp.aread()
            finally:
                await resp.aclose()
        return resp

    def _retry_delay(self, attempt: int, headers: httpx.Headers | None, start: float, reason: str) -> float | None:
        """Seconds to wait before the next attempt, or None when there is none to make."""
        p = self.policy
        if attempt >= p.retries:
            return self._denied("attempts") if p.retries else None
        delay = p.random() * min(p.backoff_max, p.backoff_base * (1 << attempt))
        asked = retry_after(headers, p.wall) if headers is not None else None
        if asked is not None:
            if asked > p.retry_after_max:  # the client hears it (passthrough_headers) and decides
                return self._denied("retry_after")
            delay = max(delay, asked)
        if p.total_timeout and p.clock() + delay - start >= p.total_timeout:
            return self._denied("deadline")
        if not self.budget.withdraw():
            return self._denied("budget")
        metrics.RETRIES.labels(self.name, reason).inc()
        return delay

    def _denied(self, why: str) -> None:
        metrics.RETRIES_DENIED.labels(self.name, why).inc()
        return None


class UpstreamStream:
    """One streamed upstream request: a slot and the attempts on enter, the connection and slot given back
    on exit (exactly once, however often exit is called)."""

    __slots__ = ("_up", "_req", "_limited", "_resp", "_held", "_done")

    def __init__(self, up: Upstream, req: httpx.Request, limited: bool) -> None:
        self._up, self._req, self._limited = up, req, limited
        self._resp: httpx.Response | None = None
        self._held = False
        self._done = False

    async def __aenter__(self) -> httpx.Response:
        up, p = self._up, self._up.policy
        start = p.clock()
        up._admit()
        try:
            async with asyncio.timeout(p.total_timeout or None):
                if self._limited:
                    await up._acquire()
                    self._held = True
                resp = await up._attempts(self._req, True, start)
        except BaseException as exc:
            await self.__aexit__(None, None, None)
            if isinstance(exc, TimeoutError):
                raise up._total_timeout() from None
            raise
        if resp.status_code == 200:
            resp.stream = _FirstByte(resp.stream, start, p.clock, up._ttft.observe)
        self._resp = resp
        return resp

    async def __aexit__(self, *exc: object) -> bool:
        if self._done:
            return False
        self._done = True
        try:
            if self._resp is not None:
                await self._resp.aclose()
        finally:
            if self._held:
                self._up.limit.release()
        return False


class _FirstByte(httpx.AsyncByteStream):
    """A streamed body that reports when its first bytes arrived (time to first token, near enough:
    engines send the first chunk with the first token)."""

    __slots__ = ("_inner", "_start", "_clock", "_observe")

    def __init__(self, inner: Any, start: float, clock: Callable[[], float], observe: Callable[[float], None]) -> None:
        self._inner, self._start, self._clock, self._observe = inner, start, clock, observe

    async def __aiter__(self) -> AsyncIterator[bytes]:
        first = True
        async for chunk in self._inner:
            if first and chunk:
                first = False
                self._observe(self._clock() - self._start)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


async def sse_data(resp: httpx.Response) -> AsyncIterator[bytes]:
    """The `data:` payloads of a server-sent-event stream, as they arrive (multi-line data joined)."""
    data: list[bytes] = []
    buf = b""
    async for chunk in resp.aiter_bytes():
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl].rstrip(b"\r"), buf[nl + 1 :]
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" ") if line[5:6] == b" " else line[5:])
    if buf.strip().startswith(b"data:"):
        data.append(buf.strip()[5:].lstrip())
    if data:
        yield b"\n".join(data)
