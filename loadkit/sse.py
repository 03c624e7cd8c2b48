"""Server-sent events, bytes in, events out: the one SSE parser of the host-side tools (scripts/bench,
scripts/soak, scripts/record-golden and the tests that use them).

It follows the WHATWG event-stream rules: lines end in LF, CRLF or a lone CR (a CRLF split across two
chunks is still one line end); a line starting with ':' is a comment; `data:` lines of one event are
joined with LF; one space after the colon is dropped; a blank line ends the event; an event with no
`data` field is not dispatched. Feed it the body in pieces of any size, split anywhere.

One leniency: `close()` dispatches an event the stream left unterminated (no blank line after its last
line), as the adapter's own parser does (services/modelyard), so a reply cut after its last line still
shows what it said.

The adapter has a parser of its own for the runtime (it reads httpx streams); the host tools cannot
import it without importing the runtime package, hence this one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

DONE = b"[DONE]"  # OpenAI's end-of-stream sentinel (chat completions)


@dataclass(frozen=True, slots=True)
class Event:
    data: bytes
    event: str = ""  # the `event:` field; "" means the default type, "message"
    id: str | None = None  # the `id:` field, when the event set one


class Parser:
    """Incremental: `feed()` each piece as it arrives, `close()` at the end of the stream."""

    def __init__(self) -> None:
        self._tail = b""  # an unfinished line (a trailing CR too: it may be half of a CRLF)
        self._data: list[bytes] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, piece: bytes) -> list[Event]:
        buf = self._tail + piece
        if b"\r" in buf:
            keep_cr = buf.endswith(b"\r")
            if keep_cr:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = buf.split(b"\n")
            self._tail = lines.pop() + (b"\r" if keep_cr else b"")
        else:
            lines = buf.split(b"\n")
            self._tail = lines.pop()
        out: list[Event] = []
        for line in lines:
            self._line(line, out)
        return out

    def close(self) -> list[Event]:
        """The last event, if the stream ended without the blank line after it."""
        out: list[Event] = []
        tail, self._tail = self._tail.rstrip(b"\r"), b""
        if tail:
            self._line(tail, out)
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[Event]) -> None:
        if not line:
            if self._data:
                out.append(Event(b"\n".join(self._data), self._event, self._id))
            self._data, self._event = [], ""
            return
        if line[:1] == b":":
            return  # a comment (keep-alive pings, OpenRouter's ": OPENROUTER PROCESSING")
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            self._id = value.decode("utf-8", "replace")
        # `retry` and unknown fields: nothing a load tool needs


def events(body: bytes | Iterable[bytes]) -> list[Event]:
    """Every event of a whole body (or of its pieces, in order)."""
    parser = Parser()
    pieces = [body] if isinstance(body, bytes | bytearray) else body
    out = [e for piece in pieces for e in parser.feed(bytes(piece))]
    return out + parser.close()


def payloads(body: bytes | Iterable[bytes]) -> list[bytes]:
    """The `data` of every event, `[DONE]` included."""
    return [e.data for e in events(body)]


def json_payloads(body: bytes | Iterable[bytes]) -> list[Any]:
    """Every event's data as JSON, the `[DONE]` sentinel left out."""
    return [json.loads(d) for d in payloads(body) if d != DONE]


async def apayloads(pieces: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The `data` of each event as soon as its blank line arrives."""
    parser = Parser()
    async for piece in pieces:
        for event in parser.feed(piece):
            yield event.data
    for event in parser.close():
        yield event.data
