"""loadkit beyond the SSE parser: the raw HTTP reading, the pacer and closed loop, soak's request and
outcome against the real fault-injecting engine, its fault script and summary, and that the scripts
keep to the one parser."""

from __future__ import annotations

import asyncio
import collections
import json
import random
import re
from pathlib import Path

import pytest

from loadkit import client, http, sse
from loadkit.soak import faults as soak_faults
from loadkit.soak import outcome, run
from loadkit.standin import Server, StreamShape, completion_body
from tests.standins import faults

ROOT = Path(__file__).resolve().parents[2]


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


# -- http ----------------------------------------------------------------------------------------
def test_dechunk() -> None:
    assert http.dechunk(chunked(b"data: a\n", b"\ndata: b\n\n")) == b"data: a\n\ndata: b\n\n"
    assert http.dechunk(b"3;ext=1\r\nabc\r\n0\r\n\r\n") == b"abc"
    with pytest.raises(ValueError):
        http.dechunk(chunked(b"abc")[:-5])


async def test_read_reply_and_chunks() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert await http.read_reply(reader_of(head + chunked(b"ab", b"cd"))) == (200, b"abcd")
    head = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n"
    assert await http.read_reply(reader_of(head + b"{}")) == (404, b"{}")
    assert [p async for p in http.read_chunks(reader_of(chunked(b"x", b"yz")))] == [b"x", b"yz"]


def test_request_bytes_extra_headers() -> None:
    raw = http.request_bytes("h", 1, "/v1/x", b"{}", {"authorization": "Bearer k"})
    assert raw == (
        b"POST /v1/x HTTP/1.1\r\nhost: h:1\r\ncontent-type: application/json\r\nauthorization: Bearer k\r\n"
        b"content-length: 2\r\n\r\n{}"
    )


# -- the load client -----------------------------------------------------------------------------
async def test_sse_payloads_across_chunks_split_mid_event() -> None:
    body = b'data: {"a":1}\r\n\r\n: ping\r\n\r\ndata: [DONE]\r\n\r\n'
    pieces = [body[i : i + 4] for i in range(0, len(body), 4)]
    assert [d async for d in client.sse_payloads(reader_of(chunked(*pieces)))] == [b'{"a":1}', sse.DONE]


async def test_paced_slots() -> None:
    slots = [(i, due) async for i, due, _ in client.paced(500.0, 10)]
    assert [i for i, _ in slots] == list(range(10))
    assert all(abs((b - a) - 0.002) < 1e-9 for (_, a), (_, b) in zip(slots, slots[1:], strict=False))


async def test_closed_loop_counts_tokens_and_latencies() -> None:
    loop = asyncio.get_running_loop()
    body = completion_body()
    server = await loop.create_server(lambda: Server(StreamShape(), 0.0, body), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        r = await client.closed_loop("127.0.0.1", port, "/v1/chat/completions", b"{}", "completion_tokens", 2, 0.1)
    finally:
        server.close()
    assert r.requests > 2 and r.tokens == 7 * r.requests  # the stand-in's usage: 7 completion tokens
    assert len(r.latencies) == r.requests and r.seconds >= 0.1


OPENAI_ERROR = {"error": {"message": "busy", "type": "server_error", "param": None, "code": "overloaded"}}


# -- soak: one request, one outcome --------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "step", "want"),
    [
        ("chat", {}, "ok"),
        ("chat-stream", {}, "ok"),
        ("chat", {"status": 503, "body": OPENAI_ERROR}, "error:503:overloaded"),
        ("chat-stream", {"status": 429, "body": OPENAI_ERROR}, "error:429:overloaded"),
        ("chat", {"status": 503}, "bad:503-shape"),  # the engine's bare error: the adapter's to make well-formed
        ("chat", {"reset": True}, "bad:no-reply"),
        ("chat", {"truncate": True}, "bad:parse-JSONDecodeError"),
        ("chat-stream", {"drop_after": 2}, "bad:cut-chunked"),  # straight at the engine, no adapter to end it
        ("chat-stream", {"content_type": "text/html"}, "bad:no-done"),
    ],
)
async def test_soak_request_against_the_fault_engine(kind: str, step: dict, want: str) -> None:
    engine = faults.Faults()
    engine.script = [step] if step else []
    answer = engine.chat

    async def then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> bool:
        await answer(reader, writer, raw)
        return False  # the engine keeps connections alive; soak's `connection: close` is the gateway's to honour

    engine.chat = then_close  # type: ignore[method-assign]
    server = await asyncio.start_server(engine.engine, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        got = await outcome.one("127.0.0.1", port, kind, "0000001-abcdef01", 10.0, "sk-test")
    finally:
        server.close()
    assert got == want
    assert engine.log[0]["tag"] == "0000001-abcdef01"


def responses_stream(*events: dict) -> bytes:
    return b"".join(b"event: %s\r\ndata: %s\r\n\r\n" % (e["type"].encode(), json.dumps(e).encode()) for e in events)


def test_soak_classifies_responses_streams() -> None:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"
    delta = {"type": "response.output_text.delta", "delta": "tag:T1 "}
    done = {"type": "response.completed", "response": {}}
    failed = {"type": "response.failed", "response": {"error": {"message": "cut", "code": "server_error"}}}
    body = responses_stream(delta, done)
    cut = len(body) // 3  # the framing splits an event: the parser does not care
    assert outcome.classify("responses-stream", "T1", 200, head, chunked(body[:cut], body[cut:])) == "ok"
    assert outcome.classify("responses-stream", "T2", 200, head, chunked(body)) == "bad:wrong-text"
    assert outcome.classify("responses-stream", "T1", 200, head, chunked(responses_stream(delta, failed))) == (
        "failed:server_error"
    )
    twice = responses_stream(delta, done, done)
    assert outcome.classify("responses-stream", "T1", 200, head, chunked(twice)) == "bad:2-terminal-events"


def test_soak_classifies_a_final_error_chunk_as_failed() -> None:
    error = {"error": {"message": "upstream dropped", "type": "server_error", "param": None, "code": "dropped"}}
    chunk = {"choices": [{"delta": {"content": "tag:T"}, "finish_reason": None}]}
    body = b"data: %s\n\ndata: %s\n\n" % (json.dumps(chunk).encode(), json.dumps(error).encode())
    assert outcome.classify("chat-stream", "T", 200, b"", body) == "failed:dropped"
    more = body + b"data: %s\n\n" % json.dumps(chunk).encode()  # the stream went on after its error
    assert outcome.classify("chat-stream", "T", 200, b"", more) == "bad:error-chunk"


def test_fault_script_covers_every_attempt() -> None:
    steps, drawn = soak_faults.fault_script(20_000, random.Random(1))
    assert sum(s.get("times", 1) for s in steps) == 20_000
    assert sum(drawn.values()) == sum(1 for s in steps if "times" not in s)
    assert set(drawn) == {"429", "503", "500", "reset", "truncate", "drop_after"}
    assert soak_faults.fault_script(20_000, random.Random(1)) == (steps, drawn)  # the seed makes the run


def test_soak_report() -> None:
    outcomes = {k: collections.Counter() for k in outcome.KINDS}
    outcomes["chat"].update({"ok": 3, "error:503:None": 1})
    outcomes["chat-stream"].update({"ok": 1, "bad:no-done": 1})
    tags = {f"t{i}": "chat" for i in range(7)}  # one sent and never answered: lost
    res = {"outcomes": outcomes, "tags": tags, "skipped": 0, "peak": 3, "sent_time": 1.0, "elapsed": 1.5}
    log = [{"tag": "t1", "step": {}, "completed": True}, {"tag": "t1", "step": {"status": 503}, "completed": True}]
    metrics = 'modelyard_upstream_retries_total{backend="vllm",reason="503"} 2.0\n'
    text = run.report(run.Options(rate=7, duration=1), res, log, metrics)
    assert run.bad_count(res) == 1
    assert "| **malformed, hung (client timeout 60 s) or lost** | **2** |" in text
    assert "| tags generated in full more than once (duplicates) | 1 |" in text
    assert "| adapter retries (modelyard_upstream_retries_total) | 2 (503 2) |" in text
    assert "| **total** | 0 | 0 | 4 | 2 |" in text


# -- soak: the stateful mix's verdicts --------------------------------------------------------------
def stored(rid: str, previous: str | None, tag: str, status: str = "completed") -> dict:
    content = [{"type": "output_text", "text": f"You said: tag:{tag}"}]
    return {"id": rid, "previous_response_id": previous, "status": status, "output": [{"content": content}]}


def test_soak_chain_turn_read_back() -> None:
    items = {"data": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "tag:T2"}]}]}
    assert outcome.linked(stored("r2", "r1", "T2"), "r2", "r1", "T2", items) == "ok"
    assert outcome.linked(stored("r2", None, "T2"), "r2", "r1", "T2", items) == "bad:wrong-previous"
    assert outcome.linked(stored("r9", "r1", "T2"), "r2", "r1", "T2", items) == "bad:get-other-id"
    assert outcome.linked(stored("r2", "r1", "T2", "in_progress"), "r2", "r1", "T2", items) == "bad:get-in_progress"
    assert outcome.linked(stored("r2", "r1", "T2"), "r2", "r1", "T2", {"data": items["data"] * 2}) == (
        "bad:input-items-2"  # the chain's earlier items belong to the earlier turns, not this one's input
    )
    assert outcome.linked(stored("r2", "r1", "T2"), "r2", "r1", "T2", {"data": []}) == "bad:input-items-0"


def test_soak_background_ends() -> None:
    assert outcome.background_end(stored("r", None, "T"), "T", cancel_asked=False) == "ok"
    assert outcome.background_end({"status": "cancelled"}, "T", cancel_asked=True) == "ok:cancelled"
    assert outcome.background_end(stored("r", None, "T"), "T", cancel_asked=True) == "ok"  # it ended first
    assert outcome.background_end({"status": "cancelled"}, "T", cancel_asked=False) == "bad:cancelled-unasked"
    failed = {"status": "failed", "error": {"message": "engine gone", "code": "server_error"}}
    assert outcome.background_end(failed, "T", cancel_asked=False) == "failed:server_error"
    assert outcome.background_end({"status": "failed", "error": None}, "T", False) == "bad:failed-no-reason"
    assert outcome.background_end({"status": "queued"}, "T", False) == "bad:stuck-queued"
    assert outcome.background_end({"status": "in_progress"}, "T", True) == "bad:stuck-in_progress"


def ws_events(rid: str, previous: str | None, tag: str, end: str = "response.completed") -> list[dict]:
    response = {"id": rid, "previous_response_id": previous}
    return [
        {"type": "response.created", "response": {**response, "status": "in_progress"}},
        {"type": "response.output_text.delta", "delta": f"tag:{tag}"},
        {"type": end, "response": {**response, "error": {"message": "cut", "code": "server_error"}}},
    ]


def test_soak_websocket_turns() -> None:
    assert outcome.ws_turn(ws_events("r2", "r1", "T"), "T", "r1") == ("ok", "r2")
    assert outcome.ws_turn(ws_events("r2", None, "T"), "T", "r1") == ("bad:ws-wrong-previous", None)
    assert outcome.ws_turn(ws_events("r2", "r1", "T", "response.failed"), "T", "r1") == ("failed:server_error", None)
    twice = ws_events("r2", "r1", "T") + ws_events("r2", "r1", "T")[-1:]
    assert outcome.ws_turn(twice, "T", "r1") == ("bad:ws-2-terminal-events", None)
    other = ws_events("r2", "r1", "T")
    other[0] = {"type": "response.created", "response": {"id": "r3"}}  # an event of another response
    assert outcome.ws_turn(other, "T", "r1") == ("bad:ws-mixed-responses", None)
    error = {"type": "error", "status": 404, "error": {**OPENAI_ERROR["error"], "code": "previous_response_not_found"}}
    assert outcome.ws_turn([error], "T", "r1") == ("error:404:previous_response_not_found", None)
    assert outcome.ws_turn([{"type": "error", "error": {}}], "T", None) == ("bad:ws-error-shape", None)
    broke = ws_events("r2", "r1", "T", "response.failed")  # a stream's own error event, then its end
    broke.insert(2, {"type": "error", "code": "server_error", "message": "cut", "param": None, "sequence_number": 2})
    assert outcome.ws_turn(broke, "T", "r1") == ("failed:server_error", None)


async def test_websocket_frames_round_trip() -> None:
    from loadkit import ws

    reader = asyncio.StreamReader()
    for size in (3, 200, 70_000):  # the three length encodings
        reader.feed_data(ws.frame(b"x" * size))
    reader.feed_data(ws.frame(b"", 8))
    conn = ws.Connection(reader, None)  # type: ignore[arg-type]
    assert [len(await conn.recv_text() or "") for _ in range(3)] == [3, 200, 70_000]
    assert await conn.recv_text() is None  # a close frame


def test_fault_engine_logs_a_continued_turns_own_tag() -> None:
    """A continued turn's upstream request carries its chain's earlier tags first: the log names its own."""
    body = {"messages": [{"role": "user", "content": "tag:T1"}, {"role": "assistant", "content": "tag:T1"},
                         {"role": "user", "content": "tag:T2 hold_ms:1"}]}  # fmt: skip
    raw = json.dumps(body).encode()
    assert faults.TAG.findall(raw)[-1] == b"T2" and faults.HOLD.findall(raw) == [b"1"]


# -- one parser ----------------------------------------------------------------------------------
def test_golden_chunks_read_back_through_the_shared_parser() -> None:
    """scripts/record-golden reads the engine's stream with loadkit.sse: every recorded case survives."""
    cases = [json.loads(p.read_text()) for p in sorted((ROOT / "tests/unit/golden").glob("*.json"))]
    assert cases
    for case in cases:
        body = b"".join(b"data: %s\n\n" % json.dumps(c).encode() for c in case["chunks"]) + b"data: [DONE]\n\n"
        assert sse.json_payloads(body) == case["chunks"]


def test_the_scripts_have_no_sse_parser_of_their_own() -> None:
    for name in ("bench", "soak", "record-golden"):
        text = (ROOT / "scripts" / name).read_text()
        assert not re.search(r"""startswith\(b?["']data:""", text), name
        assert "def sse" not in text and "def dechunk" not in text and "def free_port" not in text, name


# -- the bench's bring-up and knobs, the CLIs' flags ---------------------------------------------
def test_lab_container_commands(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from loadkit import stack
    from loadkit.bench import lab

    ran: list[tuple[str, ...]] = []
    monkeypatch.setattr(stack, "sh", lambda *args, **_: ran.append(args) or "")
    monkeypatch.setattr(lab, "sh", lambda *args, **_: "listen 8080;")
    bench = lab.BenchLab(lab.Images(), tmp_path / "venv", tmp_path)
    bench.adapter("adapter", "img:1", 9001, {"A": "1"})
    bench.adapter("adapter-engine", "img:1", 9002, {}, pin=False)
    bench.gateway("gateway", 9003, 9001, pin=False)
    tag = bench.tag
    nofile = f"nofile={lab.NOFILE}:{lab.NOFILE}"  # as many as the machine allows
    assert ran[0] == ("docker", "run", "-d", "--name", f"{tag}-adapter", "--network", "host", "--no-healthcheck",
                      "--ulimit", nofile, "--cpuset-cpus", "1", "-e", "A=1", "-e", "MODELYARD_PORT=9001",
                      "img:1", "vllm")  # fmt: skip
    assert "--cpuset-cpus" not in ran[1] and "--ulimit" not in ran[1] and ran[1][-2:] == ("img:1", "vllm")
    assert "--cpuset-cpus" not in ran[2] and "GATEWAY_ADAPTER_PORT=9001" in ran[2] and "--ulimit" in ran[2]
    assert (tmp_path / "gateway.conf").read_text() == "listen 127.0.0.1:9003;"
    assert bench.containers == [f"{tag}-adapter", f"{tag}-adapter-engine", f"{tag}-gateway"]


def test_quick_plan_shortens_the_phases() -> None:
    from loadkit.bench.phases import Plan

    full, quick = Plan(), Plan.quick()
    assert (full.flight_rounds, full.seconds, full.streams, full.open_streams) == (5, 3.0, 30, (1000, 10000))
    assert (quick.flight_rounds, quick.seconds, quick.streams, quick.open_streams) == (3, 2.0, 10, (200, 1000))
    assert quick.levels == (1, 4, 16, 64) and quick.engine_rounds == 1 and full.engine_rounds == 4


FLAGS = {
    "bench": "--venv --portkey --setup --quick --adapter-image --gateway-image --vllm-image --postgres-image "
    "--before-image --no-engine --out --doc",
    "soak": "--rate --duration --timeout --max-in-flight --seed --mix --url --control --api-key --keep --out",
    "record-golden": "--engine --golden",
}


@pytest.mark.parametrize(("script", "flags"), FLAGS.items())
def test_the_clis_keep_their_flags(script: str, flags: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert all(flag in out.stdout for flag in flags.split()), out.stdout
