"""A cheap OpenAI chat-completions upstream with fixed, known timing, for scripts/bench.

Raw asyncio protocol (uvloop when installed), no framework: it must never be the bottleneck of the
paths it measures (scripts/bench measures its own ceiling and prints it).

- POST .../chat/completions without "stream": true -> one fixed chat.completion JSON, after
  `delay_ms` (0 by default).
- with "stream": true -> an SSE stream: the role chunk and the first token at once (time to first
  token = 0), then one token every `cadence_ms`, `chunks` tokens in all, a finish chunk, a usage chunk
  and `data: [DONE]`. The stream stops as soon as the client goes away.
- a request for the model "bench-hold" streams the `hold` shape instead (a token a second, for
  holding thousands of streams open).
- GET /health, /v1/models -> 200 (adapter readiness, LiteLLM health).

    python -m loadkit.standin --listen 127.0.0.1:9000:20:10 [--listen 127.0.0.1:9001:300:2000]

each --listen is HOST:PORT:CHUNKS:CADENCE_MS; --hold CHUNKS:CADENCE_MS (default 600:1000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from dataclasses import dataclass

MODEL = "bench-model"
HOLD_MODEL = b'"bench-hold"'
CREATED = 1700000000


def completion_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the bench stand-in."},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        },
        separators=(",", ":"),
    ).encode()


def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    choices = [] if usage else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL}
    body["choices"] = choices
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def token(i: int) -> str:
    """Token i's text carries when it left (CLOCK_MONOTONIC, ns, the same clock in every process here),
    so a client can tell how long the path between took for each token."""
    return f"t{i}@{time.monotonic_ns()} "


@dataclass(frozen=True)
class StreamShape:
    chunks: int = 20
    cadence_ms: float = 10.0

    def first(self) -> bytes:
        return chunk({"role": "assistant", "content": ""}) + chunk({"content": token(0)})

    def tail(self) -> bytes:
        usage = {"prompt_tokens": 12, "completion_tokens": self.chunks, "total_tokens": 12 + self.chunks}
        return chunk({}, "stop") + chunk({}, usage=usage) + b"data: [DONE]\n\n"


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
NOT_FOUND_HEAD = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
NOT_FOUND = b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}'


class Server(asyncio.Protocol):
    """One connection: HTTP/1.1 keep-alive, requests answered in order (no pipelining needed)."""

    def __init__(self, shape: StreamShape, delay_ms: float, body: bytes, hold: StreamShape | None = None) -> None:
        self.fast, self.hold, self.delay = shape, hold or StreamShape(600, 1000.0), delay_ms / 1000
        self.shape = shape
        self.reply = JSON_HEAD % len(body) + body
        self.buf = b""
        self.need = -1  # body bytes still to read for the current request, -1 = reading headers
        self.head = b""
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.t0 = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer:
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while not self.busy:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                self.head, self.buf = self.buf[:end], self.buf[end + 4 :]
                self.need = 0
                for header in self.head.lower().split(b"\r\n")[1:]:
                    if header.startswith(b"content-length:"):
                        self.need = int(header[15:])
            if len(self.buf) < self.need:
                return
            body, self.buf = self.buf[: self.need], self.buf[self.need :]
            self.need = -1
            self.handle(self.head, body)

    def handle(self, head: bytes, body: bytes) -> None:
        line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
        method, _, rest = line.partition(b" ")
        path = rest.partition(b" ")[0].partition(b"?")[0]
        t = self.transport
        if t is None:
            return
        if method == b"GET":
            if path.endswith(b"/health") or path.endswith(b"/models"):
                ok = b'{"object":"list","data":[{"id":"%s","object":"model"}]}' % MODEL.encode()
                t.write(JSON_HEAD % len(ok) + ok)
            else:
                t.write(NOT_FOUND_HEAD % len(NOT_FOUND) + NOT_FOUND)
            return
        if b'"stream":true' in body or b'"stream": true' in body:
            self.busy = True
            self.shape = self.hold if HOLD_MODEL in body else self.fast
            t.write(SSE_HEAD + _chunked(self.shape.first()))
            self.t0 = asyncio.get_running_loop().time()
            self._next(1)
        elif self.delay:
            self.busy = True
            self.timer = asyncio.get_running_loop().call_later(self.delay, self._delayed)
        else:
            t.write(self.reply)

    def _delayed(self) -> None:
        self.busy = False
        if self.transport is not None:
            self.transport.write(self.reply)
            self.data_received(b"")

    def _next(self, i: int) -> None:
        t = self.transport
        if t is None:
            return
        if i > 1:
            if i <= self.shape.chunks:
                t.write(_chunked(chunk({"content": token(i - 1)})))
            if i >= self.shape.chunks:
                t.write(_chunked(self.shape.tail()) + b"0\r\n\r\n")
                self.timer, self.busy = None, False
                self.data_received(b"")
                return
        elif self.shape.chunks <= 1:
            t.write(_chunked(self.shape.tail()) + b"0\r\n\r\n")
            self.busy = False
            return
        # Token i+1 is due at t0 + i * cadence: timed from the start, so scheduling delays do not add up.
        self.timer = asyncio.get_running_loop().call_at(self.t0 + i * self.shape.cadence_ms / 1000, self._next, i + 1)


async def serve(listens: list[tuple[str, int, StreamShape]], delay_ms: float, hold: StreamShape) -> None:
    loop = asyncio.get_running_loop()
    body = completion_body()
    servers = []
    for host, port, shape in listens:

        def make(shape: StreamShape = shape) -> Server:
            return Server(shape, delay_ms, body, hold)

        servers.append(await loop.create_server(make, host, port, backlog=8192, reuse_address=True))
    print("standin ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def parse_listen(spec: str) -> tuple[str, int, StreamShape]:
    host, port, chunks, cadence = spec.rsplit(":", 3)
    return host, int(port), StreamShape(int(chunks), float(cadence))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", action="append", required=True, help="HOST:PORT:CHUNKS:CADENCE_MS")
    ap.add_argument("--hold", default="600:1000", help="CHUNKS:CADENCE_MS of the bench-hold model's streams")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="fixed latency of a non-streamed reply")
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    chunks, cadence = args.hold.split(":")
    asyncio.run(serve([parse_listen(s) for s in args.listen], args.delay_ms, StreamShape(int(chunks), float(cadence))))


if __name__ == "__main__":
    main()
