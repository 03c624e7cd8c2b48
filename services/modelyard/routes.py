"""The adapter's routes: thin handlers that read the request and call a service (serving.py) kept on
`app.state`. The same routes serve every backend."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import metrics
from .errors import APIError, invalid
from .messages_serving import MessagesService
from .serving import ChatService, ResponsesService, Serving, json_response

router = APIRouter()


async def read_json(request: Request, limit: int = 0) -> dict[str, Any]:
    """The body as a JSON object; over `limit` bytes (0: none) a 413 before or after reading it."""
    declared = request.headers.get("content-length", "")
    if limit and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    raw = await request.body()
    if limit and len(raw) > limit:
        raise too_large(limit)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid(f"The request body must be a JSON object, got {type(body).__name__}.", code="invalid_type")
    return body


def too_large(limit: int) -> APIError:
    msg = f"The request body is larger than the adapter's limit of {limit} bytes (MODELYARD_MAX_BODY_BYTES)."
    return APIError(413, msg, code="request_too_large", type="invalid_request_error")


def forwarded(request: Request) -> dict[str, str]:
    """Request headers passed upstream: the request id, for tracing one request end to end."""
    rid = request.headers.get("x-request-id")
    return {"x-request-id": rid} if rid else {}


def serving(request: Request) -> Serving:
    return request.app.state.serving


def chat(request: Request) -> ChatService:
    return request.app.state.chat


def responses(request: Request) -> ResponsesService:
    return request.app.state.responses


def messages(request: Request) -> MessagesService:
    return request.app.state.messages


async def body_of(request: Request) -> dict[str, Any]:
    return await read_json(request, serving(request).settings.max_body_bytes)


# -- health ---------------------------------------------------------------------------------------
@router.get("/healthz")
async def healthz(request: Request) -> Response:
    return json_response({"status": "ok", "backend": serving(request).name})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    return await serving(request).readiness()


@router.get("/metrics")
async def metrics_endpoint() -> Response:
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


# -- the API --------------------------------------------------------------------------------------
@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    return await serving(request).models(forwarded(request))


@router.post("/v1/chat/completions")
async def create_chat_completion(request: Request) -> Response:
    return await chat(request).create(await body_of(request), forwarded(request))


@router.post("/v1/responses")
async def create_response(request: Request) -> Response:
    return await responses(request).create(await body_of(request), forwarded(request))


# Stored responses: relayed where the upstream keeps them (OpenAI, Azure).
@router.get("/v1/responses/{response_id}")
async def get_response(request: Request, response_id: str) -> Response:
    return await responses(request).stored("GET", f"/{response_id}", request.query_params, forwarded(request))


@router.delete("/v1/responses/{response_id}")
async def delete_response(request: Request, response_id: str) -> Response:
    return await responses(request).stored("DELETE", f"/{response_id}", request.query_params, forwarded(request))


@router.post("/v1/responses/{response_id}/cancel")
async def cancel_response(request: Request, response_id: str) -> Response:
    sub = f"/{response_id}/cancel"
    return await responses(request).stored("POST", sub, request.query_params, forwarded(request))


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(request: Request, response_id: str) -> Response:
    sub = f"/{response_id}/input_items"
    return await responses(request).stored("GET", sub, request.query_params, forwarded(request))


# Anthropic's Messages API (messages_serving.py); errors on these paths are in Anthropic's format (app.py).
@router.post("/v1/messages")
async def create_message(request: Request) -> Response:
    return await messages(request).create(await body_of(request), forwarded(request))


@router.post("/v1/messages/count_tokens")
async def count_message_tokens(request: Request) -> Response:
    return await messages(request).count_tokens(await body_of(request), forwarded(request))
