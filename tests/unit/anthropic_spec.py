"""What the anthropic SDK's types say about our Messages wire shapes: a Message and every stream event are
validated strictly with the SDK's pydantic models, unknown fields refused (but for the documented RL
token data), and a stream is accumulated with the SDK's own accumulator (as `messages.stream()` does)."""

from __future__ import annotations

from typing import Any

from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import BaseModel, TypeAdapter

# Extra fields the adapter sends on purpose (docs/messages.md, "RL token data").
TOKEN_FIELDS = frozenset({"prompt_token_ids", "generation_token_ids", "generation_log_probs"})
_EVENT = TypeAdapter(RawMessageStreamEvent)


def extras(model: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(model, BaseModel):
        for key in model.model_extra or {}:
            if key not in TOKEN_FIELDS or path not in ("", ".message"):
                found.append(f"{path}.{key} ({type(model).__name__})")
        for name in type(model).model_fields:
            found += extras(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list):
        for i, item in enumerate(model):
            found += extras(item, f"{path}[{i}]")
    return found


def check_message(obj: dict[str, Any]) -> Message:
    model = Message.model_validate(obj, strict=True)
    assert not extras(model), f"fields the SDK does not know: {extras(model)}"
    return model


def check_event(obj: dict[str, Any]) -> Any:
    model = _EVENT.validate_python(obj, strict=True)
    assert not extras(model), f"fields the SDK does not know: {extras(model)}"
    return model


def check_error(obj: dict[str, Any]) -> ErrorResponse:
    model = ErrorResponse.model_validate(obj, strict=True)
    assert not extras(model), f"fields the SDK does not know: {extras(model)}"
    return model


def check_count(obj: dict[str, Any]) -> MessageTokensCount:
    return MessageTokensCount.model_validate(obj, strict=True)


def check_sequence(events: list[dict[str, Any]]) -> None:
    """The order a client relies on: message_start first; each block started, delta'd and stopped in turn,
    indices 0, 1, ...; message_delta then message_stop last (or an error event ends it)."""
    kinds = [e["type"] for e in events if e["type"] != "ping"]
    assert kinds[0] == "message_start", kinds
    if kinds[-1] == "error":
        return
    assert kinds[-2:] == ["message_delta", "message_stop"], kinds
    open_index, next_index = None, 0
    for e in events[1:-2]:
        if e["type"] == "content_block_start":
            assert open_index is None and e["index"] == next_index, (e, open_index)
            open_index, next_index = e["index"], next_index + 1
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_index, e
        elif e["type"] == "content_block_stop":
            assert e["index"] == open_index, e
            open_index = None
        else:
            assert e["type"] == "ping", e
    assert open_index is None


def accumulate(events: list[dict[str, Any]]) -> Message:
    """The final message as the SDK's stream helpers build it from the events."""
    snapshot, bufs = None, {}
    for event in events:
        if event["type"] in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=check_event(event), current_snapshot=snapshot, json_bufs=bufs)
    assert snapshot is not None
    return snapshot
