"""The adapter's routes: thin handlers that read the request and call a service (serving.py) kept on
`app.state`. The same routes serve every backend."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import Response
from starlette.requests import HTTPConnection

from . import metrics
from .admin import ADMIN_HEADER, AdminService
from .calls import current
from .errors import APIError, invalid
from .messages_serving import MessagesService
from .serving import ChatService, ResponsesService, Serving, json_response
from .sockets import serve_socket
from .state import OPEN_SCOPE, SCOPE_HEADER, StateService
from .tokenize import ROUTES as TOKENIZER_ROUTES
from .tokenize import relay_tokenize

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


def forwarded(request: HTTPConnection) -> dict[str, str]:
    """Request headers passed upstream: the request id, for tracing one request end to end."""
    rid = request.headers.get("x-request-id")
    return {"x-request-id": rid} if rid else {}


def scope(request: HTTPConnection) -> str:
    """The caller's key id, as the gateway names it (never the key): what stored objects belong to."""
    return request.headers.get(SCOPE_HEADER) or OPEN_SCOPE


def state(request: Request) -> StateService:
    found = responses(request).state
    if found is None:
        raise APIError(404, "Nothing is stored on this adapter (MODELYARD_STORE_URL is not set).", code="not_found")
    return found


def serving(request: Request) -> Serving:
    return request.app.state.serving


def chat(request: Request) -> ChatService:
    return request.app.state.chat


def responses(request: Request) -> ResponsesService:
    return request.app.state.responses


def messages(request: Request) -> MessagesService:
    return request.app.state.messages


async def body_of(request: Request) -> dict[str, Any]:
    body = await read_json(request, serving(request).settings.max_body_bytes)
    if (call := current()) is not None:  # what accounting and capture say of this request
        model = body.get("model")
        call.model = model if isinstance(model, str) else None
        if call.rollout is not None and request.app.state.capture is not None:
            call.request = orjson.loads(await request.body())  # as sent: serving changes `body`
    return body


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
    return await responses(request).create(await body_of(request), forwarded(request), scope(request))


@router.post("/v1/responses/input_tokens")
async def count_input_tokens(request: Request) -> Response:
    return await responses(request).input_tokens(await body_of(request), forwarded(request), scope(request))


@router.post("/v1/responses/compact")
async def compact_response(request: Request) -> Response:
    return await responses(request).compact(await body_of(request), forwarded(request))


@router.websocket("/v1/responses")
async def responses_socket(ws: WebSocket) -> None:
    """WebSocket mode (sockets.py): `response.create` messages in, the stream's events out."""
    await serve_socket(ws.app.state.responses, ws, scope(ws), forwarded(ws))


# Stored responses: from the local store, or relayed where the upstream keeps them (OpenAI, Azure).
async def _stored(request: Request, method: str, sub: str) -> Response:
    return await responses(request).stored(method, sub, request.query_params, forwarded(request), scope(request))


@router.get("/v1/responses/{response_id}")
async def get_response(request: Request, response_id: str) -> Response:
    return await _stored(request, "GET", f"/{response_id}")


@router.delete("/v1/responses/{response_id}")
async def delete_response(request: Request, response_id: str) -> Response:
    return await _stored(request, "DELETE", f"/{response_id}")


@router.post("/v1/responses/{response_id}/cancel")
async def cancel_response(request: Request, response_id: str) -> Response:
    return await _stored(request, "POST", f"/{response_id}/cancel")


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(request: Request, response_id: str) -> Response:
    return await _stored(request, "GET", f"/{response_id}/input_items")


_ANY = ["GET", "POST", "PUT", "PATCH", "DELETE"]


# Any other path under /v1/responses: a 404, not the 405 a stored-response route's path would give.
@router.api_route("/v1/responses/{rest:path}", methods=_ANY, include_in_schema=False)
async def unknown_responses_path(request: Request, rest: str) -> Response:
    msg = f"Unknown path {request.url.path} on the {serving(request).name} adapter."
    raise APIError(404, msg, code="unknown_url")


# -- vLLM's /tokenize and /detokenize, at the root and under /v1 (tokenize.py) ------------------------
async def tokenizer(request: Request) -> Response:
    s = serving(request)
    with metrics.track(s.name, "tokenize"):
        return await relay_tokenize(s.upstream, s.backend, request.url.path, await body_of(request), forwarded(request))


for _path in TOKENIZER_ROUTES:
    router.add_api_route(_path, tokenizer, methods=["POST"], name=_path.strip("/").replace("/", "_"))


# -- conversations (the local store) ---------------------------------------------------------------
@router.post("/v1/conversations")
async def create_conversation(request: Request) -> Response:
    return json_response(await state(request).create_conversation(await body_of(request), scope(request)))


@router.get("/v1/conversations/{conversation_id}")
async def get_conversation(request: Request, conversation_id: str) -> Response:
    return json_response(await state(request).conversation(conversation_id, scope(request)))


@router.post("/v1/conversations/{conversation_id}")
async def update_conversation(request: Request, conversation_id: str) -> Response:
    body = await body_of(request)
    return json_response(await state(request).update_conversation(conversation_id, body, scope(request)))


@router.delete("/v1/conversations/{conversation_id}")
async def delete_conversation(request: Request, conversation_id: str) -> Response:
    return json_response(await state(request).delete_conversation(conversation_id, scope(request)))


@router.get("/v1/conversations/{conversation_id}/items")
async def list_conversation_items(request: Request, conversation_id: str) -> Response:
    items = await state(request).conversation_items(conversation_id, scope(request), request.query_params)
    return json_response(items)


@router.post("/v1/conversations/{conversation_id}/items")
async def create_conversation_items(request: Request, conversation_id: str) -> Response:
    body = await body_of(request)
    return json_response(await state(request).add_conversation_items(conversation_id, body, scope(request)))


@router.get("/v1/conversations/{conversation_id}/items/{item_id}")
async def get_conversation_item(request: Request, conversation_id: str, item_id: str) -> Response:
    return json_response(await state(request).conversation_item(conversation_id, item_id, scope(request)))


@router.delete("/v1/conversations/{conversation_id}/items/{item_id}")
async def delete_conversation_item(request: Request, conversation_id: str, item_id: str) -> Response:
    return json_response(await state(request).delete_conversation_item(conversation_id, item_id, scope(request)))


# -- admin: replicas, pause/resume for weight updates (admin.py) -------------------------------------
def admin(request: Request) -> AdminService:
    service: AdminService = request.app.state.admin
    service.check(request.headers.get(ADMIN_HEADER))
    return service


async def optional_body(request: Request) -> dict[str, Any]:
    return await body_of(request) if await request.body() else {}


@router.get("/admin/replicas")
async def list_replicas(request: Request) -> Response:
    return json_response(admin(request).replicas())


@router.post("/admin/replicas")
async def register_replica(request: Request) -> Response:
    service = admin(request)
    return json_response(await service.register(await body_of(request)))


@router.delete("/admin/replicas")
async def deregister_replica(request: Request) -> Response:
    service = admin(request)
    body = await optional_body(request) or dict(request.query_params)
    return json_response(await service.deregister(body))


@router.post("/admin/pause")
async def pause(request: Request) -> Response:
    service = admin(request)
    return json_response(await service.pause(await optional_body(request)))


@router.post("/admin/resume")
async def resume(request: Request) -> Response:
    service = admin(request)
    return json_response(service.resume(await optional_body(request)))


# -- usage and captured rollouts (usage.py, capture.py), for the admin key -----------------------------
@router.get("/v1/usage")
async def usage(request: Request) -> Response:
    admin(request)
    return json_response(await request.app.state.ledger.report(request.query_params))


@router.get("/v1/rollouts/{rollout_id}")
async def rollout(request: Request, rollout_id: str) -> Response:
    admin(request)
    capture = request.app.state.capture
    if capture is None:
        raise APIError(404, "Capture is off: set MODELYARD_CAPTURE=true (and MODELYARD_STORE_URL).", code="not_found")
    calls = await capture.calls(rollout=rollout_id)
    return json_response({"object": "list", "rollout_id": rollout_id, "data": calls})


@router.get("/v1/rollouts")
async def rollouts(request: Request) -> Response:
    """Captured calls by time range (`since`, `until`: Unix seconds) and/or key id (`key`), in order."""
    admin(request)
    capture = request.app.state.capture
    if capture is None:
        raise APIError(404, "Capture is off: set MODELYARD_CAPTURE=true (and MODELYARD_STORE_URL).", code="not_found")
    q = request.query_params
    bounds = {}
    for name in ("since", "until"):
        raw = q.get(name)
        if raw is not None:
            try:
                bounds[name] = float(raw)
            except ValueError:
                raise invalid(f"'{name}' must be a Unix time in seconds.", name) from None
    calls = await capture.calls(rollout=q.get("rollout_id"), scope=q.get("key"), **bounds)
    return json_response({"object": "list", "data": calls})


# Anthropic's Messages API (messages_serving.py); errors on these paths are in Anthropic's format (app.py).
@router.post("/v1/messages")
async def create_message(request: Request) -> Response:
    return await messages(request).create(await body_of(request), forwarded(request))


@router.post("/v1/messages/count_tokens")
async def count_message_tokens(request: Request) -> Response:
    return await messages(request).count_tokens(await body_of(request), forwarded(request))


# -- the generation routes' fast way in -----------------------------------------------------------------
# FastAPI routes a request through its included router, path matching over every route and dependency
# solving: several µs of CPU a request (docs/benchmarks.md). The three generation routes are exact paths
# with no parameters, so one dict lookup finds their handler; everything else goes the framework's way.
HOT = {
    ("POST", "/v1/responses"): create_response,
    ("POST", "/v1/chat/completions"): create_chat_completion,
    ("POST", "/v1/messages"): create_message,
}


class HotRoutes:
    """ASGI middleware, innermost: a generation route's handler called straight away; its `APIError`
    answered by `on_error` (as the app's handler does), anything else left to the app's 500 handler."""

    def __init__(self, app: Any, on_error: Any) -> None:
        self.app, self.on_error = app, on_error

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        handler = HOT.get((scope.get("method"), scope["path"])) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except APIError as err:
            response = await self.on_error(request, err)
        await response(scope, receive, send)
