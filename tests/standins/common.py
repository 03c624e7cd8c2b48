"""What every stand-in provider shares: request recording, control endpoints, a deterministic "model",
and the OpenAI-documented shapes of Responses objects, Responses SSE events, chat completions and chunks
(Azure and OpenRouter serve the same shapes, with their own additions).

The model: with tools and no tool result yet it calls the first tool (string arguments "Paris"); after a
tool result it answers "The tool said: <output>"; otherwise it answers "You said: <last user text>".
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.getpid():x}{next(_ids):08d}"


class Recorder:
    """Every request the stand-in received, with what it found wrong, for tests to assert on."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def record(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        entry = {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
            "problems": [],
        }
        self.requests.append(entry)
        return entry


def control_app(title: str, config: dict[str, Any], recorder: Recorder) -> FastAPI:
    """The stand-in's own endpoints (never a provider's): health, recorded requests, runtime config."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/_health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/_requests")
    async def requests() -> list[dict[str, Any]]:
        return recorder.requests

    @app.delete("/_requests")
    async def clear() -> Response:
        recorder.requests.clear()
        return Response(status_code=204)

    @app.get("/_config")
    async def get_config() -> dict[str, Any]:
        return config

    @app.post("/_config")
    async def set_config(request: Request) -> dict[str, Any]:
        config.update(await request.json())
        return config

    return app


def check(entry: dict[str, Any], ok: bool, problem: str) -> None:
    if not ok:
        entry["problems"].append(problem)


def bad_request(entry: dict[str, Any], error: dict[str, Any], status: int = 400) -> JSONResponse | None:
    """The provider's own 400 when the stand-in found something the real provider would refuse."""
    return JSONResponse(error, status_code=status) if entry["problems"] else None


# -- the deterministic model ----------------------------------------------------------------------
def arguments_for(parameters: dict[str, Any] | None) -> str:
    props = (parameters or {}).get("properties") or {}
    values = {"string": "Paris", "integer": 1, "number": 1, "boolean": True}
    return json.dumps({name: values.get(spec.get("type"), "Paris") for name, spec in props.items()})


def words(value: Any) -> int:
    return max(1, len(json.dumps(value).split()))


def chat_turn(body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(text, tool_call) for a chat request."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    if last.get("role") == "tool":
        return f"The tool said: {content_text(last.get('content'))}", None
    if tools and body.get("tool_choice") != "none":
        fn = tools[0]["function"]
        return None, {"name": fn["name"], "arguments": arguments_for(fn.get("parameters"))}
    users = [m for m in messages if m.get("role") == "user"]
    return f"You said: {content_text(users[-1]['content']) if users else ''}", None


def responses_turn(body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(text, tool_call) for a Responses request (flat function tools)."""
    items = body.get("input")
    items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
    last = items[-1] if items else {}
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    if last.get("type") == "function_call_output":
        return f"The tool said: {last.get('output')}", None
    if tools and body.get("tool_choice") != "none":
        return None, {"name": tools[0]["name"], "arguments": arguments_for(tools[0].get("parameters"))}
    users = [i for i in items if i.get("role") == "user"]
    return f"You said: {content_text(users[-1].get('content')) if users else ''}", None


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


# -- Chat Completions shapes (OpenAI API reference: the chat completion object, the chunk object) -----
def chat_completion(body: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    text, call = chat_turn(body)
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    if call:
        message["tool_calls"] = [{"id": new_id("call"), "type": "function", "function": call}]
    out_tokens = words(text or call)
    prompt_tokens = words(body.get("messages"))
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if call else "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": out_tokens,
            "total_tokens": prompt_tokens + out_tokens,
        },
        "system_fingerprint": "fp_standin",
        **(extra or {}),
    }


def chat_chunks(body: dict[str, Any], usage: bool) -> Iterator[dict[str, Any]]:
    """The chunks of a streamed chat completion; the usage chunk (empty choices) only when asked for."""
    reply = chat_completion(body)
    base = {k: reply[k] for k in ("id", "object", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    message = reply["choices"][0]["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice], **({"usage": None} if usage else {})}

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        head = {"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"]}}
        yield chunk({"tool_calls": [{**head, "function": {**head["function"], "arguments": ""}}]})
        args = call["function"]["arguments"]
        for part in (args[: len(args) // 2], args[len(args) // 2 :]):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
    else:
        for piece in pieces(message["content"]):
            yield chunk({"content": piece})
    yield chunk({}, reply["choices"][0]["finish_reason"])
    if usage:
        yield {**base, "choices": [], "usage": reply["usage"]}


def pieces(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]


def sse_data(payloads: Iterator[dict[str, Any]], done: bool = True) -> Iterator[bytes]:
    for payload in payloads:
        yield b"data: " + json.dumps(payload).encode() + b"\n\n"
    if done:
        yield b"data: [DONE]\n\n"


# -- Responses shapes (OpenAI API reference: the response object, streaming events) ----------------------
def response_object(body: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    text, call = responses_turn(body)
    output: list[dict[str, Any]] = []
    if call:
        output.append(
            {"type": "function_call", "id": new_id("fc"), "call_id": new_id("call"), "status": "completed", **call}
        )
    else:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        output.append(
            {"type": "message", "id": new_id("msg"), "status": "completed", "role": "assistant", "content": [part]}
        )
    in_tokens, out_tokens = words(body.get("input")), words(text or call)
    return {
        "id": new_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": bool(body.get("background")),
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": body["model"],
        "output": output if status == "completed" else [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": {
            "input_tokens": in_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": out_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": in_tokens + out_tokens,
        },
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def response_events(final: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The documented event sequence for a finished response: created, in_progress, per item
    output_item.added / (content_part.added, output_text.delta*, output_text.done, content_part.done |
    function_call_arguments.delta*, function_call_arguments.done) / output_item.done, then completed."""
    seq = itertools.count()
    pending = {**final, "status": "in_progress", "output": [], "usage": None}
    yield {"type": "response.created", "sequence_number": next(seq), "response": pending}
    yield {"type": "response.in_progress", "sequence_number": next(seq), "response": pending}
    for index, item in enumerate(final["output"]):
        common = {"output_index": index, "item_id": item["id"]}
        if item["type"] == "message":
            yield {
                "type": "response.output_item.added",
                "sequence_number": next(seq),
                "output_index": index,
                "item": {**item, "status": "in_progress", "content": []},
            }
            part = item["content"][0]
            empty = {**part, "text": ""}
            yield {
                "type": "response.content_part.added",
                "sequence_number": next(seq),
                **common,
                "content_index": 0,
                "part": empty,
            }
            for piece in pieces(part["text"]):
                yield {
                    "type": "response.output_text.delta",
                    "sequence_number": next(seq),
                    **common,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                }
            yield {
                "type": "response.output_text.done",
                "sequence_number": next(seq),
                **common,
                "content_index": 0,
                "text": part["text"],
                "logprobs": [],
            }
            yield {
                "type": "response.content_part.done",
                "sequence_number": next(seq),
                **common,
                "content_index": 0,
                "part": part,
            }
        else:
            yield {
                "type": "response.output_item.added",
                "sequence_number": next(seq),
                "output_index": index,
                "item": {**item, "status": "in_progress", "arguments": ""},
            }
            yield {
                "type": "response.function_call_arguments.delta",
                "sequence_number": next(seq),
                **common,
                "delta": item["arguments"],
            }
            yield {
                "type": "response.function_call_arguments.done",
                "sequence_number": next(seq),
                **common,
                "arguments": item["arguments"],
            }
        yield {"type": "response.output_item.done", "sequence_number": next(seq), "output_index": index, "item": item}
    yield {"type": "response.completed", "sequence_number": next(seq), "response": final}


def sse_events(events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """Responses streams name each event on an `event:` line (no [DONE] at the end)."""
    for event in events:
        yield b"event: " + event["type"].encode() + b"\ndata: " + json.dumps(event).encode() + b"\n\n"


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A request's input as stored items (ids added, the string form as one user message), newest first."""
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": items}]}]
    out = []
    for item in items or []:
        item = {"type": "message", **item} if "role" in item and "type" not in item else dict(item)
        if item["type"] == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        item.setdefault("id", new_id("msg" if item["type"] == "message" else "item"))
        item.setdefault("status", "completed")
        out.append(item)
    return list(reversed(out))


def input_token_count(body: dict[str, Any]) -> dict[str, Any]:
    """POST /responses/input_tokens: the TokenCountsResource (the "model" counts words of input and
    instructions, as `usage.input_tokens` does on a Response)."""
    n = words(body.get("input")) + (words(body["instructions"]) if body.get("instructions") else 0)
    return {"object": "response.input_tokens", "input_tokens": n}


def compaction(body: dict[str, Any]) -> dict[str, Any]:
    """POST /responses/compact: the CompactResource. The user messages are kept as they came and the rest
    is one opaque `compaction` item, as OpenAI's reference example shows."""
    kept = [i for i in reversed(input_items(body)) if i.get("type") == "message" and i.get("role") == "user"]
    kept = [{k: v for k, v in i.items() if k != "status"} | {"status": "completed"} for i in kept]
    in_tokens = words(body.get("input"))
    return {
        "id": new_id("resp"),
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": [*kept, {"id": new_id("cmp"), "type": "compaction", "encrypted_content": "gAAAAA-standin="}],
        "usage": {
            "input_tokens": in_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 1,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": in_tokens + 1,
        },
    }


def model_list(ids: list[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": 1700000000, "owned_by": "standin"} for i in ids],
    }
