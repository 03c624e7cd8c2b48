"""Chat completion chunks -> Responses stream events, incrementally.

Output items come in the order the engine produced them: reasoning (the upstream's reasoning field, or
`<think>` content), the assistant message, function calls, each item opened when its first text arrives.
A message or reasoning item is closed when an item of another kind starts, and so are open function
calls when text starts after them; parallel calls stay open together, since they may interleave their
argument deltas (each keeps its own `output_index`). Items are closed in output order. Text that is only
whitespace does not open an item (models often emit a newline before a tool call); it is held and sent
with the text that follows. A reply with no output at all still gets an (empty) message, as OpenAI
returns one.

A non-streamed reply goes through the same machine (`whole`), its message read in the order a chat
template produces it: reasoning, text, refusal, tool calls. So a stream in that order, however it is
chunked, ends in exactly the Response its non-streamed twin gets. A stream in another order (text after a
call, reasoning after text) keeps the engine's order: a non-streamed message cannot say it.

Tool-call markup the engine's tool parser left in the content (`<tool_call>{"name": …`, as vLLM's hermes
parser does with a call cut short) never reaches `output_text`: where tools were offered, content that
starts with it is held and becomes function_call items, `incomplete` where the call was cut off.

A `finish_reason` other than stop, tool_calls (completed), length, content_filter (incomplete) means the
generation was cut short for a reason the Responses API has no incomplete reason for (`abort`, `error`):
the Response is `failed`, its error naming the finish reason.

Logprobs belong to the message: those that arrive before its text (reasoning tokens) are sent with its
first text delta, those that arrive after it was closed (tool-call tokens) are dropped.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import APIError
from . import ids
from .envelope import delta_logprobs, logprobs, usage
from .markup import CALL_OPEN, markup_calls
from .think import ThinkSplitter
from .tools import custom_input

if TYPE_CHECKING:
    from .options import TranslateOptions

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_COMPLETED = frozenset({"stop", "tool_calls", "function_call"})
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

    __slots__ = ("upstream_id", "number", "name", "pieces", "item", "index", "closed", "cut", "custom")

    def __init__(self, upstream_id: str | None, number: int) -> None:
        self.upstream_id = upstream_id
        self.number = number  # the reply's n-th call: names a generated call_id
        self.name = ""
        self.pieces: list[str] = []
        self.item: dict[str, Any] | None = None
        self.index = -1
        self.closed = False
        self.cut = False  # markup cut off inside the call: incomplete whatever the finish reason
        self.custom = False  # a custom tool's call: its item has `input`, told once the call is done

    def sync(self) -> None:
        if self.item is not None:
            if self.custom:
                self.item["input"] = custom_input("".join(self.pieces))
            else:
                self.item["arguments"] = "".join(self.pieces)


class StreamTranslator:
    """One Responses stream: `start()`, `feed(chunk)` per upstream chunk, then `finish()` (or `fail()`)."""

    def __init__(
        self,
        response: dict[str, Any],
        *,
        opts: TranslateOptions,
        text_logprobs: bool = False,
        tool_markup: bool = False,
        tool_map: dict[str, tuple[str, str | None, str]] | None = None,
        seal: bool = False,
        events: bool = True,  # False: assemble the Response only (`whole`)
    ) -> None:
        self._events = events
        self._tool_map = tool_map or {}
        self._sealer = opts.sealer if seal else None
        self._id = response["id"]
        self._response = response  # the envelope (Translation.envelope): output goes in here
        self._output: list[dict[str, Any]] = self._response["output"]
        self._seq = 0
        self._open: _TextItem | None = None
        self._calls: dict[int, _Call] = {}  # chat tool_calls[].index -> the call it streams now
        self._call_list: list[_Call] = []
        self._held = {"output_text": "", "refusal": "", "reasoning_text": ""}  # leading whitespace
        self._logprobs: list[dict[str, Any]] = []  # not yet sent with a text delta
        self._think = ThinkSplitter(*opts.think_tags) if opts.think_tags else None
        self._reasoning_field = False  # the upstream has a reasoning field: content is only content
        # Content that may be tool-call markup is held here until it is known; None: it is text.
        self._markup: str | None = "" if tool_markup else None
        self._finish_reason: str | None = None
        # RL token data (opts.token_ids): gathered from every chunk, put on the last output item.
        self._token_data = opts.token_ids
        self._text_logprobs = not opts.token_ids or text_logprobs
        self._prompt_ids: list[int] | None = None
        self._generation_ids: list[int] = []
        self._generation_logprobs: list[float] = []
        self._usage: dict[str, Any] | None = None
        self._model_seen = False
        self._done = False
        self._broken = False  # ended by fail(): the upstream's reply was not a whole one

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

    def whole(self, chat: dict[str, Any]) -> dict[str, Any]:
        """The Response for a non-streamed chat completion: its message fed as one chunk's delta."""
        choices = chat.get("choices") if isinstance(chat, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise APIError(502, "The upstream reply has no choices.", code="bad_upstream_reply")
        choice = choices[0]
        message = choice.get("message") or {}
        calls = message.get("tool_calls") or ()
        # Tool calls keep their order as their index.
        delta = {**message, "tool_calls": [{**call, "index": i} for i, call in enumerate(calls)]}
        self.feed({**chat, "choices": [{**choice, "index": 0, "delta": delta}]})
        self.finish()
        if self._broken:  # the reply lacks what was asked for (token ids)
            raise APIError(502, self._response["error"]["message"], code="bad_upstream_reply")
        return self._response

    def finish(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._done:
            return out
        if self._think:
            for kind, text in self._think.finish():
                self._piece(kind, text, out)
        self._end_markup(out)
        for call in self._call_list:
            if call.item is None:  # never named: still a call the model made
                self._add_call(call, out)
        if not self._output:
            message = self._open_item("message", out)
            self._open_part(message, "output_text", out)
            self._append(message, self._held["output_text"], out)
        finish = self._finish_reason
        reason = _INCOMPLETE.get(finish or "")
        if finish is not None and not reason and finish not in _COMPLETED:
            return self._cut_short(finish, out)
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

        self._close_all("incomplete" if reason else "completed", out)
        response = self._response
        response["status"] = "incomplete" if reason else "completed"
        response["incomplete_details"] = {"reason": reason} if reason else None
        response["completed_at"] = None if reason else int(time.time())
        if self._usage:
            response["usage"] = usage(self._usage)
        self._done = True
        out.append(self._event("response.incomplete" if reason else "response.completed", response=response))
        return out

    def _close_all(self, last_status: str, out: list[dict[str, Any]]) -> None:
        """Close what is still open, in output order; the last item gets `last_status`."""
        last = len(self._output) - 1
        still = [c for c in self._call_list if not c.closed] + ([self._open] if self._open else [])
        for item in sorted(still, key=lambda i: i.index):
            status = last_status if item.index == last else "completed"
            if isinstance(item, _Call):
                self._close_call(item, status, out)
            else:
                self._close_item(item, status, out)

    def _cut_short(self, finish: str, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A finish_reason with no completed or incomplete meaning (`abort`, `error`): the generation was
        cut short, and the Response says so as `failed`, naming the reason, with what had arrived."""
        self._close_all("incomplete", out)
        message = f"The upstream ended the generation early (finish_reason {finish!r})."
        response = self._response
        response["status"] = "failed"
        response["error"] = {"code": "server_error", "message": message}
        if self._usage:
            response["usage"] = usage(self._usage)
        self._done = True
        out.append(self._event("response.failed", response=response))
        return out

    def fail(self, message: str, code: str = "server_error") -> list[dict[str, Any]]:
        """The upstream broke off: an `error` event, then `response.failed` with what had arrived."""
        if self._done:
            return []
        out: list[dict[str, Any]] = []
        if self._markup:  # held markup: the calls that had arrived
            self._end_markup(out)
        self._done = True
        self._broken = True
        out.append(self._event("error", code=code, message=message, param=None))
        for item in (self._open, *self._call_list):  # what had arrived, cut off
            if item is not None and item.item is not None and not getattr(item, "closed", False):
                item.sync()
                if item.item.get("type") != "custom_tool_call":  # the spec's custom_tool_call has no status
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
                self._content(content, out)
            else:
                for kind, text in self._think.feed(content):
                    self._piece(kind, text, out)
        if delta.get("refusal") and isinstance(delta["refusal"], str):
            self._text("refusal", delta["refusal"], out)
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, dict):
                self._call_delta(position, call, out)
        if choice.get("finish_reason"):
            self._finish_reason = choice["finish_reason"]

    # -- message and reasoning items ---------------------------------------------------------
    def _piece(self, kind: str, text: str, out: list[dict[str, Any]]) -> None:
        if kind == "reasoning":
            self._text("reasoning_text", text, out)
        else:
            self._content(text, out)

    def _content(self, text: str, out: list[dict[str, Any]]) -> None:
        """Message text, unless it is (still possibly) tool-call markup left in by the engine."""
        if self._markup is None:
            self._text("output_text", text, out)
            return
        self._markup += text
        head = self._markup.lstrip()
        if head.startswith(CALL_OPEN) or CALL_OPEN.startswith(head):
            return  # markup, or not known yet: held
        text, self._markup = self._markup, None
        self._text("output_text", text, out)

    def _end_markup(self, out: list[dict[str, Any]]) -> None:
        """The content ends: held markup becomes function calls (held text that was not, text)."""
        held, self._markup = self._markup, None
        if not held:
            return
        if not held.lstrip().startswith(CALL_OPEN):
            self._text("output_text", held, out)
            return
        for name, arguments, complete in markup_calls(held):
            call = _Call(None, len(self._call_list))
            call.name, call.pieces, call.cut = name, [arguments], not complete
            self._call_list.append(call)
            self._add_call(call, out)

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
            for call in self._call_list:  # the engine has moved on from its calls
                if call.item is not None and not call.closed:
                    self._close_call(call, "completed", out)
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
        if self._sealer is not None and current.item["type"] == "reasoning":
            text = "\n\n".join(part["text"] for part in current.item["content"])
            current.item["encrypted_content"] = self._sealer.seal(text)
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
        if call is None or call.closed or (upstream_id and call.upstream_id and upstream_id != call.upstream_id):
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
        elif arguments and self._events and not call.custom:
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
        kind, space, name = self._tool_map.get(call.name, ("function", None, call.name))
        call.custom = kind == "custom"
        call.item = {
            "id": ids.item_id("ctc" if call.custom else "fc", self._id, call.index),
            "type": "custom_tool_call" if call.custom else "function_call",
            "input" if call.custom else "arguments": "",
            "call_id": call.upstream_id or ids.call_id(self._id, call.number),
            "name": name,
        }
        if not call.custom:  # the spec's custom_tool_call has no status
            call.item["status"] = "in_progress"
        if space is not None:
            call.item["namespace"] = space
        self._output.append(call.item)
        if self._events:
            out.append(self._event("response.output_item.added", output_index=call.index, item=dict(call.item)))
            if call.pieces and not call.custom:
                fields = {"item_id": call.item["id"], "output_index": call.index, "delta": "".join(call.pieces)}
                out.append(self._event("response.function_call_arguments.delta", **fields))

    def _close_call(self, call: _Call, status: str, out: list[dict[str, Any]]) -> None:
        item = call.item
        call.sync()
        call.closed = True
        if not call.custom:
            item["status"] = "incomplete" if call.cut else status
        if self._events and call.custom:  # its input is known once the arguments are whole
            where = {"item_id": item["id"], "output_index": call.index}
            out.append(self._event("response.custom_tool_call_input.delta", **where, delta=item["input"]))
            out.append(self._event("response.custom_tool_call_input.done", **where, input=item["input"]))
            out.append(self._event("response.output_item.done", output_index=call.index, item=item))
        elif self._events:
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
