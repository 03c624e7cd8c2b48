"""Chat completion -> Response, through the same machine as a stream (so the two always agree)."""

from __future__ import annotations

from typing import Any

from ..errors import APIError
from .envelope import envelope
from .options import TranslateOptions
from .stream import StreamTranslator


def chat_to_response(
    chat: dict[str, Any], request: dict[str, Any], *, response_id: str, created_at: int, opts: TranslateOptions
) -> dict[str, Any]:
    """A full Response (JSON-ready dict) for a non-streamed chat completion answering `request`."""
    choices = chat.get("choices") if isinstance(chat, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise APIError(502, "The upstream reply has no choices.", code="bad_upstream_reply")
    choice = choices[0]
    message = choice.get("message") or {}
    calls = message.get("tool_calls") or ()
    # The whole message as one chunk's delta: tool calls keep their order as their index.
    delta = {**message, "tool_calls": [{**call, "index": i} for i, call in enumerate(calls)]}
    translator = StreamTranslator(request, response_id=response_id, created_at=created_at, opts=opts, events=False)
    translator.feed({**chat, "choices": [{**choice, "index": 0, "delta": delta}]})
    translator.finish()
    response = translator.response
    if response["status"] == "failed":  # the reply lacks what was asked for (token ids)
        raise APIError(502, response["error"]["message"], code="bad_upstream_reply")
    return response


def overflow_response(request: dict[str, Any], *, response_id: str, created_at: int) -> dict[str, Any]:
    """The Response for an input the upstream refused as too long, where context_overflow="incomplete":
    no output, `incomplete_details.reason` "max_output_tokens" (the spec's only fitting reason)."""
    response = envelope(request, response_id, created_at)
    response["status"] = "incomplete"
    response["incomplete_details"] = {"reason": "max_output_tokens"}
    return response
