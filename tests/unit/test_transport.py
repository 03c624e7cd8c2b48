"""The lean plain-http transport (modelyard.transport) against real sockets: the bench stand-in as the
upstream, and small raw servers for the failure cases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from loadkit.standin import Server, StreamShape, completion_body
from modelyard.errors import APIError
from modelyard.relay import sse_data
from modelyard.transport import FastTransport, wanted
from modelyard.upstream import Upstream


@pytest.fixture
async def standin() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    body = completion_body()
    server = await loop.create_server(lambda: Server(StreamShape(5, 1.0), 0.0, body), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1"
    server.close()


async def raw_server(reply: bytes) -> tuple[asyncio.Server, str]:
    """A server that answers every request with `reply` and then closes the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


def test_used_for_plain_http_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert wanted("http://vllm-engine:8000/v1")
    assert not wanted("https://api.openai.com/v1")
    monkeypatch.setenv("MODELYARD_HTTP_TRANSPORT", "httpx")
    assert not wanted("http://vllm-engine:8000/v1")
    assert not isinstance(Upstream("http://x:1/v1").replicas[0].client._transport, FastTransport)


async def test_json_reply_and_keep_alive(standin: str) -> None:
    up = Upstream(standin)
    assert isinstance(up.client._transport, FastTransport)
    try:
        for _ in range(3):
            resp = await up.request("POST", "/chat/completions", {"model": "m", "messages": []})
            assert resp.status_code == 200
            assert orjson.loads(resp.content)["choices"][0]["message"]["content"] == "Hello from the bench stand-in."
        transport = up.client._transport
        assert transport._open == 1  # one connection, reused
        resp = await up.request("GET", "/models")
        assert orjson.loads(resp.content)["data"][0]["id"] == "bench-model"
    finally:
        await up.aclose()


async def test_stream_chunk_by_chunk(standin: str) -> None:
    up = Upstream(standin)
    try:
        for _ in range(2):  # the connection goes back after a whole stream and serves the next
            async with up.stream("POST", "/chat/completions", {"stream": True}) as resp:
                assert resp.headers["content-type"] == "text/event-stream"
                datas = [d async for d in sse_data(resp)]
            assert datas[-1] == b"[DONE]"
            tokens = [orjson.loads(d)["choices"][0]["delta"].get("content") for d in datas if b'"content":"t' in d]
            assert [t.split("@")[0] for t in tokens] == ["t0", "t1", "t2", "t3", "t4"]
        assert up.client._transport._open == 1
    finally:
        await up.aclose()


async def test_refused_connection_is_unreachable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    up = Upstream(f"http://127.0.0.1:{port}/v1")
    try:
        with pytest.raises(APIError) as err:
            await up.request("GET", "/models")
        assert err.value.status == 502 and err.value.code == "upstream_unreachable"
    finally:
        await up.aclose()


async def test_reply_cut_short_is_an_error() -> None:
    server, url = await raw_server(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{")
    transport = FastTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(url + "/models")
    assert transport._open == 0  # the broken connection was not pooled
    server.close()


async def test_connection_close_reply_is_not_reused() -> None:
    body = b'{"ok":true}'
    reply = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    server, url = await raw_server(reply)
    transport = FastTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(2):
            resp = await client.post(url + "/x", content=b'{"a":1}')
            assert resp.json() == {"ok": True}
    assert transport._open == 0
    server.close()


async def test_pool_limit_waits_then_times_out(standin: str) -> None:
    transport = FastTransport(max_connections=1)
    timeout = httpx.Timeout(5.0, pool=0.05)
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        req = client.build_request("POST", standin + "/chat/completions", content=b'{"stream":true}')
        held = await client.send(req, stream=True)  # holds the only connection
        with pytest.raises(httpx.PoolTimeout):
            await client.get(standin + "/models")
        await held.aclose()  # not read to its end: closed, and the slot freed
        resp = await client.get(standin + "/models")
        assert resp.status_code == 200


async def test_a_stalled_body_is_a_read_timeout() -> None:
    """Headers and a first chunk, then nothing: the body read ends in httpx.ReadTimeout after the read
    timeout (the lean transport's own timer)."""
    stalled = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await stalled.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/x"
    try:
        async with httpx.AsyncClient(transport=FastTransport(), timeout=httpx.Timeout(5.0, read=0.2)) as client:
            got = []
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(httpx.ReadTimeout):
                async with client.stream("GET", url) as resp:
                    async for chunk in resp.aiter_raw():
                        got.append(chunk)
            assert got == [b"first"] and 0.15 < loop.time() - start < 2
    finally:
        stalled.set()
        server.close()
