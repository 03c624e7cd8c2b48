"""Where an upstream attempt goes: one endpoint, or a set of replicas (replicas.py).

`Upstream` (upstream.py) owns admission, the limit, the budget, the deadline and the one retry loop; each
attempt asks its `Endpoints` for an `Endpoint` and reports the outcome back. An `Endpoint` is one base
URL with its own keep-alive pool and circuit breaker. `Single` is the plain case; `replicas.ReplicaSet`
adds health probes, session stickiness and least-loaded choice. A new way of finding endpoints (DNS, a
registration API) is another `Endpoints`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import orjson

from . import transport as transport_mod
from .breaker import CLOSED, CircuitBreaker
from .errors import APIError

log = logging.getLogger("modelyard")

# Attempt outcomes that say the upstream itself is unwell (the breaker counts them); a 429 or a 500
# comes from an upstream that is up and answering.
BREAKER_STATUSES = frozenset({502, 503, 504})


class Spec:
    """A request as asked, built against an endpoint's base URL per attempt."""

    __slots__ = ("method", "path", "content", "headers", "params")

    def __init__(self, method: str, path: str, body: Any, headers: Mapping[str, str] | None, params: Any) -> None:
        content = None if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
        hdrs = dict(headers or {})
        if content is not None:
            hdrs.setdefault("content-type", "application/json")
        self.method, self.path, self.content, self.headers, self.params = method, path, content, hdrs, params


class Endpoint:
    """One upstream base URL: its connection pool, its breaker, what it is doing and how it is."""

    __slots__ = (
        "index", "label", "base_url", "host", "client", "_fast", "_urls", "_timeout", "breaker", "in_flight",
        "healthy", "detail",
    )  # fmt: skip

    def __init__(self, base_url: str, breaker: CircuitBreaker, conn: Connection, index: int = 0) -> None:
        self.index, self.label = index, str(index)
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self.host = f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or "")
        transport = conn.transport
        self._fast: transport_mod.FastTransport | None = None
        if transport is None and transport_mod.wanted(self.base_url):
            transport = self._fast = transport_mod.FastTransport(conn.max_connections)  # plain http: the lean pool
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=dict(conn.headers or {}),
            params=dict(conn.params or {}),
            timeout=httpx.Timeout(conn.read_timeout, connect=conn.connect_timeout),
            limits=httpx.Limits(max_connections=conn.max_connections, max_keepalive_connections=conn.max_connections),
            transport=transport,
            auth=conn.auth,
            trust_env=False,  # a proxy variable in the container must not reroute upstream traffic
        )
        self._urls: dict[str, httpx.URL] | None = None if conn.params else {}  # path -> URL, built once
        self._timeout = self.client.timeout.as_dict()
        self.breaker = breaker
        self.in_flight = 0
        self.healthy = True  # until a probe or a refused connection says otherwise
        self.detail = "not probed yet"

    def available(self, now: float) -> bool:
        """Takes requests: healthy, and its breaker closed or due for a probe request."""
        b = self.breaker
        return self.healthy and (b.state == CLOSED or now >= b.until)

    def build(self, spec: Spec) -> httpx.Request:
        """The request against this base URL. Without query parameters, the URL is joined once a path and
        the request built directly: what client.build_request does, less parsing and merging the URL and
        an empty cookie jar every time (most of its cost)."""
        if self._urls is None or spec.params is not None:
            return self.client.build_request(
                spec.method, spec.path, content=spec.content, headers=spec.headers, params=spec.params
            )
        url = self._urls.get(spec.path)
        if url is None:
            url = self.client._merge_url(spec.path)
            if len(self._urls) < 64:  # a backend's few fixed paths; never grown by what clients send
                self._urls[spec.path] = url
        headers = self.client.headers.copy()
        headers.update(spec.headers)
        timeout = {"timeout": self._timeout}
        return httpx.Request(spec.method, url, content=spec.content, headers=headers, extensions=timeout)

    async def send(self, req: httpx.Request, stream: bool) -> httpx.Response:
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

    async def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """One attempt, no policy: what a health probe sends (backends' `probe` takes an Endpoint)."""
        return await self.send(self.build(Spec(method, path, body, None, None)), False)

    async def aclose(self) -> None:
        await self.client.aclose()


class Connection:
    """What every endpoint of one upstream is built with."""

    __slots__ = ("headers", "params", "connect_timeout", "read_timeout", "max_connections", "transport", "auth")

    def __init__(
        self,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 600.0,
        max_connections: int = 1000,
        transport: httpx.AsyncBaseTransport | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        self.headers, self.params, self.transport, self.auth = headers, params, transport, auth
        self.connect_timeout, self.read_timeout, self.max_connections = connect_timeout, read_timeout, max_connections


Probe = Callable[[Endpoint], Awaitable[tuple[bool, str]]]


class Endpoints(Protocol):
    """Where attempts go. `Upstream` calls these in this order for every request: `admit` once, then per
    attempt `pick` → `Endpoint.send` → `failed` or `answered`, and `routed` + `hold` for the reply kept."""

    name: str

    def admit(self) -> None: ...
    def pick(self, route: Any, tried: set[int], attempt: int) -> Endpoint | None: ...
    def failed(self, ep: Endpoint, exc: httpx.TransportError) -> None: ...
    def answered(self, ep: Endpoint, status: int) -> None: ...
    def routed(self, route: Any, ep: Endpoint) -> None: ...
    def must_wait(self, tried: set[int]) -> bool: ...
    def hold(self, resp: httpx.Response, ep: Endpoint, stream: bool) -> httpx.Response: ...
    async def start(self) -> None: ...
    async def readiness(self) -> tuple[bool, str]: ...
    async def aclose(self) -> None: ...


def seconds(value: float) -> str:
    return str(max(1, math.ceil(value)))


class Cached:
    """A probe's verdict, kept `ttl` seconds so health checks never load the upstream."""

    __slots__ = ("probe", "ttl", "checked", "verdict")

    def __init__(self, probe: Probe | None, ttl: float) -> None:
        self.probe, self.ttl = probe, ttl
        self.checked, self.verdict = -math.inf, (False, "not checked yet")

    async def get(self, ep: Endpoint) -> tuple[bool, str]:
        now = time.monotonic()
        if self.probe is None or now - self.checked < self.ttl:
            return self.verdict if self.probe else (True, "no probe")
        try:
            self.verdict = await self.probe(ep)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which
            self.verdict = (False, cause(exc, ep.base_url))
        self.checked = now
        return self.verdict


def cause(exc: BaseException, url: str) -> str:
    """What went wrong reaching `url`, in words an operator can act on (kept through breaker and retries)."""
    if isinstance(exc, APIError):
        return exc.message
    detail = str(exc) or type(exc).__name__
    text = f"{type(exc).__name__}: {detail}"
    low = detail.lower()
    if "name or service not known" in low or "nodename nor servname" in low or "temporary failure in name" in low:
        hint = "the host name does not resolve (DNS): check the URL, or the network the adapter is on"
    elif "refused" in low:
        hint = "nothing listens there: is the engine up, and is the port right?"
    elif "certificate" in low or "ssl" in low or "tls" in low:
        hint = "the TLS handshake failed: check the URL's scheme and the CA bundle"
    elif isinstance(exc, httpx.TimeoutException):
        hint = "no answer in time: a firewall, no route, or an overloaded upstream"
    elif isinstance(exc, httpx.NetworkError):
        hint = "the network path failed: no route to the host, or a proxy in the way"
    else:
        hint = ""
    return f"{text} (upstream {url}){'; ' + hint if hint else ''}"


class Single:
    """One endpoint. Its breaker is the upstream's: while open, requests fail fast with a 503 that names the
    last failure's cause."""

    def __init__(self, base_url: str, conn: Connection, breaker: CircuitBreaker, name: str, probe: Probe | None = None,
                 readiness_ttl: float = 2.0) -> None:  # fmt: skip
        self.name = name
        self.ep = Endpoint(base_url, breaker, conn)
        self.endpoints = [self.ep]
        self.cached = Cached(probe, readiness_ttl)
        self.last_failure = ""  # the cause of the latest failed attempt, said while the circuit is open

    @property
    def base_url(self) -> str:
        return self.ep.base_url

    def admit(self) -> None:
        from . import metrics  # metrics imports nothing of ours; kept local for the import order

        breaker = self.ep.breaker
        if not breaker.allow():
            metrics.REJECTED.labels(self.name, "circuit_open").inc()
            wait = breaker.retry_after()
            why = f" Last failure: {self.last_failure}" if self.last_failure else ""
            msg = f"Upstream is failing; requests fail fast for {wait:.0f} s more, then one probes it.{why}"
            raise APIError(503, msg, code="upstream_circuit_open", headers={"retry-after": seconds(wait)})

    def pick(self, route: Any, tried: set[int], attempt: int) -> Endpoint | None:
        # The first attempt was let through by admit; a retry only while the circuit allows it.
        return self.ep if attempt == 0 or self.ep.breaker.allow() else None

    def failed(self, ep: Endpoint, exc: httpx.TransportError) -> None:
        if not isinstance(exc, httpx.PoolTimeout):  # our own pool, not the upstream's health
            ep.breaker.failure()
        self._failed(cause(exc, ep.base_url))

    def answered(self, ep: Endpoint, status: int) -> None:
        if status in BREAKER_STATUSES:
            ep.breaker.failure()
            self._failed(f"HTTP {status} from {ep.base_url}")
        else:
            ep.breaker.success()
            self.last_failure = ""

    def _failed(self, why: str) -> None:
        if why != self.last_failure:  # each new cause once in the log, not once per request
            log.warning("upstream request failed: %s", why, extra={"backend": self.name})
        self.last_failure = why

    def routed(self, route: Any, ep: Endpoint) -> None:
        pass

    def must_wait(self, tried: set[int]) -> bool:
        return True

    def hold(self, resp: httpx.Response, ep: Endpoint, stream: bool) -> httpx.Response:
        return resp

    async def start(self) -> None:
        pass

    async def readiness(self) -> tuple[bool, str]:
        return await self.cached.get(self.ep)

    async def aclose(self) -> None:
        await self.ep.aclose()
