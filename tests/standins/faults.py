"""A fault-injecting OpenAI-compatible engine: `python -m standins.faults` (engine on :8000, control on :9000).

It serves what the vllm adapter calls (GET /health, GET /v1/models, POST /v1/chat/completions, streamed
or not) with the stand-ins' deterministic model, unless a test scripted a fault. Plain asyncio HTTP/1.1,
so it can misbehave the ways a real upstream does: refuse connections, drop them, stall, cut bodies short.

Control (JSON over HTTP on :9000):
  POST /script   a list of steps, each used by one chat request in arrival order (`times` repeats a step):
                   {"status": 503, "headers": {...}, "body": {...}}   an error reply
                   {"reset": true}                 close the connection without a reply
                   {"delay": 1.5}                  wait before the reply (slow first byte)
                   {"stall_after": 2}              stream 2 chunks, then nothing until the client goes away
                   {"drop_after": 2}               stream 2 chunks, then close the connection mid-body
                   {"chunk_delay": 0.2}            stream slowly
                   {"truncate": true}              a 200 whose JSON is cut in half (framing intact)
                   {"drop_body": true}             a 200 whose connection closes mid-body
                   {"content_type": "text/html", "raw": "..."}   a 200 that is not JSON / not SSE
  POST /listen   {"on": false} closes the engine's listening socket (connections refused), true reopens it
  GET  /log      one entry per chat request: time, stream, step, chunks sent, whether the client closed,
                 and `tag` when the request carried a `tag:<id>` marker in its text (the last one: a
                 continued turn carries its chain's earlier tags first, its own last)
  POST /reset    clears the script and the log, listens again
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from typing import Any

from . import common

ENGINE_PORT = int(os.environ.get("FAULTS_PORT", "8000"))
CONTROL_PORT = int(os.environ.get("FAULTS_CONTROL_PORT", "9000"))
MODEL = os.environ.get("FAULTS_MODEL", "faulty-model")
TAG = re.compile(rb"\btag:([\w-]{1,64})")
HOLD = re.compile(rb"\bhold_ms:(\d{1,5})")  # a request asking to be answered late (one to cancel mid-run)


class Faults:
    def __init__(self) -> None:
        self.script: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    # -- listening ---------------------------------------------------------------------------------
    async def listen(self, on: bool) -> None:
        if on and self.server is None:
            self.server = await asyncio.start_server(self.engine, "0.0.0.0", ENGINE_PORT, reuse_address=True)
        elif not on and self.server is not None:
            self.server.close()
            self.server = None
            for w in list(self.writers):  # open keep-alive connections go too: nothing answers any more
                w.transport.abort()

    def next_step(self) -> dict[str, Any]:
        if not self.script:
            return {}
        step = self.script[0]
        step["times"] = step.get("times", 1) - 1
        if step["times"] <= 0:
            self.script.pop(0)
        return step

    # -- the engine --------------------------------------------------------------------------------
    async def engine(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    return
                method, path, body = req
                if method == "GET" and path == "/health":
                    await send_json(writer, 200, {})
                elif method == "GET" and path == "/v1/models":
                    await send_json(writer, 200, common.model_list([MODEL]))
                elif method == "POST" and path == "/v1/chat/completions":
                    if not await self.chat(reader, writer, body):
                        return
                else:
                    await send_json(writer, 404, {"error": {"message": f"no {method} {path}", "type": "not_found"}})
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.writers.discard(writer)
            writer.transport.abort() if writer.transport else None

    async def chat(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> bool:
        """Answer one chat request; False when the connection is done for."""
        step = self.next_step()
        body = json.loads(raw or b"{}")
        stream = bool(body.get("stream"))
        entry = {"t": time.time(), "stream": stream, "step": {k: v for k, v in step.items() if k != "times"},
                 "chunks": 0, "client_closed": False, "completed": False}  # fmt: skip
        if tags := TAG.findall(raw or b""):  # a load test's request id (scripts/soak): attempts per request
            entry["tag"] = tags[-1].decode()
        self.log.append(entry)
        if step.get("reset"):
            return False
        if hold := HOLD.findall(raw or b""):
            await asyncio.sleep(int(hold[-1]) / 1000)
        if step.get("delay"):
            await asyncio.sleep(step["delay"])
        if "status" in step:
            error = {"error": {"message": f"scripted {step['status']}", "type": "server_error", "code": None}}
            await send_json(writer, step["status"], step.get("body", error), step.get("headers"))
            return True
        if "content_type" in step:
            raw_reply = step.get("raw", "<html>not an API</html>").encode()
            await send(writer, 200, raw_reply, {"content-type": step["content_type"]})
            return True
        body.setdefault("model", MODEL)
        if not stream:
            reply = json.dumps(common.chat_completion(body)).encode()
            if step.get("truncate"):
                await send(writer, 200, reply[: len(reply) // 2], {"content-type": "application/json"})
            elif step.get("drop_body"):
                head = head_bytes(200, {"content-type": "application/json", "content-length": str(len(reply))})
                writer.write(head + reply[: len(reply) // 2])
                await writer.drain()
                return False
            else:
                await send(writer, 200, reply, {"content-type": "application/json"})
            entry["completed"] = True
            return True
        return await self.stream(reader, writer, body, step, entry)

    async def stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: dict[str, Any],
        step: dict[str, Any], entry: dict[str, Any],
    ) -> bool:  # fmt: skip
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = list(common.sse_data(common.chat_chunks(body, include_usage)))
        if step.get("chunk_delay"):  # a long reply, slowly: time for a client to leave halfway
            chunks = chunks[:1] + chunks[1:-2] * 20 + chunks[-2:]
        writer.write(head_bytes(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}))
        gone = asyncio.ensure_future(reader.read(1))  # the client closing shows as EOF here
        try:
            for i, chunk in enumerate(chunks):
                if i == step.get("drop_after"):
                    await writer.drain()
                    return False
                if i == step.get("stall_after"):
                    await writer.drain()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(asyncio.shield(gone), 120)
                    entry["client_closed"] = gone.done()
                    return False
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                entry["chunks"] = i + 1
                if step.get("chunk_delay"):
                    await asyncio.wait([gone], timeout=step["chunk_delay"])
                if gone.done():
                    entry["client_closed"] = True
                    return False
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            entry["completed"] = True
            return False  # the EOF watcher has read from the socket: do not reuse it
        except ConnectionError:
            entry["client_closed"] = True
            return False
        finally:
            gone.cancel()

    # -- control -----------------------------------------------------------------------------------
    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = await read_request(reader)
            if req is None:
                return
            method, path, raw = req
            arg = json.loads(raw) if raw else None
            if path == "/script" and method == "POST":
                self.script = [dict(s) for s in arg]
                out: Any = {"steps": len(self.script)}
            elif path == "/listen" and method == "POST":
                await self.listen(bool(arg["on"]))
                out = {"listening": self.server is not None}
            elif path == "/log":
                out = self.log
            elif path == "/reset" and method == "POST":
                self.script, self.log = [], []
                await self.listen(True)
                out = {"ok": True}
            elif path == "/health":
                out = {"status": "ok"}
            else:
                await send_json(writer, 404, {"error": path}, {"connection": "close"})
                return
            await send_json(writer, 200, out, {"connection": "close"})
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return method, target.split("?", 1)[0], body


def head_bytes(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send(writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    writer.write(head_bytes(status, {**(headers or {}), "content-length": str(len(body))}) + body)
    await writer.drain()


async def send_json(writer: asyncio.StreamWriter, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
    await send(writer, status, json.dumps(obj).encode(), {"content-type": "application/json", **(headers or {})})


async def main() -> None:
    faults = Faults()
    await faults.listen(True)
    control = await asyncio.start_server(faults.control, "0.0.0.0", CONTROL_PORT, reuse_address=True)
    async with control:
        await control.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
