"""Stand-in for api.openai.com/v1: Responses (create, stream, stored: get, delete, cancel, input_items;
input_tokens, compact),
chat completions and models, behind `Authorization: Bearer <key>` and, where configured, the
`OpenAI-Organization` / `OpenAI-Project` headers (the names the openai SDK sends, see sdk_requests.json).

Errors are OpenAI's `{"error": {"message", "type", "param", "code"}}`; the 401 texts are OpenAI's own,
the wrong-key one echoing the key masked, as OpenAI does.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from . import common

REASONING = ("o1", "o3", "o4", "gpt-5")  # models that refuse max_tokens on chat completions


def error(status: int, message: str, param: str | None = None, code: str | None = None, type_: str = "") -> Response:
    body = {"message": message, "type": type_ or "invalid_request_error", "param": param, "code": code}
    return JSONResponse({"error": body}, status_code=status)


class Engine:
    """The model-side behaviour OpenAI and Azure share: validation of bodies, replies, the response store."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.store: dict[str, dict[str, Any]] = {}
        self.items: dict[str, list[dict[str, Any]]] = {}

    # -- Responses ---------------------------------------------------------------------------
    def create_response(self, entry: dict[str, Any]) -> Response:
        body = entry["body"]
        if not isinstance(body, dict):
            return error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return error(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
        if "input" not in body:
            return error(400, "Missing required parameter: 'input'.", "input", "missing_required_parameter")
        if "messages" in body:
            return error(400, "Unsupported parameter: 'messages'.", "messages", "unsupported_parameter")
        for i, tool in enumerate(body.get("tools") or []):
            if tool.get("type") == "function" and not tool.get("name"):
                # The Responses API wants flat function tools; chat's nested shape has no top-level name.
                return error(400, f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name")
        for i, item in enumerate(body["input"] if isinstance(body["input"], list) else []):
            if item.get("type") in ("function_call", "function_call_output") and not item.get("call_id"):
                return error(400, f"Missing required parameter: 'input[{i}].call_id'.", f"input[{i}].call_id")
        prev = body.get("previous_response_id")
        if prev and prev not in self.store:
            msg = f"Previous response with id '{prev}' not found."
            return error(404, msg, "previous_response_id", "previous_response_not_found")
        status = "queued" if body.get("background") else "completed"
        final = common.response_object(body, status)
        if body.get("store", True):
            self.store[final["id"]] = final
            self.items[final["id"]] = common.input_items(body)
        if body.get("stream"):
            stream = common.sse_events(common.response_events(final))
            return StreamingResponse(stream, media_type="text/event-stream")
        return JSONResponse(final)

    def count_input_tokens(self, entry: dict[str, Any]) -> Response:
        """POST /responses/input_tokens (TokenCountsBody: every field optional, no generation params)."""
        body = entry["body"]
        if not isinstance(body, dict):
            return error(400, "We could not parse the JSON body of your request.")
        for key in ("stream", "max_output_tokens", "temperature", "store", "background"):
            if key in body:
                return error(400, f"Unknown parameter: '{key}'.", key, "unknown_parameter")
        return self.checked(body) or JSONResponse(common.input_token_count(body))

    def compact(self, entry: dict[str, Any]) -> Response:
        """POST /responses/compact (CompactResponseMethodPublicBody: model required)."""
        body = entry["body"]
        if not isinstance(body, dict):
            return error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return error(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
        for key in ("tools", "stream", "max_output_tokens"):
            if key in body:
                return error(400, f"Unknown parameter: '{key}'.", key, "unknown_parameter")
        return self.checked(body) or JSONResponse(common.compaction(body))

    def checked(self, body: dict[str, Any]) -> Response | None:
        """What create_response refuses in the input, tools and previous_response_id, for the other routes."""
        for i, tool in enumerate(body.get("tools") or []):
            if tool.get("type") == "function" and not tool.get("name"):
                return error(400, f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name")
        prev = body.get("previous_response_id")
        if prev and prev not in self.store:
            msg = f"Previous response with id '{prev}' not found."
            return error(404, msg, "previous_response_id", "previous_response_not_found")
        return None

    def get_response(self, rid: str, method: str) -> Response:
        if rid not in self.store:
            return error(404, f"Response with id '{rid}' not found.", None, None)
        if method == "DELETE":
            del self.store[rid]
            return JSONResponse({"id": rid, "object": "response.deleted", "deleted": True})
        return JSONResponse(self.store[rid])

    def cancel_response(self, rid: str) -> Response:
        if rid not in self.store:
            return error(404, f"Response with id '{rid}' not found.", None, None)
        resp = self.store[rid]
        if not resp["background"]:
            return error(400, "Only responses created with background=true can be cancelled.", None, None)
        resp["status"] = "cancelled"
        return JSONResponse(resp)

    def input_items(self, rid: str, query: dict[str, str]) -> Response:
        if rid not in self.items:
            return error(404, f"Response with id '{rid}' not found.", None, None)
        data = self.items[rid] if query.get("order", "desc") == "desc" else list(reversed(self.items[rid]))
        data = data[: int(query.get("limit", "20"))]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return JSONResponse({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": False})

    # -- chat completions ----------------------------------------------------------------------
    def chat(self, entry: dict[str, Any], extra: dict[str, Any] | None = None) -> Response:
        body = entry["body"]
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return error(400, "Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
        if not isinstance(body.get("model"), str):
            return error(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
        for i, tool in enumerate(body.get("tools") or []):
            if tool.get("type") == "function" and not (tool.get("function") or {}).get("name"):
                return error(400, f"Missing required parameter: 'tools[{i}].function'.", f"tools[{i}].function")
        if "max_tokens" in body and self.is_reasoning(body["model"]):
            msg = (
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead."
            )
            return error(400, msg, "max_tokens", "unsupported_parameter")
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                common.sse_data(self.chunks(body, usage)), media_type="text/event-stream; charset=utf-8"
            )
        return JSONResponse(common.chat_completion(body, extra))

    def chunks(self, body: dict[str, Any], usage: bool):
        return common.chat_chunks(body, usage)

    def is_reasoning(self, model: str) -> bool:
        reasoning = self.config.get("reasoning_models") or []
        return model in reasoning or model.startswith(REASONING)


def make_app(overrides: dict[str, Any] | None = None) -> FastAPI:
    config: dict[str, Any] = {
        "key": "sk-standin-openai",
        "organization": "",
        "project": "",
        "models": ["gpt-4.1-mini", "o4-mini"],
    }
    config.update(overrides or {})
    recorder = common.Recorder()
    engine = Engine(config)
    app = common.control_app("OpenAI stand-in", config, recorder)

    async def admit(request: Request) -> tuple[dict[str, Any], Response | None]:
        entry = await recorder.record(request)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:]:
            entry["problems"].append("no bearer key")
            msg = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (i.e. YOUR_KEY:), or as "
                "the username field (i.e. :YOUR_KEY). You can obtain an API key from "
                "https://platform.openai.com/account/api-keys."
            )
            return entry, error(401, msg)
        key = auth[7:]
        if key != config["key"]:
            entry["problems"].append("wrong key")
            masked = key[:8] + "*" * max(4, len(key) - 12) + key[-4:]
            msg = (
                f"Incorrect API key provided: {masked}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
            return entry, error(401, msg, None, "invalid_api_key")
        for name in ("organization", "project"):
            if config[name] and request.headers.get(f"openai-{name}") != config[name]:
                entry["problems"].append(f"openai-{name} header")
                msg = f"OpenAI-{name.title()} header should match {name} for API key"
                return entry, error(401, msg, None, f"mismatched_{name}")
        if request.method == "POST" and entry["body"] is not None:
            common.check(entry, request.headers.get("content-type", "").startswith("application/json"), "content-type")
        return entry, None

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        entry, refused = await admit(request)
        return refused or engine.create_response(entry)

    @app.post("/v1/responses/input_tokens")
    async def input_tokens(request: Request) -> Response:
        entry, refused = await admit(request)
        return refused or engine.count_input_tokens(entry)

    @app.post("/v1/responses/compact")
    async def compact(request: Request) -> Response:
        entry, refused = await admit(request)
        return refused or engine.compact(entry)

    @app.api_route("/v1/responses/{rid}", methods=["GET", "DELETE"])
    async def stored(request: Request, rid: str) -> Response:
        _, refused = await admit(request)
        return refused or engine.get_response(rid, request.method)

    @app.post("/v1/responses/{rid}/cancel")
    async def cancel(request: Request, rid: str) -> Response:
        _, refused = await admit(request)
        return refused or engine.cancel_response(rid)

    @app.get("/v1/responses/{rid}/input_items")
    async def items(request: Request, rid: str) -> Response:
        _, refused = await admit(request)
        return refused or engine.input_items(rid, dict(request.query_params))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        entry, refused = await admit(request)
        return refused or engine.chat(entry, {"service_tier": "default"})

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        _, refused = await admit(request)
        return refused or JSONResponse(common.model_list(config["models"]))

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE", "PUT"])
    async def unknown(request: Request, path: str) -> Response:
        entry = await recorder.record(request)
        entry["problems"].append("unknown path")
        return error(404, f"Invalid URL ({request.method} /{path})", None, None)

    return app
