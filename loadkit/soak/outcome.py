"""One soak request, and the one outcome it must end in: ok, error:<status>:<code> (a well-formed
OpenAI error body), failed:<code> (a stream's well-formed end in error) or bad:<why> (anything else:
malformed, cut short, hung)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from loadkit import sse
from loadkit.http import dechunk, request_bytes, status_of

MODEL = "faulty-model"
KINDS = ("responses", "responses-stream", "chat", "chat-stream")
TERMINAL = ("response.completed", "response.failed", "response.incomplete")


def request_body(kind: str, tag: str) -> tuple[str, dict[str, Any]]:
    text = f"Please repeat tag:{tag} back."
    stream = kind.endswith("-stream")
    if kind.startswith("responses"):
        return "/v1/responses", {"model": MODEL, "input": text, "stream": stream, "max_output_tokens": 32}
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": stream}
    return "/v1/chat/completions", body


def well_formed_error(obj: Any) -> bool:
    err = obj.get("error") if isinstance(obj, dict) else None
    return (
        isinstance(err, dict)
        and isinstance(err.get("message"), str)
        and bool(err["message"])
        and isinstance(err.get("type"), str)
        and {"param", "code"} <= err.keys()
    )


def classify(kind: str, tag: str, status: int, headers: bytes, body: bytes) -> str:
    if b"transfer-encoding: chunked" in headers.lower():
        try:
            body = dechunk(body)
        except ValueError:
            return "bad:cut-chunked"
    if status != 200:
        try:
            obj = json.loads(body)
        except ValueError:
            return f"bad:{status}-not-json"
        return f"error:{status}:{obj['error'].get('code')}" if well_formed_error(obj) else f"bad:{status}-shape"
    if kind == "responses":
        obj = json.loads(body)
        if obj.get("status") == "completed":
            text = "".join(c.get("text", "") for i in obj["output"] for c in i.get("content") or [])
            return "ok" if tag in text else "bad:wrong-text"
        return "bad:status-" + str(obj.get("status"))
    if kind == "chat":
        obj = json.loads(body)
        return "ok" if tag in (obj["choices"][0]["message"].get("content") or "") else "bad:wrong-text"
    events = sse.payloads(body)
    if kind == "responses-stream":
        return _responses_stream(tag, [json.loads(e) for e in events])
    return _chat_stream(tag, events)


def _responses_stream(tag: str, parsed: list[Any]) -> str:
    ends = [e for e in parsed if e.get("type") in TERMINAL]
    if len(ends) != 1 or parsed[-1] is not ends[0]:
        return f"bad:{len(ends)}-terminal-events"
    end = ends[0]
    if end["type"] == "response.completed":
        text = "".join(e.get("delta", "") for e in parsed if e.get("type") == "response.output_text.delta")
        return "ok" if tag in text else "bad:wrong-text"
    if end["type"] == "response.failed" and isinstance((end["response"].get("error") or {}).get("message"), str):
        return f"failed:{end['response']['error'].get('code')}"
    return "bad:" + end["type"]


def _chat_stream(tag: str, events: list[bytes]) -> str:
    """[DONE] after the last chunk, or a final error chunk (OpenAI sends no [DONE] after one)."""
    done = bool(events) and events[-1] == sse.DONE
    chunks = [json.loads(e) for e in (events[:-1] if done else events)]
    errors = [c for c in chunks if "error" in c]
    if errors:
        final = chunks[-1] is errors[-1] and len(errors) == 1
        if final and well_formed_error(errors[-1]):
            return f"failed:{errors[-1]['error'].get('code')}"
        return "bad:error-chunk"
    if not done:
        return "bad:no-done"
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
    finished = any(c["choices"][0].get("finish_reason") for c in chunks if c.get("choices"))
    return "ok" if finished and tag in text else "bad:stream-incomplete"


async def one(host: str, port: int, kind: str, tag: str, timeout: float, api_key: str) -> str:
    """Send one request on a connection of its own and classify what came back (EOF ends the reply)."""
    path, body = request_body(kind, tag)
    headers = {"authorization": f"Bearer {api_key}", "x-request-id": f"soak-{tag}", "connection": "close"}
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request_bytes(host, port, path, json.dumps(body).encode(), headers))
            reply = await reader.read(-1)
    except TimeoutError:
        return "bad:client-timeout"
    except OSError as exc:
        return f"bad:connect-{type(exc).__name__}"
    finally:
        if writer is not None:
            writer.close()
    head, sep, rest = reply.partition(b"\r\n\r\n")
    if not sep:
        return "bad:no-reply"
    try:
        return classify(kind, tag, status_of(head), head, rest)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"bad:parse-{type(exc).__name__}"
