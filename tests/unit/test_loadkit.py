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
    "soak": "--rate --duration --timeout --max-in-flight --seed --url --control --keep --out",
    "record-golden": "--engine --golden",
}


@pytest.mark.parametrize(("script", "flags"), FLAGS.items())
def test_the_clis_keep_their_flags(script: str, flags: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert all(flag in out.stdout for flag in flags.split()), out.stdout
