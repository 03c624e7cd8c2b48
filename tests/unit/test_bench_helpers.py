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


def _level(rps: float, p99: float, cpu: dict[str, float] | None = None, p50: float = 0.1) -> dict:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": 0, "requests": 1, "cpu_ms_per_req": cpu or {}}


def _results() -> dict:
    """A run's results as scripts/bench writes them, trimmed to what the targets read."""
    flight = {"direct": (0.02, 0.05), "modelyard": (0.22, 0.70), "nginx": (0.05, 0.1), "litellm": (12.0, 20.0)}
    sweep = {
        "direct": {"1": _level(40000, 0.1), "16": _level(60000, 0.6)},
        "modelyard": {"1": _level(3000, 1.0), "16": _level(7000, 5.0, {"gateway": 0.04, "adapter": 0.10})},
        "modelyard_chat": {"1": _level(3500, 1.0), "16": _level(8000, 4.0, {"gateway": 0.04, "adapter": 0.08})},
        "litellm": {"1": _level(150, 9.0), "16": _level(160, 90.0, {"litellm": 8.0})},
        "portkey": {"1": _level(900, 3.0), "16": _level(2000, 30.0, {"portkey": 0.6})},
        "nginx": {"1": _level(9000, 0.3), "16": _level(20000, 1.0, {"nginx": 0.02})},
    }
    costs = {
        "direct": {"1": _level(40000, 0.1), "16": _level(60000, 0.6)},
        "plain": {"1": _level(3000, 1.0), "16": _level(7000, 5.0, {"adapter": 0.100})},
        "store_sqlite": {"1": _level(2800, 1.2), "16": _level(6000, 6.0, {"adapter": 0.140})},
        "capture": {"1": _level(2900, 1.1), "16": _level(6500, 5.5, {"adapter": 0.160})},
        "messages": {"1": _level(3000, 1.0), "16": _level(7000, 5.0, {"adapter": 0.110})},
    }
    stream = {"ttft_p50_ms": 0.3, "ttft_p99_ms": 1.0, "lag_p50_ms": 0.05, "lag_p99_ms": 0.1}
    ours = {"ttft_p50_ms": 0.6, "ttft_p99_ms": 2.5, "lag_p50_ms": 0.12, "lag_p99_ms": 0.35}
    return {
        "one_in_flight": {"paths": {k: {"p50_ms": a, "p99_ms": b} for k, (a, b) in flight.items()}},
        "sweep": sweep,
        "costs": costs,
        "streaming": {"direct": stream, "modelyard": ours},
        "open_streams": {"modelyard": {"1000": {"open": 1000, "errors": 0, "rss_mb": {"adapter": 90}},
                                       "10000": {"open": 10000, "errors": 0, "rss_mb": {"adapter": 520}}}},
        "engine": {"ratio": 0.995},
        "skipped": {"store_pg": "modelyard/postgres:latest is not built"},
    }  # fmt: skip


def test_targets_computed_from_the_run() -> None:
    from loadkit.bench import targets

    rows = {row.what: row for row in targets.rows(_results())}
    verdicts = {what: row.ok for what, row in rows.items()}
    assert len(rows) == 17  # every row of the table, none left out
    assert abs(rows["gateway + adapter CPU per request, Responses bridged (c=16)"].value - 0.14) < 1e-9
    assert verdicts["gateway + adapter CPU per request, Responses bridged (c=16)"] is True
    assert verdicts["added p50, 1 in flight"] is True  # 0.20 ≤ 0.25
    assert verdicts["added p99, 1 in flight"] is False  # 0.65 > 0.6
    assert rows["max requests/s, p99 added ≤ 10 ms"].value == 7000 and verdicts["max requests/s, p99 added ≤ 10 ms"]
    # LiteLLM within the budget only at c=1 (150/s): 7000 / 150 ≥ 40.
    assert abs(rows["… over LiteLLM's, both bridging Responses to chat"].value - 7000 / 150) < 1e-9
    # Chat against chat: 8000 / 900 (Portkey's p99 at c=16 is over the budget) ≥ 5.
    portkey = rows["… over Portkey's, both chat passthrough"]
    assert abs(portkey.value - 8000 / 900) < 1e-9 and portkey.ok
    assert [verdicts[f"streaming TTFT added p{q}"] for q in (50, 99)] == [True, True]  # 0.3, 1.5
    assert [verdicts[f"per-token delay added p{q}"] for q in (50, 99)] == [True, True]  # 0.07, 0.25
    assert verdicts["10,000 open streams, 0 failed"] is True
    assert verdicts["adapter RSS at 10,000 streams"] is False  # 520 MB
    cost = "adapter CPU added over plain (c=16)"
    assert abs(rows[f"store on (SQLite), {cost}"].value - 0.04) < 1e-9 and verdicts[f"store on (SQLite), {cost}"]
    assert verdicts[f"capture on, {cost}"] is False  # +0.06
    assert verdicts["/v1/messages over /v1/responses, adapter CPU added (c=16)"] is True
    pg = rows[f"store on (PostgreSQL), {cost}"]
    assert pg.ok is None and "not built" in pg.note  # not measured, and why
    assert verdicts["stack / direct tokens/s, vLLM CPU engine"] is True


def test_targets_say_what_was_not_measured() -> None:
    from loadkit.bench import targets

    r = _results()
    del r["engine"], r["sweep"]["portkey"]
    r["open_streams"]["modelyard"].pop("10000")
    r["skipped"]["portkey"] = "Node.js is not installed"
    rows = {row.what: row for row in targets.rows(r)}
    assert len(rows) == 17
    assert rows["… over Portkey's, both chat passthrough"].ok is None
    assert "Node.js" in rows["… over Portkey's, both chat passthrough"].note
    assert rows["10,000 open streams, 0 failed"].ok is None and "1,000" in rows["10,000 open streams, 0 failed"].note
    assert rows["stack / direct tokens/s, vLLM CPU engine"].ok is None
