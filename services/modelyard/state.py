"""Stored responses, background mode and conversations over the store (store/), for every translated
backend alike (docs/state.md).

`StateService` sits beside `ResponsesService`: before a request is translated it expands
`previous_response_id` and `conversation` into the input (the chain's input and output items, oldest
first) and takes `store`/`background` off the request; after the reply it stores what was done. Every
lookup is scoped to the caller's key id (the gateway's `x-modelyard-key` header): another key's id is a
404, exactly as a missing one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import APIError, invalid
from .store import Store, StoredResponse

log = logging.getLogger("modelyard")

SCOPE_HEADER = "x-modelyard-key"
OPEN_SCOPE = "open"  # no gateway keys: one shared scope
TERMINAL = frozenset({"completed", "failed", "incomplete", "cancelled"})
# How deep a previous_response_id chain may go: a loop or a runaway client ends in a 400, not a hang.
MAX_CHAIN = 1000


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def not_found(kind: str, ident: str, code: str) -> APIError:
    return APIError(404, f"{kind} with id '{ident}' not found.", param=None, code=code)


@dataclass
class Turn:
    """What one request asked of the store, worked out before translation."""

    scope: str
    store: bool
    background: bool
    previous_id: str | None = None
    conversation_id: str | None = None
    input_items: list[dict[str, Any]] = field(default_factory=list)  # this request's own input, with ids
    history: list[dict[str, Any]] = field(default_factory=list)  # what came before it (chain or conversation)
    request: dict[str, Any] = field(default_factory=dict)  # the request's settings, as stored

    def echo(self, response: dict[str, Any]) -> dict[str, Any]:
        """The Response says what was done with it."""
        response["store"] = self.store
        response["background"] = self.background
        response["previous_response_id"] = self.previous_id
        if self.conversation_id:
            response["conversation"] = {"id": self.conversation_id}
        return response


def normalize_input(value: Any) -> list[dict[str, Any]]:
    """The request's `input` as items with ids, kept as sent (a string is one user message), so a later
    turn sends the engine exactly what this one did."""
    if isinstance(value, str):
        value = [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        return []
    items = []
    for item in value:
        if not isinstance(item, dict):
            continue
        item = dict(item)
        if item.get("type") is None and "role" in item:
            item["type"] = "message"
        item.setdefault(
            "id", new_id({"function_call_output": "fco", "function_call": "fc"}.get(item.get("type"), "msg"))
        )
        items.append(item)
    return items


def resource(item: dict[str, Any]) -> dict[str, Any]:
    """An item as the API lists it: a message's string content as its one content part, and a status on
    the items whose listed form requires one."""
    if item.get("type") in ("function_call", "function_call_output", "custom_tool_call_output") and not item.get(
        "status"
    ):
        item = {**item, "status": "completed"}
    if item.get("type") != "message" or not isinstance(item.get("content"), str):
        return item
    kind = "output_text" if item.get("role") == "assistant" else "input_text"
    part: dict[str, Any] = {"type": kind, "text": item["content"]}
    if kind == "output_text":
        part["annotations"] = []
    return {**item, "content": [part]}


class StateService:
    def __init__(self, store: Store, *, store_default: bool = True) -> None:
        self.store = store
        self.store_default = store_default
        self.tasks: dict[str, asyncio.Task[Any]] = {}  # background responses running in this adapter

    # -- before translation --------------------------------------------------------------------------
    async def prepare(self, body: dict[str, Any], scope: str, history: list[dict[str, Any]] | None = None) -> Turn:
        """Check and take off the stateful fields, and put the history in front of the input. `history`
        given (a WebSocket session's memory of `previous_response_id`) is used instead of the store."""
        store = _flag(body.pop("store", None), "store", self.store_default)
        background = _flag(body.pop("background", None), "background", False)
        if background and not store:
            raise invalid("Background responses need store: true (they are polled by id).", "background")
        previous = _id_param(body.pop("previous_response_id", None), "previous_response_id")
        conversation = _conversation_param(body.pop("conversation", None))
        if previous and conversation:
            msg = "Use previous_response_id or conversation, not both."
            raise invalid(msg, "previous_response_id", "mutually_exclusive_parameters")
        turn = Turn(scope, store, background, previous, conversation)
        turn.input_items = normalize_input(body.get("input"))
        turn.request = {k: v for k, v in body.items() if k != "input"}
        if history is not None:
            pass
        elif previous:
            history = await self.chain(previous, scope)
        elif conversation:
            if await self.store.get_conversation(conversation, scope) is None:
                raise not_found("Conversation", conversation, "conversation_not_found")
            history = await self.store.items(conversation)
        turn.history = history or []
        if history:
            body["input"] = history + turn.input_items
        return turn

    async def chain(self, rid: str, scope: str) -> list[dict[str, Any]]:
        """Input and output items of every turn up to `rid`, oldest first."""
        turns: list[StoredResponse] = []
        at: str | None = rid
        while at:
            rec = await self.store.get_response(at, scope)
            if rec is None:
                raise APIError(
                    404, f"Previous response with id '{at}' not found.", param="previous_response_id",
                    code="previous_response_not_found",
                )  # fmt: skip
            turns.append(rec)
            if len(turns) > MAX_CHAIN:
                raise invalid(
                    f"The previous_response_id chain is longer than {MAX_CHAIN} turns.", "previous_response_id"
                )
            at = rec.previous_id
        items: list[dict[str, Any]] = []
        for rec in reversed(turns):
            items += rec.input_items
            items += rec.response.get("output") or []
        return items

    # -- after the reply -----------------------------------------------------------------------------
    async def save(self, turn: Turn, response: dict[str, Any]) -> None:
        """Store a reply (before the client hears its end) and grow its conversation."""
        if not turn.store:
            return
        rec = StoredResponse(
            response["id"], turn.scope, response["status"], turn.previous_id, turn.conversation_id,
            turn.request, turn.input_items, response,
        )  # fmt: skip
        await self.store.put_response(rec)
        if turn.conversation_id and response["status"] in TERMINAL:
            await self.store.add_items(turn.conversation_id, turn.input_items + list(response.get("output") or []))

    # -- the stored-response API ---------------------------------------------------------------------
    async def get(self, rid: str, scope: str) -> StoredResponse:
        rec = await self.store.get_response(rid, scope)
        if rec is None:
            raise not_found("Response", rid, "response_not_found")
        return rec

    async def delete(self, rid: str, scope: str) -> dict[str, Any]:
        task = self.tasks.pop(rid, None)
        if task:
            task.cancel()
        if not await self.store.delete_response(rid, scope):
            raise not_found("Response", rid, "response_not_found")
        return {"id": rid, "object": "response", "deleted": True}

    async def cancel(self, rid: str, scope: str) -> dict[str, Any]:
        rec = await self.get(rid, scope)
        if not rec.response.get("background"):
            raise invalid("Only responses created with background: true can be cancelled.", "response_id")
        if rec.status in TERMINAL:
            return rec.response
        task = self.tasks.pop(rid, None)
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        response = dict(rec.response, status="cancelled")
        await self.store.update_response(rid, response)
        return response

    async def input_items(self, rid: str, scope: str, params: Any) -> dict[str, Any]:
        rec = await self.get(rid, scope)
        return page(rec.input_items, params)

    # -- conversations -------------------------------------------------------------------------------
    async def create_conversation(self, body: dict[str, Any], scope: str) -> dict[str, Any]:
        metadata = _metadata(body.get("metadata"))
        items = body.get("items") or []
        if not isinstance(items, list) or len(items) > 20:
            raise invalid("'items' must be an array of at most 20 input items.", "items")
        cid, created = new_id("conv"), int(time.time())
        await self.store.put_conversation(cid, scope, created, metadata)
        if items:
            await self.store.add_items(cid, normalize_input(items))
        return _conversation(cid, created, metadata)

    async def conversation(self, cid: str, scope: str) -> dict[str, Any]:
        found = await self.store.get_conversation(cid, scope)
        if found is None:
            raise not_found("Conversation", cid, "conversation_not_found")
        return _conversation(cid, *found)

    async def update_conversation(self, cid: str, body: dict[str, Any], scope: str) -> dict[str, Any]:
        created, _ = (await self.conversation(cid, scope))["created_at"], None
        metadata = _metadata(body.get("metadata"), required=True)
        await self.store.put_conversation(cid, scope, created, metadata)
        return _conversation(cid, created, metadata)

    async def delete_conversation(self, cid: str, scope: str) -> dict[str, Any]:
        if not await self.store.delete_conversation(cid, scope):
            raise not_found("Conversation", cid, "conversation_not_found")
        return {"id": cid, "object": "conversation.deleted", "deleted": True}

    async def conversation_items(self, cid: str, scope: str, params: Any) -> dict[str, Any]:
        await self.conversation(cid, scope)
        return page(await self.store.items(cid), params)

    async def add_conversation_items(self, cid: str, body: dict[str, Any], scope: str) -> dict[str, Any]:
        await self.conversation(cid, scope)
        items = body.get("items")
        if not isinstance(items, list) or not items or len(items) > 20:
            raise invalid("'items' must be an array of 1 to 20 input items.", "items")
        added = normalize_input(items)
        await self.store.add_items(cid, added)
        return {
            "object": "list",
            "data": [resource(i) for i in added],
            "first_id": added[0]["id"],
            "last_id": added[-1]["id"],
            "has_more": False,
        }

    async def conversation_item(self, cid: str, item_id: str, scope: str) -> dict[str, Any]:
        await self.conversation(cid, scope)
        for item in await self.store.items(cid):
            if item.get("id") == item_id:
                return resource(item)
        raise not_found("Item", item_id, "item_not_found")

    async def delete_conversation_item(self, cid: str, item_id: str, scope: str) -> dict[str, Any]:
        conv = await self.conversation(cid, scope)
        if not await self.store.delete_item(cid, item_id):
            raise not_found("Item", item_id, "item_not_found")
        return conv


def page(items: list[dict[str, Any]], params: Any) -> dict[str, Any]:
    """Cursor pagination as the spec has it: `order` (asc or desc, default desc), `after` an item id,
    `limit` 1 to 100 (default 20)."""
    order = params.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise invalid(f"'order' must be 'asc' or 'desc', got '{order}'.", "order")
    raw = params.get("limit") or "20"
    if not str(raw).isdigit() or not 1 <= int(raw) <= 100:
        raise invalid(f"'limit' must be a whole number from 1 to 100, got '{raw}'.", "limit")
    ordered = items if order == "asc" else list(reversed(items))
    after = params.get("after")
    if after:
        ids = [i.get("id") for i in ordered]
        if after not in ids:
            raise invalid(f"'after' names no item of this list: '{after}'.", "after")
        ordered = ordered[ids.index(after) + 1 :]
    data = [resource(i) for i in ordered[: int(raw)]]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": len(ordered) > len(data)}


def _conversation(cid: str, created: int, metadata: dict[str, Any]) -> dict[str, Any]:
    return {"id": cid, "object": "conversation", "created_at": created, "metadata": metadata}


def _flag(value: Any, param: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"'{param}' must be a boolean (true or false).", param, "invalid_type")
    return value


def _id_param(value: Any, param: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise invalid(f"'{param}' must be a response id (a non-empty string).", param, "invalid_type")
    return value


def _conversation_param(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        msg = "'conversation' must be a conversation id, or an object with its 'id'."
        raise invalid(msg, "conversation", "invalid_type")
    return value


def _metadata(value: Any, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    ok = isinstance(value, dict) and len(value) <= 16
    ok = ok and all(
        isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512 for k, v in value.items()
    )
    if not ok:
        msg = "'metadata' must be an object of at most 16 string keys (≤ 64 chars) with string values (≤ 512 chars)."
        raise invalid(msg, "metadata", "invalid_type")
    return value
