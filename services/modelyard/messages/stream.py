"""Chat completion chunks -> Anthropic Messages stream events, incrementally.

Content blocks appear in the order their first text arrives: `thinking` (the upstream's reasoning field,
or `<think>` content), `text`, `tool_use`. Blocks follow each other: one is open at a time, and a block is
stopped when one of another kind starts. Text that is only whitespace does not open a block (models often
emit a newline before a tool call); it is held and sent with the text that follows. Tool calls are
expected one after the other, as chat upstreams stream them; argument deltas for a call whose block was
already stopped are kept in the final message (its `input`) but cannot be streamed.

`message_start` carries input_tokens 0: a chat stream reports usage at its end, so the real counts come on
`message_delta` (the SDK's accumulator overwrites them from there).

`chat_to_message` runs a non-streamed reply through the same machine (with `events=False`), so a streamed
reply accumulates to exactly the message its non-streamed twin gets.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from ..errors import APIError
from ..translate.options import TranslateOptions
from ..translate.think import ThinkSplitter

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def new_message_id() -> str:
    return "msg_" + os.urandom(12).hex()


def tool_use_id(message_id: str, index: int) -> str:
    """A `toolu_…` id for the `index`-th call of a reply whose upstream gave it none."""
    return f"toolu_{message_id[4:]}{index:04x}"


def usage(chat_usage: dict[str, Any] | None) -> dict[str, Any]:
    """Chat usage -> Anthropic usage. input_tokens leave out cache reads (Anthropic counts them apart);
    the cache fields are set only where the upstream reports cached tokens."""
    chat_usage = chat_usage or {}
    prompt = chat_usage.get("prompt_tokens") or 0
    out: dict[str, Any] = {"input_tokens": prompt, "output_tokens": chat_usage.get("completion_tokens") or 0}
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if isinstance(cached, int):
        out["input_tokens"] = prompt - cached
        out["cache_read_input_tokens"] = cached
        out["cache_creation_input_tokens"] = 0
    return out


class _Block:
    """A content block being streamed (a tool call's before its name is known: index -1)."""

    __slots__ = ("index", "kind", "block", "pieces", "call_id")

    def __init__(self, kind: str, block: dict[str, Any]) -> None:
        self.index, self.kind, self.block = -1, kind, block
        self.pieces: list[str] = []
        self.call_id: str | None = None


class MessageTranslator:
    """One Messages stream: `start()`, `feed(chunk)` per upstream chunk, then `finish()` (or `fail()`)."""

    def __init__(
        self, request: dict[str, Any], *, message_id: str, opts: TranslateOptions, events: bool = True
    ) -> None:
        self._events = events
        self._id = message_id
        self._stops = [s for s in request.get("stop_sequences") or () if isinstance(s, str)]
        self._message: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": request.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        self._open: _Block | None = None
        self._blocks: list[_Block] = []
        self._calls: dict[int, _Block] = {}  # chat tool_calls[].index -> the call it streams now
        self._call_list: list[_Block] = []
        self._held = {"text": "", "thinking": ""}  # leading whitespace, not yet in a block
        self._think = ThinkSplitter(*opts.think_tags) if opts.think_tags else None
        self._reasoning_field = False
        self._refused = False
        self._finish: str | None = None
        self._stop_reason: Any = None  # vLLM's choices[].stop_reason: the stop string that matched
        self._usage: dict[str, Any] | None = None
        self._token_data = opts.token_ids
        self._prompt_ids: list[int] | None = None
        self._generation_ids: list[int] = []
        self._generation_logprobs: list[float] = []
        self._model_seen = False
        self._done = False

    @property
    def message(self) -> dict[str, Any]:
        return self._message

    # -- public ------------------------------------------------------------------------------
    def start(self) -> list[dict[str, Any]]:
        return [{"type": "message_start", "message": dict(self._message, content=[])}]

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._done:
            return out
        if not self._model_seen and chunk.get("model"):
            self._model_seen = True
            self._message["model"] = chunk["model"]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        if self._token_data and chunk.get("prompt_token_ids") is not None:
            self._prompt_ids = chunk["prompt_token_ids"]
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, choice.get("delta") or {}, out)
        return out

    def finish(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._done:
            return out
        if self._think:
            for kind, text in self._think.finish():
                self._text("thinking" if kind == "reasoning" else "text", text, out)
        if self._token_data and self._prompt_ids is None:
            return self.fail("The engine sent no token ids (return_token_ids needs vLLM 0.10.2 or later).")
        for call in self._call_list:
            if call.index < 0:  # never named: still a call the model made
                self._start_call(call, "", out)
        if self._open is not None:
            self._stop_block(out)
        try:
            for call in self._call_list:
                call.block["input"] = _input(call.pieces)
        except APIError as err:
            return self.fail(err.message)
        message = self._message
        message["stop_reason"], message["stop_sequence"] = self._reason()
        message["usage"] = usage(self._usage)
        self._done = True
        delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
        event: dict[str, Any] = {"type": "message_delta", "delta": delta, "usage": dict(message["usage"])}
        if self._token_data:  # docs/messages.md: on the message and on its message_delta event
            data = {
                "prompt_token_ids": self._prompt_ids,
                "generation_token_ids": self._generation_ids,
                "generation_log_probs": self._generation_logprobs,
            }
            message.update(data)
            event.update(data)
        out += [event, {"type": "message_stop"}]
        return out

    def overflow(self) -> list[dict[str, Any]]:
        """The upstream refused the input as too long (context_overflow="incomplete"): the whole stream of
        a message with no content and stop_reason `model_context_window_exceeded`."""
        out = self.start()
        self._done = True
        self._message["stop_reason"] = "model_context_window_exceeded"
        delta = {"stop_reason": "model_context_window_exceeded", "stop_sequence": None}
        return [
            *out,
            {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 0}},
            {"type": "message_stop"},
        ]

    def fail(self, message: str, kind: str = "api_error") -> list[dict[str, Any]]:
        """The upstream broke off: Anthropic's `error` event ends the stream."""
        if self._done:
            return []
        self._done = True
        return [{"type": "error", "error": {"type": kind, "message": message}}]

    # -- chunks ------------------------------------------------------------------------------
    def _choice(self, choice: dict[str, Any], delta: dict[str, Any], out: list[dict[str, Any]]) -> None:
        if self._token_data:
            self._generation_ids.extend(choice.get("token_ids") or ())
            lp = choice.get("logprobs")
            if lp and lp.get("content"):
                self._generation_logprobs.extend(entry["logprob"] for entry in lp["content"])
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            self._reasoning_field = True
            self._text("thinking", reasoning, out)
        content = delta.get("content")
        if content and isinstance(content, str):
            if self._think is None or self._reasoning_field:
                self._text("text", content, out)
            else:
                for kind, text in self._think.feed(content):
                    self._text("thinking" if kind == "reasoning" else "text", text, out)
        if delta.get("refusal") and isinstance(delta["refusal"], str):
            self._refused = True  # what the model said in refusing is its text; stop_reason says refusal
            self._text("text", delta["refusal"], out)
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, dict):
                self._call_delta(position, call, out)
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
            self._stop_reason = choice.get("stop_reason")

    def _reason(self) -> tuple[str, str | None]:
        if self._refused or self._finish == "content_filter":
            return "refusal", None
        if self._call_list and self._finish in (None, "stop", "tool_calls"):
            return "tool_use", None  # a forced (named) tool call ends with "stop" on vLLM
        if self._finish == "stop" and isinstance(self._stop_reason, str) and self._stop_reason in self._stops:
            return "stop_sequence", self._stop_reason
        return _STOP_REASONS.get(self._finish or "stop", "end_turn"), None

    # -- blocks ------------------------------------------------------------------------------
    def _text(self, kind: str, text: str, out: list[dict[str, Any]]) -> None:
        current = self._open
        if current is None or current.kind != kind:
            if not text.strip():
                self._held[kind] += text
                return
            text, self._held[kind] = self._held[kind] + text, ""
            empty = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            current = _Block(kind, empty)
            self._start_block(current, out)
        current.pieces.append(text)
        current.block[kind] += text
        if self._events:
            delta = (
                {"type": "text_delta", "text": text} if kind == "text" else {"type": "thinking_delta", "thinking": text}
            )
            out.append({"type": "content_block_delta", "index": current.index, "delta": delta})

    def _start_block(self, current: _Block, out: list[dict[str, Any]]) -> None:
        if self._open is not None:
            self._stop_block(out)
        current.index = len(self._blocks)
        self._blocks.append(current)
        self._message["content"].append(current.block)
        self._open = current
        if self._events:  # a copy: the block grows as deltas arrive, the event must not
            start = dict(current.block, input={}) if current.kind == "tool_use" else dict(current.block)
            out.append({"type": "content_block_start", "index": current.index, "content_block": start})

    def _stop_block(self, out: list[dict[str, Any]]) -> None:
        current, self._open = self._open, None
        if self._events and current is not None:
            out.append({"type": "content_block_stop", "index": current.index})

    def _call_delta(self, position: int, delta: dict[str, Any], out: list[dict[str, Any]]) -> None:
        index = delta.get("index")
        if index is None:  # some upstreams leave it out when calls come whole
            index = position
        upstream_id = delta.get("id")
        call = self._calls.get(index)
        # Some upstreams number every parallel call 0: a new id at a known index is a new call.
        if call is None or (upstream_id and call.call_id and upstream_id != call.call_id):
            call = _Block("tool_use", {})
            call.call_id = upstream_id
            self._calls[index] = call
            self._call_list.append(call)
        elif upstream_id and not call.call_id:
            call.call_id = upstream_id
        function = delta.get("function") or {}
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):  # an object, from lax upstreams
            arguments = orjson.dumps(arguments).decode()
        if call.index < 0 and function.get("name"):
            self._start_call(call, function["name"], out)
        if arguments:
            call.pieces.append(arguments)
            if self._events and self._open is call:
                out.append(_json_delta(call.index, arguments))

    def _start_call(self, call: _Block, name: str, out: list[dict[str, Any]]) -> None:
        number = self._call_list.index(call)
        call.block = {
            "type": "tool_use",
            "id": call.call_id or tool_use_id(self._id, number),
            "name": name,
            "input": {},
        }
        self._start_block(call, out)
        if call.pieces and self._events:  # arguments that came before the name
            out.append(_json_delta(call.index, "".join(call.pieces)))


def _json_delta(index: int, partial: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": partial},
    }


def _input(pieces: list[str]) -> dict[str, Any]:
    """A call's arguments as the tool_use block's `input` object."""
    raw = "".join(pieces)
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise APIError(502, "The model's tool call arguments are not valid JSON.", code="bad_upstream_reply") from None
    if not isinstance(value, dict):
        raise APIError(502, "The model's tool call arguments are not a JSON object.", code="bad_upstream_reply")
    return value


def chat_to_message(
    chat: dict[str, Any], request: dict[str, Any], *, message_id: str, opts: TranslateOptions
) -> dict[str, Any]:
    """A full Message (JSON-ready dict) for a non-streamed chat completion answering `request`."""
    choices = chat.get("choices") if isinstance(chat, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise APIError(502, "The upstream reply has no choices.", code="bad_upstream_reply")
    choice = choices[0]
    message = choice.get("message") or {}
    calls = message.get("tool_calls") or ()
    delta = {**message, "tool_calls": [{**call, "index": i} for i, call in enumerate(calls)]}
    translator = MessageTranslator(request, message_id=message_id, opts=opts, events=False)
    translator.feed({**chat, "choices": [{**choice, "index": 0, "delta": delta}]})
    failed = translator.finish()
    if failed and failed[0]["type"] == "error":
        raise APIError(502, failed[0]["error"]["message"], code="bad_upstream_reply")
    return translator.message
