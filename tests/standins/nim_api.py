"""Stand-in for an NVIDIA NIM for LLMs (self-hosted container, or the hosted catalog at
integrate.api.nvidia.com/v1): the NIM-specific paths in NIM's documented shapes; chat itself is the vLLM
wire format NIM is built on (the real vLLM CPU engine covers it in the cpu tests).

From NIM's API reference:
  GET /v1/health/ready  200 {"object": "health.response", "message": "Service is ready."}
                        503 {"object": "error", "message": ..., "type": "ServiceUnavailableError", "code": 503}
  GET /v1/health/live   200 {"object": "health.response", "message": "Service is live."}
  GET /v1/models        vLLM's model card list (root, parent, max_model_len, permission)
  errors                vLLM's {"object": "error", "message", "type", "param", "code": <int>}, FastAPI's
                        request validation {"detail": [{"type", "loc", "msg", "input"}]} with 422, and
                        NIM 2.x's envelope {"error": {"message", "type", "code": <int>}}
  POST /v1/chat/completions, POST /v1/responses (NIM 2.x), Bearer key where one is configured (hosted).

Test models: `standin/bad-request` (vLLM-style 400), `standin/busy` (NIM-envelope 503).
Config `ready: false` makes /v1/health/ready answer 503.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from . import common

MODEL = "meta/llama-3.1-8b-instruct"


def vllm_error(status: int, message: str, type_: str, param: str | None = None) -> Response:
    body = {"object": "error", "message": message, "type": type_, "param": param, "code": status}
    return JSONResponse(body, status_code=status)


def make_app(overrides: dict[str, Any] | None = None) -> FastAPI:
    config: dict[str, Any] = {"key": "", "ready": True, "models": [MODEL]}
    config.update(overrides or {})
    recorder = common.Recorder()
    app = common.control_app("NIM stand-in", config, recorder)

    async def admit(request: Request) -> tuple[dict[str, Any], Response | None]:
        entry = await recorder.record(request)
        if config["key"]:
            auth = request.headers.get("authorization", "")
            if auth != f"Bearer {config['key']}":
                entry["problems"].append("wrong or no bearer key")
                # The hosted catalog's gateway answers an unknown key like this.
                refusal = {"status": 401, "title": "Unauthorized", "detail": "Authentication failed"}
                return entry, JSONResponse(refusal, status_code=401)
        body = entry["body"]
        if request.method == "POST":
            if not isinstance(body, dict):
                return entry, vllm_error(400, "The request body is not valid JSON.", "BadRequestError")
            model = body.get("model")
            if model == "standin/bad-request":
                msg = "temperature must be non-negative, got -1."
                return entry, vllm_error(400, msg, "BadRequestError", "temperature")
            if model == "standin/busy":
                err = {"message": "The server is busy; retry later.", "type": "ServiceUnavailableError", "code": 503}
                return entry, JSONResponse({"error": err}, status_code=503)
            if model not in config["models"]:
                return entry, vllm_error(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
        return entry, None

    @app.get("/v1/health/ready")
    async def ready() -> Response:
        if config["ready"]:
            return JSONResponse({"object": "health.response", "message": "Service is ready."})
        return vllm_error(503, "Service is not ready.", "ServiceUnavailableError")

    @app.get("/v1/health/live")
    async def live() -> Response:
        return JSONResponse({"object": "health.response", "message": "Service is live."})

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        _, refused = await admit(request)
        if refused:
            return refused
        cards = [
            {
                "id": m, "object": "model", "created": 1700000000, "owned_by": "system", "root": m, "parent": None,
                "max_model_len": 131072,
                "permission": [{"id": "modelperm-standin", "object": "model_permission", "created": 1700000000,
                                "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                                "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                                "organization": "*", "group": None, "is_blocking": False}],
            }
            for m in config["models"]
        ]  # fmt: skip
        return JSONResponse({"object": "list", "data": cards})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        entry, refused = await admit(request)
        if refused:
            return refused
        body = entry["body"]
        if not isinstance(body.get("messages"), list):
            detail = [{"type": "missing", "loc": ["body", "messages"], "msg": "Field required", "input": body}]
            return JSONResponse({"detail": detail}, status_code=422)
        if not body.get("stream"):
            return JSONResponse(common.chat_completion(body))
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(common.sse_data(common.chat_chunks(body, usage)), media_type="text/event-stream")

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        entry, refused = await admit(request)
        if refused:
            return refused
        body = entry["body"]
        if "input" not in body:
            detail = [{"type": "missing", "loc": ["body", "input"], "msg": "Field required", "input": body}]
            return JSONResponse({"detail": detail}, status_code=422)
        final = common.response_object({**body, "store": False})
        if body.get("stream"):
            return StreamingResponse(common.sse_events(common.response_events(final)), media_type="text/event-stream")
        return JSONResponse(final)

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE", "PUT"])
    async def unknown(request: Request, path: str) -> Response:
        entry = await recorder.record(request)
        entry["problems"].append("unknown path")
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    return app
