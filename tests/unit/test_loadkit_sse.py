"""loadkit.sse, the one SSE parser of scripts/bench, scripts/soak, scripts/record-golden and the bench
client: the same events whatever the chunking, comments skipped, CRLF and lone CR, multi-line data."""

from __future__ import annotations

import asyncio

import pytest

from loadkit import sse
from loadkit.sse import Event, Parser

STREAM = (
    b": keep-alive\n\n"
    b'data: {"choices":[{"delta":{"content":"t0 "}}]}\n\n'
    b"event: response.output_text.delta\nid: 7\n"
    b'data: {"delta":\ndata: "t1 "}\n\n'
    b": OPENROUTER PROCESSING\n"
    b"data:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    Event(b'{"choices":[{"delta":{"content":"t0 "}}]}'),
    Event(b'{"delta":\n"t1 "}', "response.output_text.delta", "7"),
    Event(b"no-space", "", "7"),  # the id stays (last event id); the event type does not
    Event(sse.DONE, "", "7"),
]


def feed_split(body: bytes, *cuts: int) -> list[Event]:
    parser, out, last = Parser(), [], 0
    for cut in (*cuts, len(body)):
        out += parser.feed(body[last:cut])
        last = cut
    return out + parser.close()


def test_whole_body() -> None:
    assert sse.events(STREAM) == EXPECTED


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_crlf_and_lone_cr_line_ends(newline: bytes) -> None:
    assert sse.events(STREAM.replace(b"\n", newline)) == EXPECTED


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_a_split_at_every_byte_offset_gives_the_same_events(newline: bytes) -> None:
    body = STREAM.replace(b"\n", newline)
    for cut in range(len(body) + 1):
        assert feed_split(body, cut) == EXPECTED, cut


def test_byte_by_byte_and_every_pair_of_cuts() -> None:
    body = STREAM.replace(b"\n", b"\r\n")
    assert sse.events([body[i : i + 1] for i in range(len(body))]) == EXPECTED
    for a in range(0, len(body), 3):
        for b in range(a, len(body), 7):
            assert feed_split(body, a, b) == EXPECTED, (a, b)


def test_events_are_dispatched_as_soon_as_their_blank_line_arrives() -> None:
    parser = Parser()
    assert parser.feed(b"data: one\n") == []
    assert parser.feed(b"\n") == [Event(b"one")]
    assert parser.feed(b"data: two\r") == []  # the CR may be half of a CRLF
    assert parser.feed(b"\n\r\n") == [Event(b"two")]


def test_comments_and_events_without_data_are_not_dispatched() -> None:
    assert sse.events(b": ping\n\n:\n\nevent: x\n\nid: 3\n\nretry: 100\n\n") == []


def test_field_rules() -> None:
    # One space after the colon is dropped, not two; a line with no colon is a field with an empty value;
    # an empty `data:` still makes an event; unknown fields are ignored.
    assert sse.payloads(b"data:  two spaces\n\n") == [b" two spaces"]
    assert sse.payloads(b"data\n\n") == [b""]
    assert sse.payloads(b"data:\ndata:\n\n") == [b"\n"]
    assert sse.payloads(b"foo: bar\ndata: x\n\n") == [b"x"]


def test_an_unterminated_last_event_is_kept_at_close() -> None:
    assert sse.payloads(b"data: a\n\ndata: b") == [b"a", b"b"]
    assert sse.payloads(b"data: a\n\ndata: b\r") == [b"a", b"b"]
    assert sse.payloads(b'data: a\n\ndata: {"cut') == [b"a", b'{"cut']  # soak calls that one malformed


def test_json_payloads_leaves_done_out() -> None:
    assert sse.json_payloads(STREAM[STREAM.index(b"data: {") :].replace(b"data:no-space\n\n", b"")) == [
        {"choices": [{"delta": {"content": "t0 "}}]},
        {"delta": "t1 "},
    ]


async def test_apayloads_yields_each_event_as_it_completes() -> None:
    async def pieces():
        for i in range(0, len(STREAM), 5):
            yield STREAM[i : i + 5]
            await asyncio.sleep(0)

    assert [d async for d in sse.apayloads(pieces())] == [e.data for e in EXPECTED]
