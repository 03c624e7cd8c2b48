"""The one upstream client: a shared keep-alive connection pool per upstream, errors mapped once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from .errors import APIError


class Upstream:
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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=dict(headers or {}),
            params=dict(params or {}),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            trust_env=False,  # a proxy variable in the container must not reroute upstream traffic
        )

    async def aclose(self) -> None:
        await self.client.aclose()

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
        """Send and read the whole reply. Transport failures become OpenAI-format 502/504 errors."""
        try:
            return await self.client.send(self._request(method, path, body, headers, params))
        except httpx.TimeoutException as exc:
            raise APIError(504, f"Upstream timed out ({type(exc).__name__}).", code="upstream_timeout") from None
        except httpx.TransportError as exc:
            raise APIError(502, f"Upstream unreachable ({type(exc).__name__}).", code="upstream_unreachable") from None

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Open a streamed reply; the caller reads it. Closing it (client gone) cancels the upstream request."""
        try:
            resp = await self.client.send(self._request(method, path, body, headers, params), stream=True)
        except httpx.TimeoutException as exc:
            raise APIError(504, f"Upstream timed out ({type(exc).__name__}).", code="upstream_timeout") from None
        except httpx.TransportError as exc:
            raise APIError(502, f"Upstream unreachable ({type(exc).__name__}).", code="upstream_unreachable") from None
        try:
            yield resp
        finally:
            await resp.aclose()


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
