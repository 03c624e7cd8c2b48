"""The native Responses relay over the local store (docs/state.md "Native backends"): with
MODELYARD_NATIVE_STATE=local on OpenAI or Azure, and in OpenRouter's native mode whenever a store is set.

state.py rebuilds the chain (or conversation) in front of the input as it does for translated backends; the
provider gets the whole input with `store: false`, and its Response is stored here under the id the provider
gave it, scoped to the caller's key. A stream is parsed (relay.sse_data) so that its final Response is
stored before the final event goes out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson

from . import relay
from .calls import current
from .errors import APIError
from .state import Turn

FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def upstream_input(items: Any) -> Any:
    """The rebuilt input as the provider takes it: the ids minted here on input messages and tool outputs
    (state.normalize_input) left off, as the Responses API's input items have none; the output items keep
    the ids the provider gave them."""
    if not isinstance(items, list):
        return items
    out = []
    for item in items:
        if isinstance(item, dict) and (
            item.get("type") == "function_call_output"
            or (item.get("type") == "message" and item.get("role") != "assistant")
        ):
            item = {k: v for k, v in item.items() if k != "id"}
        out.append(item)
    return out


def stream(
    ctx: Any,
    resp: httpx.Response,
    turn: Turn,
    done: Callable[[dict[str, Any]], Awaitable[None]],
    headers: dict[str, str],
) -> relay.EventStream:
    """The provider's stream, event by event: each Response in it says what was done with the request
    (`store`, `previous_response_id`, `conversation`, as the client asked), and the final one is stored
    before its event goes out."""
    call = current()

    async def gen() -> AsyncIterator[bytes]:
        try:
            async for data in relay.sse_data(resp):
                try:
                    event = orjson.loads(data)
                except orjson.JSONDecodeError:
                    event = None
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    yield b"data: " + data + b"\n\n"  # not an event of ours to read: passed on as it is
                    continue
                response = event.get("response")
                if isinstance(response, dict):
                    turn.echo(response)
                    if event["type"] in FINAL_EVENTS:
                        if call is not None:
                            call.answered(response)
                        await done(response)
                elif call is not None:
                    call.first_token()
                yield relay.sse_event(event)
        except httpx.HTTPError as exc:
            err = APIError(502, f"Upstream stream broke off ({type(exc).__name__}).", code="upstream_stream_error")
            yield b"data: " + orjson.dumps(err.body()) + b"\n\n"
        finally:
            await ctx.__aexit__(None, None, None)

    return relay.EventStream(
        gen(), media_type="text/event-stream", headers={**relay.SSE_HEADERS, **headers}, background=relay.closer(ctx)
    )
