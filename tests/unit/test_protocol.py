"""The adapter's uvicorn protocol (modelyard.protocol): a turn's writes leave as one send, nothing is held
past its turn, and uvicorn serves plain replies, streams and WebSocket upgrades through it unchanged."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx
import pytest
import websockets

from modelyard.protocol import CorkedTransport
from tests.unit.uvicorn_server import lifespan, serving


class Recorder:
    """A transport stand-in that records what reaches it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.calls: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append("write_eof")

    def abort(self) -> None:
        self.calls.append("abort")

    def set_protocol(self, protocol: Any) -> None:
        self.calls.append("set_protocol")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return f"info:{name}"


async def turn() -> None:
    await asyncio.sleep(0)


async def test_one_turns_writes_leave_as_one_send() -> None:
    raw = Recorder()
    t = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.write(b"")
    t.write(b"body")
    assert raw.sent == [] and t.get_write_buffer_size() == 7 + 23
    await turn()
    assert raw.sent == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    t.write(b"next")  # a later turn: its own send, at the end of that turn
    await turn()
    assert raw.sent[1:] == [b"next"]


@pytest.mark.parametrize("method", ["close", "write_eof", "set_protocol"])
async def test_what_is_held_goes_first(method: str) -> None:
    raw = Recorder()
    t = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.writelines([b"a", b"b"])
    getattr(t, method)(*([object()] if method == "set_protocol" else []))
    assert raw.sent == [b"ab"] and raw.calls == [method]
    await turn()
    assert raw.sent == [b"ab"]  # the scheduled flush finds nothing left


async def test_abort_drops_and_a_closed_peer_gets_nothing() -> None:
    raw = Recorder()
    t = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"x")
    t.abort()
    await turn()
    assert raw.sent == [] and raw.calls == ["abort"]
    t.write(b"y")
    raw.closing = True  # the connection went away within the turn
    await turn()
    assert raw.sent == []
    assert t.get_extra_info("peername") == "info:peername"  # the rest is the wrapped transport's


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": "echo " + message["text"]})
        await send({"type": "websocket.close", "code": 1000})
        return
    await receive()
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % i, "more_body": True})
            await asyncio.sleep(0.02)  # each event its own turn: it must leave before the next is made
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    if scope["path"] == "/late":
        time.sleep(0.5)  # the handler's own work after its reply, in the same turn


@pytest.fixture
async def server() -> Any:
    async with serving(app) as address:
        yield address


async def test_uvicorn_serves_replies_streams_and_websockets_through_it(server: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{server}") as client:
        for _ in range(2):  # keep-alive: the same connection twice
            r = await client.post("/", content=b"{}")
            assert r.status_code == 200 and r.json() == {"ok": True}
        loop = asyncio.get_running_loop()
        arrivals = []
        async with client.stream("POST", "/stream", content=b"{}") as r:
            async for chunk in r.aiter_raw():
                arrivals.append((loop.time(), chunk))
        assert b"".join(c for _, c in arrivals) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        assert len(arrivals) == 3 and arrivals[2][0] - arrivals[0][0] >= 0.03  # not held back and batched
    async with websockets.connect(f"ws://{server}/ws") as ws:
        await ws.send("hi")
        assert await ws.recv() == "echo hi"


async def test_a_complete_reply_leaves_before_the_handlers_after_work(server: str) -> None:
    host, port = server.split(":")
    arrived: list[float] = []

    def client() -> None:
        with socket.create_connection((host, int(port))) as sock:
            start = time.monotonic()
            sock.sendall(b"POST /late HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            sock.recv(4096)
            arrived.append(time.monotonic() - start)

    thread = threading.Thread(target=client)
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.01)
    assert arrived and arrived[0] < 0.4  # not held until the handler's turn ended (0.5 s later)
