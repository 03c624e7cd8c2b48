"""Several engine replicas behind one adapter (docs/replicas.md).

MODELYARD_UPSTREAM_URL may list several base URLs. A `Replicas` is an `Upstream` whose attempts each go to
one replica: the one a session sticks to, else the least-loaded healthy one. Each replica has its own
connection pool and circuit breaker, a background health probe (the backend's own: vLLM /health, NIM
/v1/health/ready) and an in-flight count. A replica that refuses connections or fails its probe is taken
out at once and put back when its probe passes again; a request that has not started streaming is retried
on another replica (the retry budget and attempt count still apply).

Sessions: the `x-session-id` request header (a table maps it to a replica), else the `modelyard-replica`
cookie the adapter sets on every routed reply. The replica that answered is named in the
`x-modelyard-replica` reply header. With one URL none of this runs: the app uses a plain `Upstream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from . import metrics
from .breaker import CLOSED, CircuitBreaker
from .errors import APIError
from .policy import OFF, Policy
from .retry import RETRY_STATUSES
from .upstream import _BREAKER_STATUSES, _RETRY_ERRORS, Upstream, _transport_error

log = logging.getLogger("modelyard")

SESSION_HEADER = "x-session-id"
COOKIE = "modelyard-replica"
REPLICA_HEADER = "x-modelyard-replica"
# A replica that does not connect is down now; waiting for its next probe would only fail more requests.
_DOWN_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)

Probe = Callable[[Upstream], Awaitable[tuple[bool, str]]]


class Route:
    """One client request's routing: what it asked for (session, cookie) and where it went. Shared by
    reference through ROUTE, so what the upstream decides reaches the middleware that writes the headers."""

    __slots__ = ("session", "cookie", "replica")

    def __init__(self, session: str | None, cookie: int | None) -> None:
        self.session, self.cookie = session, cookie
        self.replica: int | None = None


ROUTE: ContextVar[Route | None] = ContextVar("modelyard_route", default=None)


class Replica:
    __slots__ = ("index", "label", "host", "up", "breaker", "in_flight", "healthy", "detail")

    def __init__(self, index: int, up: Upstream, breaker: CircuitBreaker) -> None:
        self.index, self.label, self.up, self.breaker = index, str(index), up, breaker
        parts = urlsplit(up.base_url)
        self.host = f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or "")
        self.in_flight = 0
        self.healthy = True  # until a probe or a refused connection says otherwise
        self.detail = "not probed yet"

    def available(self, now: float) -> bool:
        """Takes requests: healthy, and its breaker closed or due for a probe request."""
        b = self.breaker
        return self.healthy and (b.state == CLOSED or now >= b.until)


class _Spec:
    """A request as asked, built against a replica's base URL per attempt."""

    __slots__ = ("method", "path", "content", "headers", "params")

    def __init__(self, method: str, path: str, content: bytes | None, headers: dict[str, str], params: Any) -> None:
        self.method, self.path, self.content, self.headers, self.params = method, path, content, headers, params


class _Released(httpx.AsyncByteStream):
    """A streamed body that gives its replica's in-flight slot back when closed (once)."""

    __slots__ = ("_inner", "_release")

    def __init__(self, inner: Any, release: Callable[[], None]) -> None:
        self._inner, self._release = inner, release

    async def __aiter__(self):
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._release()


class Replicas(Upstream):
    replicated = True

    def __init__(
        self,
        base_urls: tuple[str, ...] | list[str],
        *,
        probe: Probe,
        probe_interval: float = 2.0,
        session_table_size: int = 100_000,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 600.0,
        max_connections: int = 1000,
        transport: httpx.AsyncBaseTransport | None = None,
        policy: Policy | None = None,
        name: str = "upstream",
    ) -> None:
        p = policy or OFF
        conn = {"headers": headers, "params": params, "connect_timeout": connect_timeout}
        conn |= {"read_timeout": read_timeout, "max_connections": max_connections, "transport": transport}
        # Built before super().__init__ so the set's own gauges (circuit state, in flight) are the ones kept.
        self.replicas = [
            Replica(i, Upstream(u, policy=OFF, name=name, **conn), self._breaker(p)) for i, u in enumerate(base_urls)
        ]
        super().__init__(base_urls[0], policy=p, name=name, **conn)
        # The set's breaker never opens: each replica has its own, and the set fails only when all are out.
        self.breaker = CircuitBreaker(0, p.breaker_cooldown, p.clock)
        self.probe, self.probe_interval = probe, probe_interval
        self.sessions: OrderedDict[str, int] = OrderedDict()
        self.session_table_size = session_table_size
        self._rr = 0
        self._task: asyncio.Task[None] | None = None
        metrics.watch(metrics.CIRCUIT_STATE, name, lambda: min(r.breaker.state for r in self.replicas))
        metrics.SESSIONS.labels(name).set_function(lambda: len(self.sessions))
        for r in self.replicas:
            r.breaker.on_open = self._opened
            metrics.REPLICA_HEALTHY.labels(name, r.label, r.host).set_function(
                lambda r=r: 1.0 if r.available(p.clock()) else 0.0
            )
            metrics.REPLICA_IN_FLIGHT.labels(name, r.label).set_function(lambda r=r: r.in_flight)

    @staticmethod
    def _breaker(p: Policy) -> CircuitBreaker:
        return CircuitBreaker(p.breaker_failures, p.breaker_cooldown, p.clock)

    # -- life ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Probe every replica once (so readiness is known at once), then keep probing in the background."""
        await self.probe_all()
        self._task = asyncio.create_task(self._probe_loop(), name="modelyard-replica-probe")

    async def aclose(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for r in self.replicas:
            await r.up.aclose()
        await self.client.aclose()

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            await self.probe_all()

    async def probe_all(self) -> None:
        await asyncio.gather(*(self._probe_one(r) for r in self.replicas))

    async def _probe_one(self, r: Replica) -> None:
        try:
            async with asyncio.timeout(max(1.0, min(5.0, self.probe_interval * 2))):
                ok, detail = await self.probe(r.up)
        except Exception as exc:  # noqa: BLE001 - any failure is "down"; say which
            ok, detail = False, getattr(exc, "message", None) or type(exc).__name__
        r.detail = detail
        if ok:
            if r.breaker.state != CLOSED:
                r.breaker.success()  # healthy again: no need to wait out the cooldown
            self._mark(r, True, detail)
        else:
            self._mark(r, False, detail)

    def _mark(self, r: Replica, healthy: bool, why: str) -> None:
        if r.healthy == healthy:
            return
        r.healthy = healthy
        metrics.REPLICA_TRANSITIONS.labels(self.name, r.label, "up" if healthy else "down").inc()
        if healthy:
            log.info("replica %s (%s) put back: %s", r.label, r.host, why, extra={"backend": self.name})
        else:
            log.warning("replica %s (%s) taken out: %s", r.label, r.host, why, extra={"backend": self.name})

    def readiness(self) -> tuple[bool, str]:
        now = self.policy.clock()
        up = [r for r in self.replicas if r.available(now)]
        states = "; ".join(f"{r.label} {r.host}: {'up' if r in up else 'out'} ({r.detail})" for r in self.replicas)
        return bool(up), f"{len(up)}/{len(self.replicas)} replicas up: {states}"

    # -- routing -----------------------------------------------------------------------------------
    def _pick(self, route: Route | None, tried: set[int]) -> Replica | None:
        """The session's replica where it is available and not tried yet, else the least-loaded available
        one not tried (ties in turn), else any available one; None when every replica is out."""
        now = self.policy.clock()
        reps = self.replicas
        while True:
            avail = [r for r in reps if r.available(now)]
            if not avail:
                return None
            want = None
            if route is not None:
                want = self.sessions.get(route.session) if route.session is not None else route.cookie
            if want is not None and want not in tried and reps[want] in avail:
                chosen = reps[want]
            else:
                fresh = [r for r in avail if r.index not in tried] or avail
                self._rr += 1
                n, rr = len(reps), self._rr
                chosen = min(fresh, key=lambda r: (r.in_flight, (r.index - rr) % n))
            if chosen.breaker.allow():
                return chosen
            # Its half-open probe request is already out: not this one for now.
            tried = tried | {chosen.index}
            if all(r.index in tried for r in avail):
                return None

    def _routed(self, route: Route | None, r: Replica) -> None:
        if route is None:
            return
        route.replica = r.index
        if route.session is not None:
            sessions = self.sessions
            if sessions.get(route.session) != r.index:
                sessions[route.session] = r.index
            sessions.move_to_end(route.session)
            while len(sessions) > self.session_table_size:
                sessions.popitem(last=False)

    # -- the policy, per replica ---------------------------------------------------------------
    def _admit(self) -> None:
        now = self.policy.clock()
        if not any(r.available(now) for r in self.replicas):
            metrics.REJECTED.labels(self.name, "no_replica").inc()
            wait = min((r.breaker.retry_after() for r in self.replicas if r.healthy), default=self.probe_interval)
            msg = "No upstream replica is up (each failed its health check or its circuit is open); try again shortly."
            raise APIError(
                503, msg, code="upstream_unavailable", headers={"retry-after": str(max(1, int(wait + 0.999)))}
            )
        self.budget.deposit()

    def _request(self, method: str, path: str, body: Any, headers: Any, params: Any) -> _Spec:  # type: ignore[override]
        content = None if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
        hdrs = dict(headers or {})
        if content is not None:
            hdrs.setdefault("content-type", "application/json")
        return _Spec(method, path, content, hdrs, params)

    async def _attempts(self, spec: _Spec, stream: bool, start: float) -> httpx.Response:  # type: ignore[override]
        p, attempt, route, name = self.policy, 0, ROUTE.get(), self.name
        tried: set[int] = set()
        last: httpx.Response | APIError | None = None
        while True:
            r = self._pick(route, tried)
            if r is None:  # every replica is out: this request ends with what it got
                if isinstance(last, httpx.Response):
                    return last
                raise last or APIError(503, "No upstream replica is up.", code="upstream_unavailable")
            if tried and r.index not in tried:
                for t in tried:
                    metrics.REPLICA_FAILOVERS.labels(name, str(t)).inc()
            client = r.up.client
            req = client.build_request(
                spec.method, spec.path, content=spec.content, headers=spec.headers, params=spec.params
            )
            r.in_flight += 1
            try:
                resp = await r.up._send(req, stream)  # the replica's lean transport where it has one
            except httpx.TransportError as exc:
                r.in_flight -= 1
                metrics.REPLICA_REQUESTS.labels(name, r.label, type(exc).__name__).inc()
                if not isinstance(exc, httpx.PoolTimeout):
                    r.breaker.failure()
                if isinstance(exc, _DOWN_ERRORS):
                    r.detail = f"{type(exc).__name__} on a request"
                    self._mark(r, False, r.detail)
                err = _transport_error(exc)
                tried.add(r.index)
                if not isinstance(exc, _RETRY_ERRORS):
                    raise err from None
                delay = self._retry_delay(attempt, None, start, type(exc).__name__)
                if delay is None:
                    raise err from None
                last = err
            except BaseException:
                r.in_flight -= 1
                raise
            else:
                status = resp.status_code
                metrics.REPLICA_REQUESTS.labels(name, r.label, str(status)).inc()
                if status in _BREAKER_STATUSES:
                    r.breaker.failure()
                else:
                    r.breaker.success()
                if status not in RETRY_STATUSES:
                    self._routed(route, r)
                    return self._hold(resp, r, stream)
                tried.add(r.index)
                delay = self._retry_delay(attempt, resp.headers, start, str(status))
                if delay is None:
                    self._routed(route, r)
                    return self._hold(resp, r, stream)
                try:
                    if stream:  # keep the (small) error body readable after the connection goes back
                        await resp.aread()
                        await resp.aclose()
                finally:
                    r.in_flight -= 1
                last = resp
            attempt += 1
            # Another replica is tried at once; the same one again only after the backoff.
            now = p.clock()
            if not any(x.available(now) and x.index not in tried for x in self.replicas):
                await p.sleep(delay)

    @staticmethod
    def _hold(resp: httpx.Response, r: Replica, stream: bool) -> httpx.Response:
        """The reply keeps its replica's in-flight slot until read (non-streamed: already) or closed."""
        if not stream:
            r.in_flight -= 1
            return resp
        done = False

        def release() -> None:
            nonlocal done
            if not done:
                done = True
                r.in_flight -= 1

        resp.stream = _Released(resp.stream, release)
        return resp


# ---------------------------------------------------------------- the HTTP side


def _cookie(raw: bytes, n: int) -> int | None:
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == COOKIE:
            try:
                index = int(value)
            except ValueError:
                return None
            return index if 0 <= index < n else None
    return None


class ReplicaRouting:
    """ASGI middleware (installed only with several replicas): reads the session header and cookie into a
    Route for the upstream, and names the replica that answered in a header and the cookie."""

    def __init__(self, app: Any, replicas: int) -> None:
        self.app, self.n = app, replicas

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = cookie = None
        for key, value in scope["headers"]:
            if key == b"x-session-id" and value:
                session = value.decode("latin-1")
            elif key == b"cookie":
                cookie = _cookie(value, self.n)
        route = Route(session, cookie)
        token = ROUTE.set(route)

        async def send_routed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and route.replica is not None:
                index = route.replica
                headers = list(message.get("headers", []))
                headers.append((REPLICA_HEADER.encode(), str(index).encode()))
                if cookie != index:
                    value = f"{COOKIE}={index}; Path=/; HttpOnly; SameSite=Lax"
                    headers.append((b"set-cookie", value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_routed)
        finally:
            ROUTE.reset(token)
