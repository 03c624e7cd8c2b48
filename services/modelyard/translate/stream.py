"""Chat completion chunks -> Responses stream events, incrementally.

Output items appear in the order their first text arrives: reasoning (the upstream's reasoning field, or
`<think>` content), the assistant message, function calls. A message or reasoning item is closed when an
item of another kind starts; function calls stay open until the reply ends, since parallel calls may
interleave their argument deltas (each keeps its own `output_index`). Text that is only whitespace does
not open an item (models often emit a newline before a tool call); it is held and sent with the text
that follows. A reply with no output at all still gets an (empty) message, as OpenAI returns one.

Logprobs belong to the message: those that arrive before its text (reasoning tokens) are sent with its
first text delta, those that arrive after it was closed (tool-call tokens) are dropped.

`chat_to_response` runs a non-streamed reply through the same machine (with `events=False`), so a
streamed reply ends in exactly the Response its non-streamed twin gets.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from . import ids
from .envelope import delta_logprobs, envelope, logprobs, usage
from .options import TranslateOptions
from .think import ThinkSplitter

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
# ResponseError.code is an enum; an `error` event's code is free text.
_RESPONSE_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})
_DELTA = {
    "output_text": "response.output_text.delta",
    "refusal": "response.refusal.delta",
    "reasoning_text": "response.reasoning_text.delta",
}
_DONE = {
    "output_text": "response.output_text.done",
    "refusal": "response.refusal.done",
    "reasoning_text": "response.reasoning_text.done",
}


def _asks_logprobs(request: dict[str, Any]) -> bool:
    """Did the Responses request ask for output_text logprobs (as responses_to_chat reads it)?"""
    include = request.get("include")
    return request.get("top_logprobs") is not None or (
        isinstance(include, list) and "message.output_text.logprobs" in include
    )


def _empty_part(kind: str) -> dict[str, Any]:
    if kind == "output_text":
        return {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    if kind == "refusal":
        return {"type": "refusal", "refusal": ""}
    return {"type": "reasoning_text", "text": ""}


class _TextItem:
    """A message or reasoning item being streamed, and its current content part."""

    __slots__ = ("item", "index", "part", "kind", "pieces")

    def __init__(self, item: dict[str, Any], index: int) -> None:
        self.item = item
        self.index = index
        self.part: dict[str, Any] | None = None
        self.kind = ""  # the current part's type
        self.pieces: list[str] = []  # its text so far, joined when it is done

    def sync(self) -> None:
        if self.part is not None:
            self.part["refusal" if self.kind == "refusal" else "text"] = "".join(self.pieces)


class _Call:
    """A function call being streamed; its item is added once its name is known."""

    __slots__ = ("upstream_id", "number", "name", "pieces", "item", "index")

    def __init__(self, upstream_id: str | None, number: int) -> None:
        self.upstream_id = upstream_id
        self.number = number  # the reply's n-th call: names a generated call_id
        self.name = ""
        self.pieces: list[str] = []
        self.item: dict[str, Any] | None = None
        self.index = -1

    def sync(self) -> None:
        if self.item is not None:
            self.item["arguments"] = "".join(self.pieces)


class StreamTranslator:
    """One Responses stream: `start()`, `feed(chunk)` per upstream chunk, then `finish()` (or `fail()`)."""

    def __init__(
        self,
        request: dict[str, Any],
        *,
        response_id: str,
        created_at: int,
        opts: TranslateOptions,
        events: bool = True,  # False: assemble the Response only (chat_to_response)
    ) -> None:
        self._events = events
        self._id = response_id
        self._response = envelope(request, response_id, created_at)
        self._output: list[dict[str, Any]] = self._response["output"]
        self._seq = 0
        self._open: _TextItem | None = None
        self._calls: dict[int, _Call] = {}  # chat tool_calls[].index -> the call it streams now
        self._call_list: list[_Call] = []
        self._held = {"output_text": "", "refusal": "", "reasoning_text": ""}  # leading whitespace
        self._logprobs: list[dict[str, Any]] = []  # not yet sent with a text delta
        self._think = ThinkSplitter(*opts.think_tags) if opts.think_tags else None
        self._reasoning_field = False  # the upstream has a reasoning field: content is only content
        self._finish_reason: str | None = None
        # RL token data (opts.token_ids): gathered from every chunk, put on the last output item.
        self._token_data = opts.token_ids
        self._text_logprobs = not opts.token_ids or _asks_logprobs(request)
        self._prompt_ids: list[int] | None = None
        self._generation_ids: list[int] = []
        self._generation_logprobs: list[float] = []
        self._usage: dict[str, Any] | None = None
        self._model_seen = False
        self._done = False

    # -- public ------------------------------------------------------------------------------
    def start(self) -> list[dict[str, Any]]:
        snapshot = dict(self._response, output=[])
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._done:
            return out
        if not self._model_seen and chunk.get("model"):
            self._model_seen = True
            self._response["model"] = chunk["model"]
        if chunk.get("service_tier"):
            self._response["service_tier"] = chunk["service_tier"]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        if self._token_data and chunk.get("prompt_token_ids") is not None:
            self._prompt_ids = chunk["prompt_token_ids"]
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:  # n is 1; other choices are not ours
                self._choice(choice, choice.get("delta") or {}, out)
        return out

    def finish(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._done:
            return out
        if self._think:
            for kind, text in self._think.finish():
                self._text("reasoning_text" if kind == "reasoning" else "output_text", text, out)
        for call in self._call_list:
            if call.item is None:  # never named: still a call the model made
                self._add_call(call, out)
        if not self._output:
            message = self._open_item("message", out)
            self._open_part(message, "output_text", out)
            self._append(message, self._held["output_text"], out)
        reason = _INCOMPLETE.get(self._finish_reason or "")
        last = len(self._output) - 1
        if self._token_data:
            if self._prompt_ids is None:
                return self.fail(
                    "The engine sent no token ids (return_token_ids needs vLLM 0.10.2 or later).", "bad_upstream_reply"
                )
            # Where NeMo Gym puts them: on the turn's last output item, exactly as the engine produced them.
            self._output[last].update(
                prompt_token_ids=self._prompt_ids,
                generation_token_ids=self._generation_ids,
                generation_log_probs=self._generation_logprobs,
            )

        def status(index: int) -> str:
            return "incomplete" if reason and index == last else "completed"

        if self._open:
            self._close_item(self._open, status(self._open.index), out)
        for call in sorted(self._call_list, key=lambda c: c.index):
            self._close_call(call, status(call.index), out)
        response = self._response
        response["status"] = "incomplete" if reason else "completed"
        response["incomplete_details"] = {"reason": reason} if reason else None
        response["completed_at"] = None if reason else int(time.time())
        if self._usage:
            response["usage"] = usage(self._usage)
        self._done = True
        out.append(self._event("response.incomplete" if reason else "response.completed", response=response))
        return out

    def fail(self, message: str, code: str = "server_error") -> list[dict[str, Any]]:
        """The upstream broke off: an `error` event, then `response.failed` with what had arrived."""
        if self._done:
            return []
        self._done = True
        out = [self._event("error", code=code, message=message, param=None)]
        for item in (self._open, *self._call_list):  # what had arrived, cut off
            if item is not None and item.item is not None:
                item.sync()
                item.item["status"] = "incomplete"
        response = self._response
        response["status"] = "failed"
        response["error"] = {"code": code if code in _RESPONSE_ERROR_CODES else "server_error", "message": message}
        if self._usage:
            response["usage"] = usage(self._usage)
        out.append(self._event("response.failed", response=response))
        return out

    def overflow(self) -> list[dict[str, Any]]:
        """The upstream refused the input as too long (context_overflow="incomplete"): the whole stream."""
        out = self.start() if self._seq == 0 else []
        self._done = True
        self._response["status"] = "incomplete"
        self._response["incomplete_details"] = {"reason": "max_output_tokens"}
        out.append(self._event("response.incomplete", response=self._response))
        return out

    @property
    def response(self) -> dict[str, Any]:
        """The Response as assembled so far (the final one after `finish()`)."""
        if not self._done:
            for item in (self._open, *self._call_list):
                if item is not None:
                    item.sync()
        return self._response

    # -- chunks ------------------------------------------------------------------------------
    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return event

    def _choice(self, choice: dict[str, Any], delta: dict[str, Any], out: list[dict[str, Any]]) -> None:
        lp = choice.get("logprobs")
        if self._token_data:
            self._generation_ids.extend(choice.get("token_ids") or ())
            if lp and lp.get("content"):
                self._generation_logprobs.extend(entry["logprob"] for entry in lp["content"])
        if lp and lp.get("content") and self._text_logprobs:
            self._logprobs.extend(logprobs(lp["content"]))
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            self._reasoning_field = True
            self._text("reasoning_text", reasoning, out)
        content = delta.get("content")
        if content and isinstance(content, str):
            if self._think is None or self._reasoning_field:
                self._text("output_text", content, out)
            else:
                for kind, text in self._think.feed(content):
                    self._text("reasoning_text" if kind == "reasoning" else "output_text", text, out)
        if delta.get("refusal") and isinstance(delta["refusal"], str):
            self._text("refusal", delta["refusal"], out)
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, dict):
                self._call_delta(position, call, out)
        if choice.get("finish_reason"):
            self._finish_reason = choice["finish_reason"]

    # -- message and reasoning items ---------------------------------------------------------
    def _text(self, kind: str, text: str, out: list[dict[str, Any]]) -> None:
        item_type = "reasoning" if kind == "reasoning_text" else "message"
        current = self._open
        if current is None or current.item["type"] != item_type:
            if not text.strip():
                self._held[kind] += text
                return
            text, self._held[kind] = self._held[kind] + text, ""
            if current is not None:
                self._close_item(current, "completed", out)
            current = self._open_item(item_type, out)
        if current.kind != kind:
            if current.part is not None:
                self._close_part(current, out)
            self._open_part(current, kind, out)
        self._append(current, text, out)

    def _open_item(self, item_type: str, out: list[dict[str, Any]]) -> _TextItem:
        index = len(self._output)
        if item_type == "message":
            mid = ids.item_id("msg", self._id, index)
            item = {"id": mid, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
        else:
            rid = ids.item_id("rs", self._id, index)
            item = {"id": rid, "type": "reasoning", "summary": [], "content": [], "status": "in_progress"}
        self._output.append(item)
        self._open = _TextItem(item, index)
        if self._events:
            out.append(self._event("response.output_item.added", output_index=index, item=dict(item, content=[])))
        return self._open

    def _open_part(self, current: _TextItem, kind: str, out: list[dict[str, Any]]) -> None:
        current.part, current.kind, current.pieces = _empty_part(kind), kind, []
        current.item["content"].append(current.part)
        if self._events:
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=current.item["id"],
                    output_index=current.index,
                    content_index=len(current.item["content"]) - 1,
                    part=_empty_part(kind),
                )
            )

    def _append(self, current: _TextItem, text: str, out: list[dict[str, Any]]) -> None:
        if not text:
            return
        current.pieces.append(text)
        fields: dict[str, Any] = {}
        if current.kind == "output_text":
            taken, self._logprobs = self._logprobs, []
            current.part["logprobs"].extend(taken)
            fields["logprobs"] = delta_logprobs(taken) if self._events else []
        if self._events:
            out.append(
                self._event(
                    _DELTA[current.kind],
                    item_id=current.item["id"],
                    output_index=current.index,
                    content_index=len(current.item["content"]) - 1,
                    delta=text,
                    **fields,
                )
            )

    def _close_part(self, current: _TextItem, out: list[dict[str, Any]]) -> None:
        part, kind = current.part, current.kind
        current.sync()
        current.part, current.kind = None, ""
        fields: dict[str, Any] = {"refusal": part["refusal"]} if kind == "refusal" else {"text": part["text"]}
        if kind == "output_text":
            part["logprobs"].extend(self._logprobs)
            self._logprobs = []
            fields["logprobs"] = delta_logprobs(part["logprobs"]) if self._events else []
        if self._events:
            where = {
                "item_id": current.item["id"],
                "output_index": current.index,
                "content_index": len(current.item["content"]) - 1,
            }
            out.append(self._event(_DONE[kind], **where, **fields))
            out.append(self._event("response.content_part.done", **where, part=part))

    def _close_item(self, current: _TextItem, status: str, out: list[dict[str, Any]]) -> None:
        if current.part is not None:
            self._close_part(current, out)
        current.item["status"] = status
        self._open = None
        if self._events:
            out.append(self._event("response.output_item.done", output_index=current.index, item=current.item))

    # -- function calls ----------------------------------------------------------------------
    def _call_delta(self, position: int, delta: dict[str, Any], out: list[dict[str, Any]]) -> None:
        index = delta.get("index")
        if index is None:  # some upstreams leave it out when calls come whole
            index = position
        upstream_id = delta.get("id")
        call = self._calls.get(index)
        # Some upstreams number every parallel call 0: a new id at a known index is a new call.
        if call is None or (upstream_id and call.upstream_id and upstream_id != call.upstream_id):
            call = _Call(upstream_id, len(self._call_list))
            self._calls[index] = call
            self._call_list.append(call)
        elif upstream_id and call.item is None:
            call.upstream_id = upstream_id
        function = delta.get("function") or {}
        if function.get("name") and not call.name:
            call.name = function["name"]
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):  # an object, from lax upstreams
            arguments = orjson.dumps(arguments).decode()
        if arguments:
            call.pieces.append(arguments)
        if call.item is None:
            if call.name:
                self._add_call(call, out)
        elif arguments and self._events:
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=call.item["id"],
                    output_index=call.index,
                    delta=arguments,
                )
            )

    def _add_call(self, call: _Call, out: list[dict[str, Any]]) -> None:
        if self._open is not None:
            self._close_item(self._open, "completed", out)
        call.index = len(self._output)
        call.item = {
            "id": ids.item_id("fc", self._id, call.index),
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call.upstream_id or ids.call_id(self._id, call.number),
            "name": call.name,
        }
        self._output.append(call.item)
        if self._events:
            out.append(self._event("response.output_item.added", output_index=call.index, item=dict(call.item)))
            if call.pieces:
                fields = {"item_id": call.item["id"], "output_index": call.index, "delta": "".join(call.pieces)}
                out.append(self._event("response.function_call_arguments.delta", **fields))

    def _close_call(self, call: _Call, status: str, out: list[dict[str, Any]]) -> None:
        item = call.item
        call.sync()
        item["status"] = status
        if self._events:
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=call.index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
            out.append(self._event("response.output_item.done", output_index=call.index, item=item))
