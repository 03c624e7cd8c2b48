"""uvicorn's httptools protocol with its writes corked: what one event-loop turn writes leaves as one send.

uvicorn writes a reply's status line and headers, then its body, as two `transport.write` calls, so a
plain reply costs two socket sends here and, in the gateway in front, two wake-ups and two reads of the
same reply (docs/benchmarks.md: the gateway's CPU a request halves without the second one). Corking holds
the writes of the current turn and sends them joined when the turn ends (`loop.call_soon`), before the loop
next waits on sockets, or at once when the reply is complete: nothing is held past the turn that wrote
it, so a stream's events still leave as they are produced, and a close, a WebSocket hand-over or an
end-of-file sends what is held first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CorkedTransport:
    """An asyncio transport whose writes of one loop turn are sent as one; everything else is the wrapped
    transport's own."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def writelines(self, chunks: Any) -> None:
        for data in chunks:
            self.write(data)

    def flush(self) -> None:
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        if not self._transport.is_closing():  # a peer gone mid-turn: nothing to send it
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's `http` protocol for the adapter (`uvicorn.run(..., http=HttpProtocol)`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        # A reply's last bytes leave as soon as it is complete, not when the handler's turn ends: what the
        # handler does after its reply (the usage ledger, metrics, capture) is not the client's wait.
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()
