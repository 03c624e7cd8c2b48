"""The one upstream client: the reliability policy (policy.py) applied to every request, the one retry
loop, and the one contract callers get — a good reply, parsed once, or an `APIError` in OpenAI's format.

Layers, top down:
  call / open       the contract: a 200 `Reply` (JSON parsed once) or an open 200 event stream; anything
                    else is mapped to an `APIError` by the backend's `error` hook (upstream_errors.py)
  request / stream  the policy: admission (breaker), the concurrency limit with its bounded queue, the
                    total timeout, and `_attempts`, the retry loop with backoff and a budget; replies of
                    any status (probes, tests and the contract above read them)
  Endpoints         where each attempt goes (endpoints.py: one endpoint; replicas.py: a replica set)

Retries happen only before a reply reaches the client: a stream is handed over once its upstream
answered 200.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import httpx
import orjson

from . import metrics
from .breaker import CircuitBreaker
from .endpoints import Connection, Endpoint, Endpoints, Probe, Single, Spec
from .errors import APIError
from .gate import ABORTED, Aborted, Gate
from .limits import ConcurrencyLimit, QueueFull
from .policy import OFF, Policy
from .replicas import ROUTE, Discovery, ReplicaSet
from .retry import RETRY_STATUSES, RetryBudget, retry_after
from .upstream_errors import upstream_error

# Failures before any reply byte, safe to try again: no connection, a connection dropped or reset
# (a stale keep-alive one, an upstream restarting). A read timeout is not retried: the upstream is
# slow, and asking again would only add to its load.
_RETRY_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_LIMITED_METHODS = frozenset({"POST"})  # generation; GETs (models, health, stored responses) never queue


class ErrorMap(Protocol):
    """How a backend reads its upstream's errors (backends/base.py implements it)."""

    def error(self, status: int, content: bytes | dict[str, Any]) -> APIError: ...
    def reply_error(self, reply: Reply) -> APIError | None: ...


class _Plain:
    """The error map of an upstream built without a backend (scripts, tests)."""

    def error(self, status: int, content: bytes | dict[str, Any]) -> APIError:
        return upstream_error(status, content)

    def reply_error(self, reply: Reply) -> APIError | None:
        return None


def transport_error(exc: httpx.TransportError, url: str) -> APIError:
    from .endpoints import cause

    if isinstance(exc, httpx.TimeoutException):
        return APIError(504, f"Upstream timed out ({cause(exc, url)}).", code="upstream_timeout")
    return APIError(502, f"Upstream unreachable ({cause(exc, url)}).", code="upstream_unreachable")


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


class Reply:
    """A good (200, JSON) upstream reply: its bytes to relay as they are, and its JSON, parsed once."""

    __slots__ = ("content", "headers", "json")

    def __init__(self, resp: httpx.Response) -> None:
        self.content, self.headers = resp.content, resp.headers
        self.json: Any = json_reply(resp)


class Upstream:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        endpoints: Endpoints | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 600.0,
        max_connections: int = 1000,
        transport: httpx.AsyncBaseTransport | None = None,
        auth: httpx.Auth | None = None,
        policy: Policy | None = None,
        name: str = "upstream",
        errors: ErrorMap | None = None,
        probe: Probe | None = None,
        readiness_ttl: float = 2.0,
    ) -> None:
        self.name = name
        self.policy = p = policy or OFF
        if endpoints is None:
            assert base_url is not None, "an upstream needs a base URL or its endpoints"
            conn = Connection(headers, params, connect_timeout, read_timeout, max_connections, transport, auth)
            breaker = CircuitBreaker(p.breaker_failures, p.breaker_cooldown, p.clock, self._opened)
            endpoints = Single(base_url, conn, breaker, name, probe, readiness_ttl)
            metrics.watch(metrics.CIRCUIT_STATE, name, lambda: breaker.state)
        self.endpoints = endpoints
        self.errors: ErrorMap = errors or _Plain()
        self.limit = ConcurrencyLimit(p.max_concurrency, p.queue_size)
        self.gate = Gate()
        self.fallback: Fallback | None = None  # where generations go when this upstream cannot take them
        self.budget = RetryBudget(p.budget_ratio, p.budget_min, p.budget_window, p.clock)
        self._ttft = metrics.TTFT.labels(name)
        metrics.watch(metrics.UPSTREAM_IN_FLIGHT, name, lambda: self.limit.active)
        metrics.watch(metrics.QUEUE_DEPTH, name, lambda: len(self.limit.waiters))

    @property
    def base_url(self) -> str:
        return self.endpoints.base_url  # type: ignore[attr-defined]

    @property
    def replicas(self) -> list[Endpoint]:
        """Every endpoint (one, or each replica)."""
        return self.endpoints.endpoints  # type: ignore[attr-defined]

    @property
    def client(self) -> httpx.AsyncClient:
        """The first (with one URL, the only) endpoint's connection pool."""
        return self.replicas[0].client

    @property
    def breaker(self) -> CircuitBreaker:
        """The first (with one URL, the only) endpoint's circuit breaker."""
        return self.replicas[0].breaker

    def bind(self, errors: ErrorMap, probe: Probe, readiness_ttl: float) -> None:
        """An upstream made outside its backend (tests inject one): map errors and probe as the backend does."""
        if isinstance(self.errors, _Plain):
            self.errors = errors
        if isinstance(self.endpoints, Single) and self.endpoints.cached.probe is None:
            self.endpoints.cached.probe, self.endpoints.cached.ttl = probe, readiness_ttl

    async def start(self) -> None:
        await self.endpoints.start()

    async def readiness(self) -> tuple[bool, str]:
        return await self.endpoints.readiness()

    async def aclose(self) -> None:
        await self.endpoints.aclose()

    def _opened(self) -> None:
        metrics.CIRCUIT_OPENED.labels(self.name).inc()

    # -- the contract ------------------------------------------------------------------------------
    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        """A 200 reply with its JSON parsed once, or an `APIError` (the upstream's error in OpenAI's format,
        with the headers worth passing on; an error sent with status 200; a reply that is not JSON)."""
        resp = await self.request(method, path, body, headers=headers, params=params)
        if resp.status_code != 200:
            err = self.errors.error(resp.status_code, resp.content)
            err.headers.update(passthrough_headers(resp))
            raise err
        reply = Reply(resp)
        err = self.errors.reply_error(reply)
        if err:
            raise err
        return reply

    async def open(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[UpstreamStream, httpx.Response]:
        """An open 200 event stream (close it with the returned handle's `__aexit__`, idempotent), or an
        `APIError`: an upstream error before the first byte is a plain error reply."""
        ctx = self.stream(method, path, body, headers=headers, params=params)
        resp = await ctx.__aenter__()
        if resp.status_code == 200 and is_event_stream(resp):
            return ctx, resp
        try:
            content = await resp.aread()
        except httpx.HTTPError:
            content = b""
        finally:
            await ctx.__aexit__(None, None, None)
        if resp.status_code == 200:
            raise bad_reply(resp)
        err = self.errors.error(resp.status_code, content)
        err.headers.update(passthrough_headers(resp))
        raise err

    # -- the policy --------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send and read the whole reply (retried as the policy allows); any status comes back. Transport
        failures, an open circuit and a full queue become OpenAI-format errors (502/504, 503, 429)."""
        resp, held = await self._run(Spec(method, path, body, headers, params), False)
        if held:
            self.limit.release()
        return resp

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
        return UpstreamStream(self, Spec(method, path, body, headers, params))

    async def _run(self, spec: Spec, stream: bool) -> tuple[httpx.Response, bool]:
        """`_dispatch`, or, where a fallback is set and the upstream cannot take a generation that has not
        started (every replica out, the circuit open, no slot), the fallback's (docs/fleet.md)."""
        try:
            return await self._dispatch(spec, stream)
        except APIError as err:
            fb = self.fallback
            if fb is None or spec.method not in _LIMITED_METHODS or err.code not in FALLBACK_CODES:
                raise
            return await fb.take(spec, stream, err)

    async def _dispatch(self, spec: Spec, stream: bool) -> tuple[httpx.Response, bool]:
        """Admission, the concurrency slot, the total timeout and the attempts, for plain and streamed
        requests alike. Returns the reply and whether it holds a slot (the caller gives it back)."""
        p = self.policy
        start = p.clock()
        held = False
        limited = spec.method in _LIMITED_METHODS
        gate, task = self.gate, asyncio.current_task()
        try:
            async with asyncio.timeout(p.total_timeout or None):
                if limited and gate.paused:
                    # Paused for a weight update: new generations wait here, before admission, since the
                    # engines may be restarting (every replica out) while the gate is shut.
                    await gate.wait()
                self.endpoints.admit()  # fail fast while the circuit is open or no replica is up
                self.budget.deposit()
                if limited:
                    await self._acquire()
                    held = True
                    if not stream and task is not None:
                        gate.calls.add(task)
                resp = await self._attempts(spec, stream, start)
        except BaseException as exc:
            if held:
                self.limit.release()
            if isinstance(exc, TimeoutError):
                raise self._total_timeout() from None
            if isinstance(exc, asyncio.CancelledError) and gate.aborting and task is not None and task.uncancel() == 0:
                raise gate.aborted() from None
            raise
        finally:
            if task is not None:
                gate.calls.discard(task)
        if stream and resp.status_code == 200:
            resp.stream = _FirstByte(resp.stream, start, p.clock, self._ttft.observe, gate if limited else None)
        return resp, held

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

    async def _attempts(self, spec: Spec, stream: bool, start: float) -> httpx.Response:
        """The retry loop: send until a reply that is not retryable, a failure for good, or the policy says
        stop. Returns the last reply (any status, for the caller to map); raises the last transport failure.
        Where each attempt goes is the endpoints' choice."""
        eps, p, route = self.endpoints, self.policy, ROUTE.get()
        attempt, tried, last = 0, set(), None
        while True:
            ep = eps.pick(route, tried, attempt)
            if ep is None:  # out of endpoints (or the circuit opened meanwhile): end with what we got
                if isinstance(last, httpx.Response):
                    return last
                raise last or APIError(503, "No upstream replica is up.", code="upstream_unavailable")
            ep.in_flight += 1
            try:
                resp = await ep.send(ep.build(spec), stream)
            except httpx.TransportError as exc:
                eps.failed(ep, exc)
                err = transport_error(exc, ep.base_url)
                tried.add(ep.index)
                if not isinstance(exc, _RETRY_ERRORS):
                    raise err from None
                delay = self._retry_delay(attempt, None, start, type(exc).__name__)
                if delay is None:
                    raise err from None
                last: httpx.Response | APIError | None = err
            else:
                status = resp.status_code
                eps.answered(ep, status)
                delay = (
                    None
                    if status not in RETRY_STATUSES
                    else self._retry_delay(attempt, resp.headers, start, str(status))
                )
                if delay is None:
                    eps.routed(route, ep)
                    return eps.hold(resp, ep, stream)
                tried.add(ep.index)
                if stream:  # keep the (small) error body readable after the connection goes back
                    try:
                        await resp.aread()
                    finally:
                        await resp.aclose()
                last = resp
            finally:
                ep.in_flight -= 1
            attempt += 1
            if eps.must_wait(tried):
                await p.sleep(delay)

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


# Refusals before anything reached an engine: safe to send the request elsewhere.
FALLBACK_CODES = frozenset({"upstream_unavailable", "upstream_circuit_open", "upstream_busy"})
# Engine-only request fields a generic OpenAI-compatible fallback would refuse.
_ENGINE_ONLY = ("return_token_ids", "kv_transfer_params", "chat_template_kwargs", "min_tokens", "top_k")


class Fallback:
    """A named fallback backend (MODELYARD_FALLBACK_URL, off by default): an OpenAI-compatible chat upstream
    with its own key and model. The reply says it came from there (x-modelyard-fallback, and the
    modelyard_fallback_total metric); RL runs usually keep it off, since another policy answers."""

    def __init__(self, name: str, upstream: Upstream, model: str) -> None:
        self.name, self.upstream, self.model = name, upstream, model

    async def take(self, spec: Spec, stream: bool, why: APIError) -> tuple[httpx.Response, bool]:
        from .calls import current

        body = orjson.loads(spec.content) if spec.content else {}
        for key in _ENGINE_ONLY:
            body.pop(key, None)
        if self.model:
            body["model"] = self.model
        moved = Spec(spec.method, spec.path, body, spec.headers, spec.params)
        metrics.FALLBACKS.labels(self.upstream.name, why.code or "").inc()
        if (call := current()) is not None:
            call.fallback = self.name
        resp, held = await self.upstream._dispatch(moved, stream)
        if held:  # the fallback's own slot is not the primary's to give back
            self.upstream.limit.release()
        return resp, False


class UpstreamStream:
    """One streamed upstream request: admission and the attempts on enter, the connection and the
    concurrency slot given back on exit (exactly once, however often exit is called)."""

    __slots__ = ("_up", "_spec", "_resp", "_held", "_done")

    def __init__(self, up: Upstream, spec: Spec) -> None:
        self._up, self._spec = up, spec
        self._resp: httpx.Response | None = None
        self._held = False
        self._done = False

    async def __aenter__(self) -> httpx.Response:
        self._resp, self._held = await self._up._run(self._spec, True)
        return self._resp

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

    __slots__ = ("_inner", "_start", "_clock", "_observe", "_gate")

    def __init__(
        self, inner: Any, start: float, clock: Callable[[], float], observe: Callable[[float], None], gate: Gate | None
    ) -> None:
        self._inner, self._start, self._clock, self._observe, self._gate = inner, start, clock, observe, gate

    async def __aiter__(self) -> AsyncIterator[bytes]:
        first, gate = True, self._gate
        if gate is not None:
            gate.streams += 1
        try:
            async for chunk in self._inner:
                if first and chunk:
                    first = False
                    self._observe(self._clock() - self._start)
                if gate is not None and gate.aborting:  # a weight update asked for in-flight work to end
                    raise Aborted(ABORTED)
                yield chunk
        finally:
            if gate is not None:
                gate.streams -= 1

    async def aclose(self) -> None:
        await self._inner.aclose()


def replica_set(
    base_urls: tuple[str, ...] | list[str], *, probe: Probe, probe_interval: float = 2.0,
    session_table_size: int = 100_000, rebalance_factor: float = 0.0, discover: Discovery | None = None,
    policy: Policy | None = None, name: str = "upstream", errors: ErrorMap | None = None, **conn: Any,
) -> Upstream:  # fmt: skip
    """An upstream over several engine replicas (docs/replicas.md), fixed or discovered (docs/fleet.md)."""
    p = policy or OFF
    eps = ReplicaSet(
        base_urls, Connection(**conn), p, name, probe=probe, probe_interval=probe_interval,
        session_table_size=session_table_size, rebalance_factor=rebalance_factor, discover=discover,
    )  # fmt: skip
    return Upstream(endpoints=eps, policy=p, name=name, errors=errors)
