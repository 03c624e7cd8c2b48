"""Stand-in for openrouter.ai/api/v1: chat completions, the stateless Responses API (beta) and models.

From OpenRouter's API reference: `Authorization: Bearer <key>`; attribution by `HTTP-Referer` and `X-Title`
(recorded and checked against the configured values, never refused); `provider` routing preferences and
the `reasoning` object in the body; errors as `{"error": {"code": <int>, "message", "metadata"?}}` with the
HTTP status equal to error.code, upstream-provider errors carrying `metadata.provider_name` and
`metadata.raw`; SSE streams with `: OPENROUTER PROCESSING` comment lines, and errors after the model has
started sent inside the stream (a chunk with `error` and finish_reason "error").

Test models: `standin/provider-error` fails with an upstream-provider error, `standin/mid-stream-error`
fails after its first words.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from . import common

PROVIDER_FIELDS = {
    "order", "allow_fallbacks", "require_parameters", "data_collection", "zdr", "enforce_distillable_text",
    "only", "ignore", "quantizations", "sort", "max_price", "preferred_min_throughput", "preferred_max_latency",
}  # fmt: skip
REASONING_FIELDS = {"effort", "max_tokens", "exclude", "enabled", "summary"}
PROCESSING = b": OPENROUTER PROCESSING\n\n"


def or_error(status: int, message: str, metadata: dict[str, Any] | None = None) -> Response:
    err: dict[str, Any] = {"code": status, "message": message}
    if metadata is not None:
        err["metadata"] = metadata
    return JSONResponse({"error": err}, status_code=status)


PROVIDER_ERROR = {
    "provider_name": "Fireworks",
    "raw": json.dumps({"error": {"message": "This model's maximum context length is 8192 tokens."}}),
}


def make_app(overrides: dict[str, Any] | None = None) -> FastAPI:
    config: dict[str, Any] = {
        "key": "sk-or-v1-standin",
        "referer": "",
        "title": "",
        "models": ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4"],
    }
    config.update(overrides or {})
    recorder = common.Recorder()
    app = common.control_app("OpenRouter stand-in", config, recorder)

    async def admit(request: Request) -> tuple[dict[str, Any], Response | None]:
        entry = await recorder.record(request)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:]:
            entry["problems"].append("no bearer key")
            return entry, or_error(401, "No auth credentials found")
        if auth[7:] != config["key"]:
            entry["problems"].append("wrong key")
            return entry, or_error(401, "User not found.")
        for name, header in (("referer", "http-referer"), ("title", "x-title")):
            common.check(entry, request.headers.get(header) == (config[name] or None), f"{header} header")
        body = entry["body"]
        if isinstance(body, dict):
            provider = body.get("provider")
            if provider is not None and (not isinstance(provider, dict) or set(provider) - PROVIDER_FIELDS):
                entry["problems"].append("provider preferences")
                return entry, or_error(400, f"Invalid provider preferences: {json.dumps(provider)}")
            reasoning = body.get("reasoning")
            if reasoning is not None and (not isinstance(reasoning, dict) or set(reasoning) - REASONING_FIELDS):
                entry["problems"].append("reasoning")
                return entry, or_error(400, f"Invalid reasoning options: {json.dumps(reasoning)}")
            if body.get("model") == "standin/provider-error":
                return entry, or_error(400, "Provider returned error", PROVIDER_ERROR)
        return entry, None

    def processing_then(parts: Iterator[bytes]) -> Iterator[bytes]:
        yield PROCESSING
        yield PROCESSING
        for part in parts:
            yield part
            if part.startswith(b"data: {"):
                yield PROCESSING

    @app.post("/api/v1/chat/completions")
    async def chat(request: Request) -> Response:
        entry, refused = await admit(request)
        if refused:
            return refused
        body = entry["body"]
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return or_error(400, 'Input required: specify "prompt" or "messages"')
        extra = {"provider": "StandIn"}
        if not body.get("stream"):
            reply = common.chat_completion(body, extra)
            reply["choices"][0]["native_finish_reason"] = reply["choices"][0]["finish_reason"]
            return JSONResponse(reply)
        chunks = [{**c, **extra} for c in common.chat_chunks(body, usage=True)]  # usage comes last, always
        if body.get("model") == "standin/mid-stream-error":
            error = {"code": 502, "message": "Provider disconnected unexpectedly"}
            chunks = chunks[:2] + [
                {
                    **chunks[0],
                    "error": error,
                    "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
                }
            ]
            return StreamingResponse(processing_then(common.sse_data(iter(chunks))), media_type="text/event-stream")
        return StreamingResponse(processing_then(common.sse_data(iter(chunks))), media_type="text/event-stream")

    @app.post("/api/v1/responses")
    async def responses(request: Request) -> Response:
        entry, refused = await admit(request)
        if refused:
            return refused
        body = entry["body"]
        if not isinstance(body, dict) or "input" not in body:
            return or_error(400, "Missing required parameter: 'input'.")
        if body.get("previous_response_id"):
            entry["problems"].append("previous_response_id")
            return or_error(400, "previous_response_id is not supported: the Responses API is stateless.")
        final = common.response_object({**body, "store": False})
        if body.get("stream"):
            # OpenRouter's Responses stream: data lines only (the type is in the payload), comments, [DONE].
            events = (b"data: " + json.dumps(e).encode() + b"\n\n" for e in common.response_events(final))
            done = iter([b"data: [DONE]\n\n"])
            return StreamingResponse(processing_then(_chain(events, done)), media_type="text/event-stream")
        return JSONResponse(final)

    @app.get("/api/v1/models")
    async def models(request: Request) -> Response:
        _, refused = await admit(request)
        return refused or JSONResponse(common.model_list(config["models"]))

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE", "PUT"])
    async def unknown(request: Request, path: str) -> Response:
        entry = await recorder.record(request)
        entry["problems"].append("unknown path")
        return or_error(404, "Not Found")

    return app


def _chain(*parts: Iterator[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield from part
