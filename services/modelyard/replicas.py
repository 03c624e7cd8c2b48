"""Several engine replicas behind one adapter (docs/replicas.md).

MODELYARD_UPSTREAM_URL may list several base URLs. A `ReplicaSet` is the `Endpoints` (endpoints.py) of such
an upstream: each attempt of the upstream's one retry loop goes to one replica, the one a session sticks
to, else the least-loaded healthy one. Each replica is an `Endpoint` with its own connection pool and
circuit breaker, a background health probe (the backend's own: vLLM /health, NIM /v1/health/ready) and an
in-flight count. A replica that refuses connections or fails its probe is taken out at once and put back
when its probe passes again; a request that has not started streaming is retried on another replica (the
retry budget and attempt count still apply).

Sessions: the `x-session-id` request header (a table maps it to a replica), else the `modelyard-replica`
cookie the adapter sets on every routed reply. The replica that answered is named in the
`x-modelyard-replica` reply header. With one URL none of this runs: the upstream has a `Single` endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from . import metrics
from .breaker import CLOSED, CircuitBreaker
from .endpoints import BREAKER_STATUSES, Connection, Endpoint, Probe, cause
from .errors import APIError
from .policy import Policy

log = logging.getLogger("modelyard")

Discovery = Callable[[], Awaitable[list[str]]]  # the members' base URLs now (dns_discovery)

SESSION_HEADER = "x-session-id"
COOKIE = "modelyard-replica"
REPLICA_HEADER = "x-modelyard-replica"
# A replica that does not connect is down now; waiting for its next probe would only fail more requests.
_DOWN_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)


class Route:
    """One client request's routing: what it asked for (session, cookie) and where it went. Shared by
    reference through ROUTE, so what the upstream decides reaches the middleware that writes the headers."""

    __slots__ = ("session", "cookie", "replica")

    def __init__(self, session: str | None, cookie: int | None) -> None:
        self.session, self.cookie = session, cookie
        self.replica: int | None = None


ROUTE: ContextVar[Route | None] = ContextVar("modelyard_route", default=None)


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


class ReplicaSet:
    """Replicas as the upstream's endpoints: probes, breakers, the session table and the choice of replica."""

    def __init__(
        self,
        base_urls: tuple[str, ...] | list[str],
        conn: Connection,
        policy: Policy,
        name: str,
        *,
        probe: Probe,
        probe_interval: float = 2.0,
        session_table_size: int = 100_000,
        rebalance_factor: float = 0.0,
        discover: Discovery | None = None,
    ) -> None:
        self.name, self.policy, self.clock, self.conn = name, policy, policy.clock, conn
        self.replicas: list[Endpoint] = []  # the members, in the order they joined
        self.by_index: dict[int, Endpoint] = {}  # every member by its index (stable: sessions and cookies hold it)
        self.draining: dict[int, Endpoint] = {}  # left the set, finishing what they carry
        self.sources: dict[int, str] = {}  # how each member joined: "static", "dns", "registered"
        self.weights: dict[int, float] = {}
        self.labels: dict[int, dict[str, str]] = {}
        self._next = 0
        self.endpoints = self.replicas
        self.probe, self.probe_interval = probe, probe_interval
        self.sessions: OrderedDict[str, int] = OrderedDict()
        self.session_table_size = session_table_size
        # A session moves off its replica when that one carries more than this many times the in-flight
        # requests of the least-loaded one (0: sessions never move while their replica is up).
        self.rebalance_factor = rebalance_factor
        self.discover = discover
        self._rr = 0
        self._task: asyncio.Task[None] | None = None
        metrics.watch(metrics.CIRCUIT_STATE, name, lambda: min((r.breaker.state for r in self.replicas), default=0))
        metrics.SESSIONS.labels(name).set_function(lambda: len(self.sessions))
        for url in base_urls:
            self.add(url, "static")

    @property
    def dynamic(self) -> bool:
        """Members may come and go (DNS discovery, registration): routing is set up even for one."""
        return self.discover is not None

    def add(self, url: str, source: str, weight: float = 1.0, labels: dict[str, str] | None = None) -> Endpoint:
        """A member joins (probed before it takes requests, unless it is a static one known at start)."""
        url = url.rstrip("/")
        for r in self.replicas:
            if r.base_url == url:
                self.weights[r.index], self.labels[r.index] = weight, labels or {}
                return r
        p = self.policy
        r = Endpoint(url, CircuitBreaker(p.breaker_failures, p.breaker_cooldown, p.clock), self.conn, self._next)
        self._next += 1
        if source != "static":
            r.healthy, r.detail = False, "joined, not probed yet"
        r.breaker.on_open = lambda: metrics.CIRCUIT_OPENED.labels(self.name).inc()
        metrics.REPLICA_HEALTHY.labels(self.name, r.label, r.host).set_function(
            lambda r=r: 1.0 if r.available(self.clock()) else 0.0
        )
        metrics.REPLICA_IN_FLIGHT.labels(self.name, r.label).set_function(lambda r=r: r.in_flight)
        self.replicas.append(r)
        self.by_index[r.index] = r
        self.sources[r.index], self.weights[r.index], self.labels[r.index] = source, weight, labels or {}
        if source != "static":
            log.info("replica %s (%s) joined (%s)", r.label, r.host, source, extra={"backend": self.name})
        return r

    def remove(self, url: str) -> Endpoint | None:
        """A member leaves: no new requests; what it carries finishes (then its pool closes); its sessions
        move on their next request."""
        url = url.rstrip("/")
        for r in self.replicas:
            if r.base_url == url:
                self.replicas.remove(r)
                self.draining[r.index] = r
                log.info("replica %s (%s) left: draining %d in flight", r.label, r.host, r.in_flight,
                         extra={"backend": self.name})  # fmt: skip
                return r
        return None

    async def _reap(self) -> None:
        """Close the pools of members that left once they carry nothing."""
        for index, r in list(self.draining.items()):
            if r.in_flight == 0:
                del self.draining[index]
                self.by_index.pop(index, None)
                metrics.REPLICA_HEALTHY.remove(self.name, r.label, r.host)
                metrics.REPLICA_IN_FLIGHT.remove(self.name, r.label)
                await r.aclose()

    @property
    def base_url(self) -> str:
        return self.replicas[0].base_url

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
        for r in [*self.replicas, *self.draining.values()]:
            await r.aclose()

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            await self.probe_all()

    async def refresh(self) -> None:
        """Ask discovery who the members are now: new ones join, vanished ones drain."""
        if self.discover is None:
            return
        try:
            urls = await self.discover()
        except Exception as exc:  # noqa: BLE001 - keep the members we have; say why
            log.warning("replica discovery failed: %s", exc, extra={"backend": self.name})
            return
        current = {r.base_url for r in self.replicas if self.sources[r.index] == "dns"}
        for url in sorted(set(urls) - current):
            self.add(url, "dns")
        for url in sorted(current - set(urls)):
            self.remove(url)

    async def probe_all(self) -> None:
        await self.refresh()
        await asyncio.gather(*(self._probe_one(r) for r in self.replicas))
        await self._reap()

    async def _probe_one(self, r: Endpoint) -> None:
        try:
            async with asyncio.timeout(max(1.0, min(5.0, self.probe_interval * 2))):
                ok, detail = await self.probe(r)
        except Exception as exc:  # noqa: BLE001 - any failure is "down"; say which
            ok, detail = False, cause(exc, r.base_url)
        r.detail = detail
        if ok and r.breaker.state != CLOSED:
            r.breaker.success()  # healthy again: no need to wait out the cooldown
        self._mark(r, ok, detail)

    def _mark(self, r: Endpoint, healthy: bool, why: str) -> None:
        if r.healthy == healthy:
            return
        r.healthy = healthy
        metrics.REPLICA_TRANSITIONS.labels(self.name, r.label, "up" if healthy else "down").inc()
        if healthy:
            log.info("replica %s (%s) put back: %s", r.label, r.host, why, extra={"backend": self.name})
        else:
            log.warning("replica %s (%s) taken out: %s", r.label, r.host, why, extra={"backend": self.name})

    async def readiness(self) -> tuple[bool, str]:
        now = self.clock()
        up = [r for r in self.replicas if r.available(now)]
        states = "; ".join(f"{r.label} {r.host}: {'up' if r in up else 'out'} ({r.detail})" for r in self.replicas)
        return bool(up), f"{len(up)}/{len(self.replicas)} replicas up: {states}"

    def describe(self) -> list[dict[str, Any]]:
        """Every member and what it is doing (GET /admin/replicas)."""
        now = self.clock()
        sessions: dict[int, int] = {}
        for index in self.sessions.values():
            sessions[index] = sessions.get(index, 0) + 1
        members = [(r, "member") for r in self.replicas] + [(r, "draining") for r in self.draining.values()]
        return [
            {
                "index": r.index, "url": r.base_url, "source": self.sources[r.index], "state": state,
                "healthy": r.available(now), "detail": r.detail, "in_flight": r.in_flight,
                "sessions": sessions.get(r.index, 0), "weight": self.weights[r.index], "labels": self.labels[r.index],
            }
            for r, state in members
        ]  # fmt: skip

    # -- the upstream's questions, per attempt ------------------------------------------------------
    def admit(self) -> None:
        now = self.clock()
        if not any(r.available(now) for r in self.replicas):
            metrics.REJECTED.labels(self.name, "no_replica").inc()
            wait = min((r.breaker.retry_after() for r in self.replicas if r.healthy), default=self.probe_interval)
            msg = "No upstream replica is up (each failed its health check or its circuit is open); try again shortly."
            details = "; ".join(f"{r.label} {r.host}: {r.detail}" for r in self.replicas)
            raise APIError(
                503,
                f"{msg} {details}",
                code="upstream_unavailable",
                headers={"retry-after": str(max(1, int(wait + 0.999)))},
            )

    def pick(self, route: Route | None, tried: set[int], attempt: int = 0) -> Endpoint | None:
        """The session's replica where it is available and not tried yet, else the least-loaded available
        one not tried (ties in turn), else any available one; None when every replica is out."""
        now = self.clock()
        reps, weights = self.replicas, self.weights
        while True:
            avail = [r for r in reps if r.available(now)]
            if not avail:
                return None
            want = None
            if route is not None:
                want = self.sessions.get(route.session) if route.session is not None else route.cookie
            sticky = self.by_index.get(want) if want is not None and want not in tried else None
            if sticky is not None and sticky in avail and not self._overloaded(sticky, avail):
                chosen = sticky
            else:
                fresh = [r for r in avail if r.index not in tried] or avail
                self._rr += 1
                n, rr = self._next or 1, self._rr
                chosen = min(fresh, key=lambda r: (r.in_flight / weights[r.index], (r.index - rr) % n))
            if chosen.breaker.allow():
                if tried and chosen.index not in tried:
                    for t in tried:
                        metrics.REPLICA_FAILOVERS.labels(self.name, str(t)).inc()
                return chosen
            # Its half-open probe request is already out: not this one for now.
            tried = tried | {chosen.index}
            if all(r.index in tried for r in avail):
                return None

    def _overloaded(self, r: Endpoint, avail: list[Endpoint]) -> bool:
        """Is the session's replica so much busier than the least-loaded one that the session should move?"""
        factor = self.rebalance_factor
        if not factor or len(avail) < 2:
            return False
        least = min(x.in_flight / self.weights[x.index] for x in avail)
        return r.in_flight / self.weights[r.index] > factor * max(least, 1.0)

    def failed(self, r: Endpoint, exc: httpx.TransportError) -> None:
        metrics.REPLICA_REQUESTS.labels(self.name, r.label, type(exc).__name__).inc()
        if not isinstance(exc, httpx.PoolTimeout):
            r.breaker.failure()
        if isinstance(exc, _DOWN_ERRORS):
            r.detail = f"{type(exc).__name__} on a request"
            self._mark(r, False, r.detail)

    def answered(self, r: Endpoint, status: int) -> None:
        metrics.REPLICA_REQUESTS.labels(self.name, r.label, str(status)).inc()
        if status in BREAKER_STATUSES:
            r.breaker.failure()
        else:
            r.breaker.success()

    def routed(self, route: Route | None, r: Endpoint) -> None:
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

    def must_wait(self, tried: set[int]) -> bool:
        """Another replica is tried at once; the same one again only after the backoff."""
        now = self.clock()
        return not any(x.available(now) and x.index not in tried for x in self.replicas)

    @staticmethod
    def hold(resp: httpx.Response, r: Endpoint, stream: bool) -> httpx.Response:
        """A streamed reply keeps its replica's in-flight slot until closed (a plain one is read already)."""
        if not stream:
            return resp
        r.in_flight += 1  # the attempt's own count was given back; the open stream holds one
        done = False

        def release() -> None:
            nonlocal done
            if not done:
                done = True
                r.in_flight -= 1

        resp.stream = _Released(resp.stream, release)
        return resp


def dns_discovery(url: str) -> Discovery:
    """MODELYARD_UPSTREAM_DNS: a base URL whose host name resolves to every replica (a compose service
    scaled up, Swarm's `tasks.<service>`, a Kubernetes headless Service); each address is a member."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)

    async def discover() -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addrs = sorted({info[4][0] for info in infos})
        return [
            urlunsplit((parts.scheme, f"[{a}]:{port}" if ":" in a else f"{a}:{port}", parts.path, "", ""))
            for a in addrs
        ]

    return discover


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
