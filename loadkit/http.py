"""Just enough HTTP/1.1 over asyncio streams for a load client: one request's bytes, one reply read
whole or as its chunks arrive. Plain sockets, no client library: the same few lines for every path
measured, so the client's own cost cancels out of the differences."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


def request_bytes(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"
) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"{method} {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n{extra}"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


def status_of(head: bytes) -> int:
    return int(head[9:12])


async def read_chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The pieces of a chunked body, as they arrive, until its last (empty) chunk."""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return
        yield data[:-2]


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole reply (content-length or chunked): its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length, chunked = -1, False
    for line in head.lower().split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line[15:])
        elif line.startswith(b"transfer-encoding:") and b"chunked" in line:
            chunked = True
    if chunked:
        return status_of(head), b"".join([piece async for piece in read_chunks(reader)])
    if length >= 0:
        return status_of(head), await reader.readexactly(length)
    return status_of(head), await reader.read()


def dechunk(body: bytes) -> bytes:
    """A whole chunked body, read to the end, as its payload; ValueError if it was cut short."""
    out, pos = bytearray(), 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise ValueError("chunked body cut short")
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2
