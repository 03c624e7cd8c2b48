"""Stand-in for an Azure OpenAI resource, both URL forms (Azure OpenAI REST reference, "API version lifecycle"):

  v1     /openai/v1/responses[/{id}[/cancel|/input_items]|/input_tokens|/compact]
         /openai/v1/chat/completions   /openai/v1/models
         (no api-version, or api-version=preview; the deployment is the body's `model`)
  dated  /openai/responses[...]?api-version=...   /openai/deployments/{deployment}/chat/completions?api-version=...
         /openai/models?api-version=...

Auth: `api-key: <key>` or `Authorization: Bearer <Entra ID token>` (v1 also takes the key as a bearer, as
the openai SDK sends it there). Azure's own error shape for auth and routing:
`{"error": {"code": "401", "message": ...}}`; model-side errors are OpenAI-shaped.

Azure's refusals the adapter must work around: chat-shaped (nested) function tools on /responses,
function_call / function_call_output input items without a status, max_tokens for reasoning deployments.
Chat streams start with a chunk with empty choices and `prompt_filter_results`, and carry usage only when
`stream_options.include_usage` asks for it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from . import common
from .openai_api import Engine, error

KEY_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
    "active subscription and use a correct regional API endpoint for your resource."
)
TOKEN_DENIED = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), "
    "or have expired."
)
NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, "
    "please wait a moment and try again."
)
FILTERS = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


def azure_error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class AzureEngine(Engine):
    def create_response(self, entry: dict[str, Any]) -> Response:
        body = entry["body"]
        if isinstance(body, dict) and isinstance(body.get("input"), list):
            for i, item in enumerate(body["input"]):
                kind = item.get("type")
                if kind in ("function_call", "function_call_output") and item.get("status") not in (
                    "in_progress",
                    "completed",
                    "incomplete",
                ):
                    msg = f"Missing required parameter: 'input[{i}].status'."
                    return error(400, msg, f"input[{i}].status", "missing_required_parameter")
        return super().create_response(entry)

    def chunks(self, body: dict[str, Any], usage: bool):
        first = True
        for chunk in super().chunks(body, usage):
            if first:  # Azure's first chunk: the prompt's filter results, no choices
                yield {
                    **chunk,
                    "choices": [],
                    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}],
                }
                first = False
            for choice in chunk["choices"]:
                choice["content_filter_results"] = FILTERS if choice["delta"].get("content") else {}
            yield chunk


def make_app(overrides: dict[str, Any] | None = None) -> FastAPI:
    config: dict[str, Any] = {
        "key": "azure-standin-key",
        "tokens": ["entra-token-1"],
        "deployments": ["gpt-4o-mini-dep", "o4-mini-dep"],
        "reasoning_models": ["o4-mini-dep"],
        "responses_api_versions": ["2025-03-01-preview", "2025-04-01-preview"],
        "chat_api_versions": ["2024-10-21", "2025-03-01-preview", "2025-04-01-preview"],
    }
    config.update(overrides or {})
    recorder = common.Recorder()
    engine = AzureEngine(config)
    app = common.control_app("Azure OpenAI stand-in", config, recorder)

    async def admit(request: Request, form: str, api: str) -> tuple[dict[str, Any], Response | None]:
        entry = await recorder.record(request)
        version = request.query_params.get("api-version")
        if form == "dated" and version not in config[f"{api}_api_versions"]:
            entry["problems"].append(f"api-version {version!r}")
            return entry, azure_error(404, "404", "Resource not found")
        if form == "v1" and version not in (None, "preview"):
            entry["problems"].append(f"api-version {version!r} on v1")
            return entry, azure_error(400, "BadRequest", "API version not supported")
        key = request.headers.get("api-key")
        auth = request.headers.get("authorization", "")
        bearer = auth[7:] if auth.startswith("Bearer ") else None
        if key is not None:
            if key != config["key"]:
                entry["problems"].append("wrong api-key")
                return entry, azure_error(401, "401", KEY_DENIED)
        elif bearer is not None:
            if bearer not in config["tokens"] and not (form == "v1" and bearer == config["key"]):
                entry["problems"].append("wrong bearer token")
                return entry, azure_error(401, "401", TOKEN_DENIED)
        else:
            entry["problems"].append("no credentials")
            return entry, azure_error(401, "401", KEY_DENIED)
        return entry, None

    def deployment_ok(entry: dict[str, Any], deployment: Any) -> Response | None:
        if deployment not in config["deployments"]:
            entry["problems"].append(f"unknown deployment {deployment!r}")
            return azure_error(404, "DeploymentNotFound", NO_DEPLOYMENT)
        return None

    # Both forms serve the same operations; only the prefix and the api-version rule differ.
    for prefix, form in (("/openai/v1", "v1"), ("/openai", "dated")):

        def routes(prefix: str = prefix, form: str = form) -> None:
            @app.post(f"{prefix}/responses", name=f"responses_{form}")
            async def responses(request: Request) -> Response:
                entry, refused = await admit(request, form, "responses")
                body = entry["body"] if isinstance(entry["body"], dict) else {}
                return refused or deployment_ok(entry, body.get("model")) or engine.create_response(entry)

            @app.post(f"{prefix}/responses/input_tokens", name=f"input_tokens_{form}")
            async def input_tokens(request: Request) -> Response:
                entry, refused = await admit(request, form, "responses")
                body = entry["body"] if isinstance(entry["body"], dict) else {}
                return refused or deployment_ok(entry, body.get("model")) or engine.count_input_tokens(entry)

            @app.post(f"{prefix}/responses/compact", name=f"compact_{form}")
            async def compact(request: Request) -> Response:
                entry, refused = await admit(request, form, "responses")
                body = entry["body"] if isinstance(entry["body"], dict) else {}
                return refused or deployment_ok(entry, body.get("model")) or engine.compact(entry)

            @app.api_route(f"{prefix}/responses/{{rid}}", methods=["GET", "DELETE"], name=f"stored_{form}")
            async def stored(request: Request, rid: str) -> Response:
                _, refused = await admit(request, form, "responses")
                return refused or engine.get_response(rid, request.method)

            @app.post(f"{prefix}/responses/{{rid}}/cancel", name=f"cancel_{form}")
            async def cancel(request: Request, rid: str) -> Response:
                _, refused = await admit(request, form, "responses")
                return refused or engine.cancel_response(rid)

            @app.get(f"{prefix}/responses/{{rid}}/input_items", name=f"items_{form}")
            async def items(request: Request, rid: str) -> Response:
                _, refused = await admit(request, form, "responses")
                return refused or engine.input_items(rid, dict(request.query_params))

            @app.get(f"{prefix}/models", name=f"models_{form}")
            async def models(request: Request) -> Response:
                _, refused = await admit(request, form, "chat")
                return refused or JSONResponse(common.model_list(config["deployments"]))

        routes()

    extra = {"prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}]}

    @app.post("/openai/v1/chat/completions")
    async def chat_v1(request: Request) -> Response:
        entry, refused = await admit(request, "v1", "chat")
        body = entry["body"] if isinstance(entry["body"], dict) else {}
        return refused or deployment_ok(entry, body.get("model")) or engine.chat(entry, extra)

    @app.post("/openai/deployments/{deployment}/chat/completions")
    async def chat_dated(request: Request, deployment: str) -> Response:
        entry, refused = await admit(request, "dated", "chat")
        # The URL names the deployment; Azure ignores the body's model here (AzureOpenAI(azure_deployment=)).
        return refused or deployment_ok(entry, deployment) or engine.chat(entry, extra)

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE", "PUT"])
    async def unknown(request: Request, path: str) -> Response:
        entry = await recorder.record(request)
        entry["problems"].append("unknown path")
        return azure_error(404, "404", "Resource not found")

    return app
