"""The load client of scripts/bench and scripts/soak, for what wrk cannot do: an open-loop pacer and a
fixed-rate client on it, a closed loop counting generated tokens, streamed replies timed token by
token, and many streams held open at once. Plain asyncio sockets (uvloop when installed): the same
client for every path, so its own overhead cancels out of the differences."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from loadkit import sse
from loadkit.http import read_chunks, read_reply, request_bytes, status_of


async def paced(rate: float, count: int, lead: float = 0.0) -> AsyncIterator[tuple[int, float, bool]]:
    """Open loop: slot i falls at start + i/rate (start = now + lead) whatever the replies do, so a slow
    server cannot slow the load down (no coordinated omission). Yields (i, when it was due, late): late
    when the client woke more than 1 ms after the slot."""
    start = time.perf_counter() + lead
    for i in range(count):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield i, due, delay < -0.001


@dataclass
class RateResult:
    latencies: list[float] = field(default_factory=list)  # seconds, of the requests that succeeded
    errors: int = 0
    late: int = 0  # sends that left more than 1 ms after their slot (the client fell behind)


async def fixed_rate(
    host: str, port: int, path: str, body: bytes, rate: float, seconds: float, headers: dict[str, str] | None = None
) -> RateResult:
    """Open loop: request i leaves at start + i/rate whatever the replies do (no coordinated omission);
    each on an idle keep-alive connection, a new one when none is idle."""
    out = RateResult()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    raw = request_bytes(host, port, path, body, headers)
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

    tasks = []
    async for _, due, late in paced(rate, int(rate * seconds), lead=0.05):
        out.late += late
        tasks.append(loop.create_task(one(due)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return out


@dataclass
class LoopResult:
    tokens: int = 0  # generated tokens, from each reply's usage
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, one a request


async def closed_loop(
    host: str, port: int, path: str, body: bytes, usage_key: str, clients: int, seconds: float
) -> LoopResult:
    """`clients` keep-alive connections, each sending its next request as soon as the last is answered,
    for `seconds`; any reply but a 200 is an error (raised). `usage_key` names the reply's token count
    (`completion_tokens` for chat, `output_tokens` for Responses)."""
    out = LoopResult()
    end = time.perf_counter() + seconds
    raw = request_bytes(host, port, path, body)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < end:
                sent = time.perf_counter()
                writer.write(raw)
                status, reply = await read_reply(reader)
                if status != 200:
                    raise RuntimeError(f"{path}: {status} {reply[:200]!r}")
                out.latencies.append(time.perf_counter() - sent)
                out.tokens += json.loads(reply)["usage"][usage_key]
                out.requests += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    out.seconds = time.perf_counter() - start
    return out


SENT = re.compile(r"t\d+@(\d+) ")


def token_text(data: bytes) -> str:
    """The generated text one SSE `data:` payload carries (a chat chunk or a Responses event), or ""."""
    if data == sse.DONE:
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


async def sse_payloads(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """`data` payloads of a chunked SSE reply, as they arrive."""
    async for data in sse.apayloads(read_chunks(reader)):
        yield data


async def stream_once(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[list[float], list[float]]:
    """For each generated token of one streamed reply: when it arrived (seconds after the send), and
    how long it took from the stand-in to here (seconds; from the send time stamped in its text)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        start = time.perf_counter()
        writer.write(request_bytes(host, port, path, body, headers))
        head = await reader.readuntil(b"\r\n\r\n")
        if status_of(head) != 200 or b"chunked" not in head.lower():
            raise RuntimeError(f"stream request failed: {head[:200]!r}")
        times, transit = [], []
        async for data in sse_payloads(reader):
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


async def stream_loop(host: str, port: int, path: str, body: bytes, clients: int, seconds: float) -> list[float]:
    """`clients` streams at a time in a closed loop for `seconds`: each stream's time to its first
    generated text (seconds), for a real engine where a stream takes long enough that a fresh
    connection per stream costs nothing measurable."""
    ttfts: list[float] = []
    end = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < end:
            times, _ = await stream_once(host, port, path, body)
            if times:
                ttfts.append(times[0])

    await asyncio.gather(*(worker() for _ in range(clients)))
    return ttfts


@dataclass
class Held:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    readers: list[asyncio.Task] = field(default_factory=list)
    opened: int = 0  # streams that delivered their first generated text
    errors: int = 0
    why: dict[str, int] = field(default_factory=dict)  # each failure's cause, counted
    first: asyncio.Event = field(default_factory=asyncio.Event)

    def failed(self, why: str) -> None:
        self.errors += 1
        self.why[why] = self.why.get(why, 0) + 1

    def close(self) -> None:
        for task in self.readers:
            task.cancel()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        self.readers.clear()


async def hold_streams(
    held: Held,
    host: str,
    port: int,
    path: str,
    body: bytes,
    count: int,
    batch: int = 200,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> float:
    """Open `count` more streams (in batches, so no listen backlog overflows) and wait until each has
    delivered its first generated text or failed; returns the seconds it took."""
    target = held.opened + held.errors + count
    raw = request_bytes(host, port, path, body, headers)
    start = time.perf_counter()

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            held.failed(f"connect: {exc.strerror or type(exc).__name__}")
            return
        held.writers.append(writer)
        writer.write(raw)
        got, why = False, "ended before its first token"
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if status_of(head) != 200:
                why = f"HTTP {status_of(head)}"
                raise ValueError(head[:100])
            async for data in sse_payloads(reader):
                if not got and token_events(data):
                    got = True
                    held.opened += 1
                    if held.opened + held.errors >= target:
                        held.first.set()
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.IncompleteReadError) as exc:
            why = getattr(exc, "strerror", None) or type(exc).__name__
        except ValueError:
            pass
        if not got:
            held.failed(why)
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
