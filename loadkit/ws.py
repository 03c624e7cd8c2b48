"""Just enough of a WebSocket client (RFC 6455) for a load client: the upgrade, masked text frames out,
whole messages in (fragments joined, pings answered). Standard library only, like the rest of the soak."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import struct

from loadkit.http import read_chunks, status_of


class Refused(Exception):
    """The upgrade was answered with something other than 101: its status and body."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"upgrade refused with {status}")
        self.status, self.body = status, body


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """One final, masked frame (a client must mask every frame it sends)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int, path: str, headers: dict[str, str]) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"GET {path} HTTP/1.1\r\nhost: {host}:{port}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            f"sec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n{extra}\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if status_of(head) != 101:
            lower = head.lower()
            if b"transfer-encoding: chunked" in lower:
                body = b"".join([piece async for piece in read_chunks(reader)])
            elif m := re.search(rb"content-length: *(\d+)", lower):
                body = await reader.readexactly(int(m.group(1)))
            else:
                body = b""
            writer.close()
            raise Refused(status_of(head), body)
        return cls(reader, writer)

    async def send_text(self, text: str) -> None:
        self.writer.write(frame(text.encode()))
        await self.writer.drain()

    async def _frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        mask = await self.reader.readexactly(4) if b1 & 0x80 else b""
        data = await self.reader.readexactly(n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return bool(b0 & 0x80), b0 & 0x0F, data

    async def recv_text(self) -> str | None:
        """The next whole text message; None once the server closed the connection."""
        parts: list[bytes] = []
        while True:
            try:
                fin, opcode, data = await self._frame()
            except asyncio.IncompleteReadError:
                return None
            if opcode == 8:
                return None
            if opcode == 9:  # ping: pong with the same payload
                self.writer.write(frame(data, 10))
                continue
            if opcode == 10:
                continue
            parts.append(data)
            if fin:
                return b"".join(parts).decode()

    def close(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.writer.write(frame(struct.pack("!H", 1000), 8))
        self.writer.close()
