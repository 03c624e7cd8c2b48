"""Load-generating pieces of scripts/bench that wrk cannot do: an open-loop fixed-rate client, streamed
replies timed token by token, and many streams held open at once. Plain asyncio sockets (uvloop when
installed): the same client for every path, so its own overhead cancels out of the differences."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass, field


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole HTTP/1.1 reply (content-length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked = -1, False
    for line in head.lower().split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line[15:])
        elif line.startswith(b"transfer-encoding:") and b"chunked" in line:
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        return status, b"".join(parts)
    if length >= 0:
        return status, await reader.readexactly(length)
    return status, await reader.read()


@dataclass
class RateResult:
    latencies: list[float] = field(default_factory=list)  # seconds, of the requests that succeeded
    errors: int = 0
    late: int = 0  # sends that left more than 1 ms after their slot (the client fell behind)


async def fixed_rate(host: str, port: int, path: str, body: bytes, rate: float, seconds: float) -> RateResult:
    """Open loop: request i leaves at start + i/rate whatever the replies do (no coordinated omission);
    each on an idle keep-alive connection, a new one when none is idle."""
    out = RateResult()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    raw = request_bytes(host, port, path, body)
    loop = asyncio.get_running_loop()

    async def one(due: float) -> None:
        conn = idle.pop() if idle else await asyncio.open_connection(host, port)
        reader, writer = conn
        # Timed from when it was due, or from when it left if the loop's timer woke early (uvloop's
        # timers have millisecond resolution): a late send counts against the path, an early one not.
        due = min(due, time.perf_counter())
        try:
            writer.write(raw)
            status, _ = await read_reply(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            out.errors += 1
            writer.close()
            return
        if status == 200:
            out.latencies.append(time.perf_counter() - due)
        else:
            out.errors += 1
        idle.append(conn)

    n = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            out.late += 1
        tasks.append(loop.create_task(one(due)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return out


SENT = re.compile(r"t\d+@(\d+) ")


def token_text(data: bytes) -> str:
    """The generated text one SSE `data:` payload carries (a chat chunk or a Responses event), or ""."""
    if data == b"[DONE]":
        return ""
    try:
        event = json.loads(data)
    except ValueError:
        return ""
    if event.get("type") == "response.output_text.delta":
        return event.get("delta") or ""
    return "".join((choice.get("delta") or {}).get("content") or "" for choice in event.get("choices") or ())


def token_events(data: bytes) -> int:
    """How many generated-text pieces one payload carries (0 or 1)."""
    return 1 if token_text(data) else 0


async def _sse_payloads(reader: asyncio.StreamReader):
    """`data:` payloads of a chunked SSE reply, as they arrive."""
    buf = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            break
        buf += chunk[:-2]
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                break
            event, buf = buf[:end], buf[end + 2 :]
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    yield line[5:].strip()


async def stream_once(host: str, port: int, path: str, body: bytes) -> tuple[list[float], list[float]]:
    """For each generated token of one streamed reply: when it arrived (seconds after the send), and
    how long it took from the stand-in to here (seconds; from the send time stamped in its text)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        start = time.perf_counter()
        writer.write(request_bytes(host, port, path, body))
        head = await reader.readuntil(b"\r\n\r\n")
        if int(head[9:12]) != 200 or b"chunked" not in head.lower():
            raise RuntimeError(f"stream request failed: {head[:200]!r}")
        times, transit = [], []
        async for data in _sse_payloads(reader):
            text = token_text(data)
            if text:
                now, clock = time.perf_counter() - start, time.monotonic_ns()
                for sent in SENT.findall(text) or [None]:
                    times.append(now)
                    if sent is not None:
                        transit.append((clock - int(sent)) / 1e9)
        return times, transit
    finally:
        writer.close()


@dataclass
class Held:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    readers: list[asyncio.Task] = field(default_factory=list)
    opened: int = 0  # streams that delivered their first generated text
    errors: int = 0
    first: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self) -> None:
        for task in self.readers:
            task.cancel()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        self.readers.clear()


async def hold_streams(
    held: Held, host: str, port: int, path: str, body: bytes, count: int, batch: int = 200, timeout: float = 60.0
) -> float:
    """Open `count` more streams (in batches, so no listen backlog overflows) and wait until each has
    delivered its first generated text or failed; returns the seconds it took."""
    target = held.opened + held.errors + count
    raw = request_bytes(host, port, path, body)
    start = time.perf_counter()

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            held.errors += 1
            return
        held.writers.append(writer)
        writer.write(raw)
        got = False
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if int(head[9:12]) != 200:
                raise ValueError(head[:100])
            async for data in _sse_payloads(reader):
                if not got and token_events(data):
                    got = True
                    held.opened += 1
                    if held.opened + held.errors >= target:
                        held.first.set()
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        if not got:
            held.errors += 1
            if held.opened + held.errors >= target:
                held.first.set()

    loop = asyncio.get_running_loop()
    held.first.clear()
    for i in range(0, count, batch):
        for _ in range(min(batch, count - i)):
            held.readers.append(loop.create_task(one()))
        await asyncio.sleep(0.05)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(held.first.wait(), timeout)
    return time.perf_counter() - start
