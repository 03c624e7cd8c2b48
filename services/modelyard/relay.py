"""Server-sent events both ways: the upstream's `data:` payloads parsed as they arrive, our events framed,
and the two streamed replies the adapter sends (an upstream stream relayed byte for byte, or translated
event by event)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import httpx
import orjson
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from .calls import current, usage_of
from .errors import APIError
from .gate import Aborted
from .translate import StreamTranslator

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class EventStream(StreamingResponse):
    """Starlette's StreamingResponse without its anyio task group (a cancel scope and two tasks a stream, ~8 %
    of a short stream's CPU, and anyio's stream modules imported on the first one: docs/benchmarks.md). The
    same contract: the body is sent as it is produced, and a client that goes away stops it at once, its
    generator cancelled where it waits (so the upstream request is closed), by one plain asyncio task that
    waits for `http.disconnect`."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        task, gone = asyncio.current_task(), False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()  # type: ignore[union-attr]

        watcher = asyncio.ensure_future(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()  # type: ignore[union-attr]  # ours, handled: the client left
        finally:
            watcher.cancel()
        if self.background is not None:
            await self.background()


def sse_event(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def sse_events(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(sse_event(event) for event in events)


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


def closer(ctx: Any) -> BackgroundTask:
    """Runs after a streamed reply, also when the client left before its first byte (the body generator
    then never starts, and its `finally` never runs): the upstream request is closed either way."""
    return BackgroundTask(ctx.__aexit__, None, None, None)


def relayed(
    ctx: Any, resp: httpx.Response, headers: dict[str, str] | None = None, strip_usage: bool = False
) -> EventStream:
    """An open upstream stream passed on byte for byte; a break mid-way ends it with an error event.
    `strip_usage`: the usage-only chunk (asked for upstream, not by the client) is counted, not sent."""

    call = current()

    async def gen() -> AsyncIterator[bytes]:
        # A read can end inside an SSE line: its start is kept until the line ends, for the usage in it.
        carry: list[bytes] = []
        try:
            async for chunk in resp.aiter_bytes():
                if call is None and not strip_usage:
                    yield chunk
                    continue
                if call is not None:
                    call.first_token()
                cut = chunk.rfind(b"\n") + 1
                if not cut:
                    carry.append(chunk)
                    if not strip_usage:
                        yield chunk
                    continue
                lines = chunk if cut == len(chunk) else chunk[:cut]
                if carry:
                    lines = b"".join((*carry, lines))
                carry = [chunk[cut:]] if cut < len(chunk) else []
                if b'"usage"' in lines and (usage := usage_of(lines)) is not None:
                    if call is not None:
                        call.usage = usage
                    if strip_usage:
                        lines = without_usage_chunk(lines)
                if not strip_usage:
                    yield chunk
                elif lines:
                    yield lines
            if strip_usage and carry:
                yield b"".join(carry)
        except Aborted as exc:  # pause with abort (gate.py): the reason, not a broken upstream
            yield b"data: " + orjson.dumps(APIError(503, str(exc), code="policy_update").body()) + b"\n\n"
        except httpx.HTTPError as exc:
            err = APIError(502, f"Upstream stream broke off ({type(exc).__name__}).", code="upstream_stream_error")
            yield b"data: " + orjson.dumps(err.body()) + b"\n\n"
        finally:
            await ctx.__aexit__(None, None, None)

    media = resp.headers.get("content-type", "text/event-stream")
    return EventStream(gen(), media_type=media, headers={**SSE_HEADERS, **(headers or {})}, background=closer(ctx))


def without_usage_chunk(lines: bytes) -> bytes:
    """Complete SSE lines less the event whose chunk carries only usage (`"choices":[]`), its blank line too."""
    out, rest = [], lines
    while (at := rest.find(b'"usage"')) >= 0:
        start = rest.rfind(b"\n", 0, at) + 1
        end = rest.find(b"\n", at)
        end = len(rest) if end < 0 else end + 1
        line = rest[start:end]
        if line.startswith(b"data:") and b'"choices":[]' in line.replace(b" ", b""):
            out.append(rest[:start])
            if rest.startswith(b"\n", end):  # the event's blank line
                end += 1
            elif rest.startswith(b"\r\n", end):
                end += 2
        else:
            out.append(rest[:end])
        rest = rest[end:]
    out.append(rest)
    return b"".join(out)


async def translate_events(
    resp: httpx.Response, translator: StreamTranslator, chunk_error: Callable[[dict[str, Any]], APIError]
) -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
    """An open chat completions stream as Responses events: (events, last) per upstream chunk, the last
    batch ending the Response (completed, incomplete or failed). `chunk_error` maps an error a chunk
    carries (OpenRouter sends one with status 200 once a model has started)."""
    yield translator.start(), False
    try:
        async for data in sse_data(resp):
            if data == b"[DONE]":
                yield translator.finish(), True
                return
            chunk = orjson.loads(data)
            if chunk.get("error"):
                yield translator.fail(chunk_error(chunk).message), True
                return
            yield translator.feed(chunk), False
    except Aborted as exc:
        yield translator.fail(str(exc), "policy_update"), True
        return
    except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
        yield translator.fail(f"Upstream stream broke off ({type(exc).__name__})."), True
        return
    yield translator.fail("Upstream stream ended before it was complete."), True


Done = Callable[[dict[str, Any]], Awaitable[None]]


def translated(
    ctx: Any,
    resp: httpx.Response,
    translator: StreamTranslator,
    chunk_error: Callable[[dict[str, Any]], APIError],
    headers: dict[str, str] | None = None,
    done: Done | None = None,
) -> EventStream:
    """The translated stream as our reply. `done` runs with the final Response before its last events go
    out (stored responses: what the client hears the end of is stored)."""

    call = current()

    async def gen() -> AsyncIterator[bytes]:
        # The events one upstream chunk turns into go out as one write: one send through uvicorn and
        # the gateway instead of one per event (the first token comes with 3 more events around it).
        started = False
        try:
            async for events, last in translate_events(resp, translator, chunk_error):
                if last:
                    if call is not None:
                        call.answered(translator.response)
                    if done is not None:
                        await done(translator.response)
                elif started and events and call is not None:
                    call.first_token()
                started = True
                if events:
                    yield sse_events(events)
        finally:
            await ctx.__aexit__(None, None, None)

    return EventStream(
        gen(), media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}, background=closer(ctx)
    )
