"""The soak's stateful mix: chains of 3-5 turns by previous_response_id, background responses polled to
their end (some cancelled mid-run), WebSocket sessions of continued turns. Each turn is a request with a
tag of its own and ends in one outcome (the verdicts: loadkit/soak/outcome.py); a chain turn's outcome
is only `ok` once it was read back afterwards, linked to the turn before it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from loadkit import ws
from loadkit.soak import outcome as oc

HOLD_MS = 3000  # a background response to be cancelled asks the engine to answer this late
POLL_S = 0.25


@dataclass
class Flow:
    host: str
    port: int
    api_key: str
    timeout: float
    new_tag: Callable[[str], str]  # a fresh tag, recorded against its kind
    record: Callable[[str, str], None]  # (kind, outcome)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, bytes] | str:
        return await oc.exchange(self.host, self.port, method, path, body, self.timeout, self.headers)


def text(tag: str, hold_ms: int = 0) -> str:
    return f"Please repeat tag:{tag} back." + (f" hold_ms:{hold_ms}" if hold_ms else "")


async def parsed(flow: Flow, method: str, path: str, body: Any = None) -> tuple[str, Any]:
    """('ok', the JSON body) for a 200, else the outcome a non-200 or a broken reply is."""
    got = await flow.call(method, path, body)
    if isinstance(got, str):
        return got, None
    status, head, raw = got
    try:
        obj = oc.reply_json(head, raw)
    except ValueError:
        return f"bad:{status}-not-json", None
    if status == 200:
        return "ok", obj
    return (f"error:{status}:{obj['error'].get('code')}" if oc.well_formed_error(obj) else f"bad:{status}-shape"), None


async def read(flow: Flow, path: str, tries: int = 3) -> tuple[str, Any]:
    """A GET, tried again after a well-formed 5xx (an overloaded gateway or adapter: the stored response
    is not lost for it); a 404 or anything malformed is the answer."""
    for _ in range(tries - 1):
        outcome, obj = await parsed(flow, "GET", path)
        if not outcome.startswith("error:5"):
            return outcome, obj
        await asyncio.sleep(POLL_S)
    return await parsed(flow, "GET", path)


async def chain(flow: Flow, turns: int) -> None:
    """Each turn continues from the last one that completed; once all are sent, each completed turn is
    read back (GET and input_items) and must be linked to the one it continued."""
    previous: str | None = None
    sent: list[tuple[str, str, str | None]] = []  # (tag, id, previous) of the turns that completed
    for _ in range(turns):
        tag = flow.new_tag("chain")
        body = {"model": oc.MODEL, "input": text(tag), "store": True, "max_output_tokens": 32}
        if previous:
            body["previous_response_id"] = previous
        got = await flow.call("POST", "/v1/responses", body)
        if isinstance(got, str):
            flow.record("chain", got)
            continue
        try:
            outcome = oc.classify("responses", tag, *got)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            outcome = f"bad:parse-{type(exc).__name__}"
        if outcome != "ok":
            flow.record("chain", outcome)
            continue
        rid = oc.reply_json(got[1], got[2])["id"]
        sent.append((tag, rid, previous))
        previous = rid
    for tag, rid, before in sent:
        got_status, obj = await read(flow, f"/v1/responses/{rid}")
        items_status, items = await read(flow, f"/v1/responses/{rid}/input_items")
        if got_status != "ok" or items_status != "ok":
            flow.record("chain", "bad:read-back-" + (got_status if got_status != "ok" else items_status))
            continue
        flow.record("chain", oc.linked(obj, rid, before, tag, items))


async def background(flow: Flow, cancel: bool) -> None:
    """Created (queued), cancelled at once when asked, then polled with GET until it ends."""
    kind = "background-cancel" if cancel else "background"
    tag = flow.new_tag(kind)
    body = {"model": oc.MODEL, "input": text(tag, HOLD_MS if cancel else 0), "background": True, "store": True,
            "max_output_tokens": 32}  # fmt: skip
    outcome, obj = await parsed(flow, "POST", "/v1/responses", body)
    if outcome != "ok":
        flow.record(kind, outcome)
        return
    rid = obj["id"]
    if cancel:
        await asyncio.sleep(POLL_S)
        outcome, got = await parsed(flow, "POST", f"/v1/responses/{rid}/cancel")
        obj = got if outcome == "ok" else obj  # a refused cancel: the polls say where the response ended
    end = time.monotonic() + flow.timeout
    while obj.get("status") not in oc.ENDED and time.monotonic() < end:
        await asyncio.sleep(POLL_S)
        outcome, got = await read(flow, f"/v1/responses/{rid}")
        if outcome != "ok":
            flow.record(kind, "bad:poll-" + outcome)
            return
        obj = got
    flow.record(kind, oc.background_end(obj, tag, cancel))


async def session(flow: Flow, turns: int) -> None:
    """One WebSocket connection, `turns` response.create messages, each continuing from the last that
    completed; after the last, a short wait: nothing more may arrive."""
    try:
        conn = await asyncio.wait_for(ws.Connection.open(flow.host, flow.port, "/v1/responses", flow.headers),
                                      flow.timeout)  # fmt: skip
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ws.Refused) as exc:
        outcome = f"bad:ws-open-{type(exc).__name__}"
        if isinstance(exc, ws.Refused):  # the upgrade answered with an error: well-formed or not
            outcome = refused(exc)
        for _ in range(turns):
            flow.new_tag("ws")
            flow.record("ws", outcome)
        return
    previous: str | None = None
    outcomes: list[str] = []
    try:
        for _ in range(turns):
            tag = flow.new_tag("ws")
            msg = {"type": "response.create", "model": oc.MODEL, "input": text(tag), "max_output_tokens": 32}
            if previous:
                msg["previous_response_id"] = previous
            events = await until_end(conn, msg, flow.timeout)
            if isinstance(events, str):
                outcomes.append(events)
                return
            outcome, rid = oc.ws_turn(events, tag, previous)
            previous = rid or previous
            outcomes.append(outcome)
        extra = await until_end(conn, None, 0.5)
        if isinstance(extra, list) and extra:  # a second end, or events of no turn: the last turn's fault
            outcomes[-1] = "bad:ws-more-after-the-last"
    finally:
        conn.close()
        for outcome in outcomes:
            flow.record("ws", outcome)


def refused(exc: ws.Refused) -> str:
    """An upgrade answered with an error instead: a well-formed OpenAI one, or bad."""
    try:
        obj = json.loads(exc.body)
    except ValueError:
        return f"bad:ws-open-{exc.status}"
    if not oc.well_formed_error(obj):
        return f"bad:ws-open-{exc.status}"
    return f"error:{exc.status}:{obj['error'].get('code')}"


async def until_end(conn: ws.Connection, msg: dict[str, Any] | None, timeout: float) -> list[dict] | str:
    """Send `msg` (if any), then the events up to the first terminal or error event. Without a message,
    whatever arrives within `timeout` (a list, empty when nothing did)."""
    events: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            if msg is not None:
                await conn.send_text(json.dumps(msg))
            while True:
                raw = await conn.recv_text()
                if raw is None:
                    return "bad:ws-closed" if msg is not None else events
                events.append(json.loads(raw))
                if events[-1].get("type") in oc.TERMINAL or oc.request_error(events[-1]):
                    return events
    except TimeoutError:
        return "bad:client-timeout" if msg is not None else events
    except (OSError, ValueError) as exc:
        return f"bad:ws-{type(exc).__name__}"


def flow_for(rng: random.Random, flow: Flow) -> Awaitable[None]:
    """One stateful flow, drawn: a chain, a background response (half of them cancelled) or a session."""
    pick = rng.randrange(3)
    if pick == 0:
        return chain(flow, rng.randint(3, 5))
    if pick == 1:
        return background(flow, cancel=rng.random() < 0.5)
    return session(flow, rng.randint(2, 3))
