"""Azure OpenAI: the v1 surface or the dated one, `api-key` or Entra ID auth, and Azure's quirks in one place.

URL forms (AZURE_OPENAI_URL_STYLE), as the openai SDK's `OpenAI(base_url=.../openai/v1/)` and
`AzureOpenAI(api_version=...)` send them:
  v1     {endpoint}/openai/v1/responses, {endpoint}/openai/v1/chat/completions
  dated  {endpoint}/openai/responses?api-version=...,
         {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...
The deployment is the `model`; AZURE_OPENAI_DEPLOYMENT_MAP (JSON) maps public model names to deployments and
AZURE_OPENAI_DEPLOYMENT, where set, serves every request.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Generator
from typing import Any
from urllib.parse import quote

import httpx

from ..config import AzureSettings
from ..errors import APIError
from ..translate import TranslateOptions
from .base import NATIVE_ROUTES, Backend

DATED_API_VERSION = "2025-04-01-preview"  # the first dated version with both /responses and chat
# Deployments named like reasoning models take max_completion_tokens on the chat path; others can be listed.
REASONING_NAME = re.compile(r"^(o\d|gpt-5)", re.IGNORECASE)


class TokenFile(httpx.Auth):
    """An Entra ID bearer token read from a file, read again whenever the file changes (a sidecar renews it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime = -1
        self.token = ""

    def current(self) -> str:
        try:
            mtime = os.stat(self.path).st_mtime_ns
            if mtime != self._mtime:
                with open(self.path, encoding="utf-8") as fh:
                    self.token = fh.read().strip()
                self._mtime = mtime
        except OSError as exc:
            msg = f"AZURE_OPENAI_AD_TOKEN_FILE cannot be read ({exc.strerror})."
            raise APIError(500, msg, code="credentials_unavailable") from None
        return self.token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["authorization"] = f"Bearer {self.current()}"
        yield request


class Azure(Backend):
    name = "azure"

    def __init__(self, settings) -> None:
        cfg: AzureSettings = settings.of(AzureSettings)
        self.style = cfg.url_style
        # A chat-only deployment: /v1/responses goes through the translation core over chat completions.
        self.native_responses = self.stored_responses = cfg.native_responses
        # Azure's Responses API has input_tokens and compact too, under the same URL form as /responses.
        self.responses_routes = NATIVE_ROUTES if cfg.native_responses else frozenset()
        self.api_version = cfg.api_version or (DATED_API_VERSION if self.style == "dated" else "")
        self.deployment = cfg.deployment
        self.deployment_map = cfg.deployment_map
        self.reasoning = cfg.reasoning_deployments
        self.ad_token = cfg.ad_token
        self.token_file = TokenFile(cfg.ad_token_file) if cfg.ad_token_file else None
        super().__init__(settings)

    def translate_options(self) -> TranslateOptions:
        # Chat mode: Azure's chat completions take `verbosity` (GPT-5 deployments).
        return dataclasses.replace(super().translate_options(), verbosity_param="verbosity")

    # -- where and how requests go ---------------------------------------------------------
    def base_url(self) -> str:
        endpoint = self.settings.upstream_url.removesuffix("/openai/v1").removesuffix("/openai")
        return f"{endpoint}/openai/v1" if self.style == "v1" else f"{endpoint}/openai"

    def params(self) -> dict[str, str]:
        return {"api-version": self.api_version} if self.api_version else {}

    def headers(self) -> dict[str, str]:
        # An Entra ID token wins over a key; the token file is applied per request (auth).
        if self.token_file:
            return {}
        if self.ad_token:
            return {"authorization": f"Bearer {self.ad_token}"}
        key = self.settings.api_key
        return {"api-key": key} if key else {}

    def auth(self) -> httpx.Auth | None:
        return self.token_file

    def secrets(self) -> list[str]:
        return [self.settings.api_key, self.ad_token, self.token_file.token if self.token_file else ""]

    def deployment_for(self, model: Any) -> str:
        return self.deployment or self.deployment_map.get(str(model or ""), "") or str(model or "")

    def chat_url(self, body: dict[str, Any]) -> str:
        if self.style == "dated":
            return f"/deployments/{quote(self.deployment_for(body.get('model')), safe='')}/chat/completions"
        return self.chat_path

    # -- Azure's quirks, all of them here ------------------------------------------------------
    def prepare_chat(self, body: dict[str, Any]) -> None:
        super().prepare_chat(body)
        body["model"] = self.deployment_for(body.get("model"))
        if body.get("tools"):
            body["tools"] = [nested_tool(t) for t in body["tools"]]
        if isinstance(body.get("tool_choice"), dict):
            body["tool_choice"] = nested_tool(body["tool_choice"])
        # o-series and gpt-5 deployments refuse max_tokens and want max_completion_tokens.
        if "max_tokens" in body and self.is_reasoning(body["model"]):
            body.setdefault("max_completion_tokens", body.pop("max_tokens"))
        # Usage always comes back: a stream reports it only when asked to.
        if body.get("stream"):
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}

    def prepare_responses(self, body: dict[str, Any]) -> None:
        body["model"] = self.deployment_for(body.get("model"))
        if body.get("tools"):
            body["tools"] = [flat_tool(t) for t in body["tools"]]
        if isinstance(body.get("tool_choice"), dict):
            body["tool_choice"] = flat_tool(body["tool_choice"])
        if isinstance(body.get("input"), list):
            for item in body["input"]:
                # Azure refuses tool-call items replayed as input without a status, or with status null.
                if isinstance(item, dict) and item.get("type") in STATUS_ITEMS and not item.get("status"):
                    item["status"] = "completed"

    def is_reasoning(self, deployment: str) -> bool:
        return deployment in self.reasoning or bool(REASONING_NAME.match(deployment))


STATUS_ITEMS = ("function_call", "function_call_output")


def flat_tool(tool: Any) -> Any:
    """Chat's nested `{"type": "function", "function": {...}}` as the Responses API's flat function tool."""
    if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        return {"type": "function", **tool["function"]}
    return tool


def nested_tool(tool: Any) -> Any:
    """The Responses API's flat function tool (or tool_choice) in chat's nested shape."""
    if isinstance(tool, dict) and tool.get("type") == "function" and "function" not in tool and "name" in tool:
        return {"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}}
    return tool


BACKEND = Azure
