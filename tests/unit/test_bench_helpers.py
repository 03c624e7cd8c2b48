"""scripts/bench's helpers (loadkit): the stand-in's stream shape, the client's token counting and reply
reading, and how the report picks the throughput within the p99 budget."""

from __future__ import annotations

import asyncio

from loadkit import client, http
from loadkit.bench import report
from loadkit.standin import Server, StreamShape, completion_body, parse_listen


def test_token_events_counts_generated_text_only() -> None:
    assert client.token_events(b'{"choices":[{"delta":{"content":"t1 "}}]}') == 1
    assert client.token_text(b'{"type":"response.output_text.delta","delta":"t1@5 t2@7 "}') == "t1@5 t2@7 "
    assert client.SENT.findall("t1@5 t2@7 ") == ["5", "7"]
    assert client.token_events(b'{"choices":[{"delta":{"role":"assistant","content":""}}]}') == 0
    assert client.token_events(b'{"type":"response.output_text.delta","delta":"t1 "}') == 1
    assert client.token_events(b'{"type":"response.output_text.done","text":"t0 t1 "}') == 0
    assert client.token_events(b"[DONE]") == 0


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9000:20:10") == ("127.0.0.1", 9000, StreamShape(20, 10.0))


async def test_stream_times_follow_the_cadence() -> None:  # also under uvloop in scripts/bench
    loop = asyncio.get_running_loop()
    body = completion_body()
    server = await loop.create_server(lambda: Server(StreamShape(4, 20.0), 0.0, body), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        chat = b'{"model":"bench-model","messages":[],"stream":true}'
        times, transit = await client.stream_once("127.0.0.1", port, "/v1/chat/completions", chat)
        assert len(times) == 4 and len(transit) == 4
        assert times[3] >= 0.06  # three cadences after the first token, never sooner
        assert all(0 <= t < 1 for t in transit)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(http.request_bytes("127.0.0.1", port, "/v1/chat/completions", b"{}"))
        status, reply = await http.read_reply(reader)
        assert status == 200 and reply == body
        writer.close()
        result = await client.fixed_rate("127.0.0.1", port, "/v1/chat/completions", b"{}", rate=200, seconds=0.1)
        assert len(result.latencies) == 20 and result.errors == 0
        assert min(result.latencies) > 0  # timed from the send at the earliest, never before it
    finally:
        server.close()


def test_max_rps_keeps_to_the_p99_budget() -> None:
    def level(rps: float, p99: float, errors: int = 0) -> dict:
        return {"rps": rps, "p99_ms": p99, "errors": errors}

    results = {
        "sweep": {
            "direct": {"1": level(9000, 0.1), "4": level(9000, 0.2), "16": level(9000, 1.0)},
            "proxy": {"1": level(1000, 2.0), "4": level(2500, 9.0), "16": level(2600, 40.0)},
            "flaky": {"1": level(1000, 2.0), "4": level(2500, 5.0, errors=3), "16": level(2600, 40.0)},
            "slow": {"1": level(80, 15.0), "4": level(90, 50.0), "16": level(90, 200.0)},
        }
    }
    assert report.max_rps(results, "proxy") == (2500, "4")
    assert report.max_rps(results, "flaky") == (1000, "1")  # a level with errors does not count
    assert report.max_rps(results, "slow") == (None, "")
