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


async def exchange(
    host: str, port: int, method: str, path: str, body: Any, timeout: float, headers: dict[str, str]
) -> tuple[int, bytes, bytes] | str:
    """One request on a connection of its own, read to EOF: (status, head, body), or bad:<why>."""
    writer = None
    raw = json.dumps(body).encode() if body is not None else b""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request_bytes(host, port, path, raw, {**headers, "connection": "close"}, method))
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
    return status_of(head), head, rest


async def one(host: str, port: int, kind: str, tag: str, timeout: float, api_key: str) -> str:
    """Send one request on a connection of its own and classify what came back (EOF ends the reply)."""
    path, body = request_body(kind, tag)
    headers = {"authorization": f"Bearer {api_key}", "x-request-id": f"soak-{tag}"}
    got = await exchange(host, port, "POST", path, body, timeout, headers)
    if isinstance(got, str):
        return got
    try:
        return classify(kind, tag, *got)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"bad:parse-{type(exc).__name__}"


# -- the stateful mix's verdicts (the requests themselves: loadkit/soak/stateful.py) --------------
STATEFUL = ("chain", "background", "background-cancel", "ws")
ENDED = ("completed", "cancelled", "failed", "incomplete")  # a Response's terminal statuses


def reply_json(head: bytes, body: bytes) -> Any:
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return json.loads(body)


def linked(obj: Any, rid: str, previous: str | None, tag: str, items: Any) -> str:
    """A chain turn read back afterwards: GET /v1/responses/{id} and its input_items. It must be there,
    linked to the turn before it, completed with its own tag, and hold exactly its own one input item."""
    if not isinstance(obj, dict) or obj.get("id") != rid:
        return "bad:get-other-id"
    if obj.get("previous_response_id") != previous:
        return "bad:wrong-previous"
    if obj.get("status") != "completed" or tag not in output_text(obj):
        return "bad:get-" + str(obj.get("status"))
    data = items.get("data") if isinstance(items, dict) else None
    if not isinstance(data, list) or len(data) != 1:
        return f"bad:input-items-{len(data) if isinstance(data, list) else 'none'}"
    return "ok" if tag in json.dumps(data[0]) else "bad:input-items-text"


def output_text(obj: dict[str, Any]) -> str:
    return "".join(c.get("text", "") for i in obj.get("output") or [] for c in i.get("content") or [])


def background_end(obj: Any, tag: str, cancel_asked: bool) -> str:
    """Where a background response ended up once polled: a terminal status, never queued/in_progress."""
    status = obj.get("status") if isinstance(obj, dict) else None
    if status == "completed":
        return "ok" if tag in output_text(obj) else "bad:wrong-text"
    if status == "cancelled":
        return "ok:cancelled" if cancel_asked else "bad:cancelled-unasked"
    if status in ("failed", "incomplete"):
        reason = (obj.get("error") or {}).get("message") or (obj.get("incomplete_details") or {}).get("reason")
        return f"failed:{(obj.get('error') or {}).get('code') or status}" if reason else f"bad:{status}-no-reason"
    return f"bad:stuck-{status}"


def request_error(event: dict[str, Any]) -> bool:
    """A WebSocket `error` that answers a response.create in place of a response (no sequence number)."""
    return event.get("type") == "error" and "sequence_number" not in event


def ws_turn(events: list[dict[str, Any]], tag: str, previous: str | None) -> tuple[str, str | None]:
    """One response.create's events on the socket (until its end): exactly one terminal event or one
    request error, last, every event of the one response. (outcome, its response id when it completed).
    A stream's own `error` event (code, message, sequence_number) before its `response.failed` is an
    event of the response, as in a stream over HTTP; a request error (`status`, `error`) has no response."""
    errors = [e for e in events if request_error(e)]
    ends = [e for e in events if e.get("type") in TERMINAL or e.get("type") == "response.cancelled"]
    if errors:
        if len(errors) == 1 and not ends and events[-1] is errors[0] and well_formed_error(errors[0]):
            return f"error:{errors[0].get('status')}:{errors[0]['error'].get('code')}", None
        return "bad:ws-error-shape", None
    if len(ends) != 1 or events[-1] is not ends[0]:
        return f"bad:ws-{len(ends)}-terminal-events", None
    ids = {e["response"].get("id") for e in events if isinstance(e.get("response"), dict)}
    if len(ids) != 1:
        return "bad:ws-mixed-responses", None
    end = ends[0]
    if end["response"].get("previous_response_id") != previous:
        return "bad:ws-wrong-previous", None
    if end["type"] == "response.completed":
        text = "".join(e.get("delta", "") for e in events if e.get("type") == "response.output_text.delta")
        return ("ok", end["response"]["id"]) if tag in text else ("bad:wrong-text", None)
    if end["type"] == "response.failed" and isinstance((end["response"].get("error") or {}).get("message"), str):
        return f"failed:{end['response']['error'].get('code')}", None
    return "bad:" + end["type"], None
