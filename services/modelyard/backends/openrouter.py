"""OpenRouter: chat completions upstream (Responses through the translation core by default, or OpenRouter's
stateless native Responses endpoint with MODELYARD_RESPONSES_MODE=native), its attribution headers, its
routing and reasoning options passed through, and its error bodies mapped to OpenAI's format.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from ..config import OpenRouterSettings
from ..errors import APIError, unsupported
from ..translate import TranslateOptions
from ..upstream import Reply
from .base import Backend

# Fields of a Responses request that are OpenRouter's own: carried onto the chat request as they are.
# (`reasoning` goes through the translation, checked as on every backend, as OpenRouter's reasoning object.)
EXTRAS = ("provider",)
# OpenRouter's reasoning options beyond effort: passed on in its chat `reasoning` object.
REASONING_EXTRAS = frozenset({"max_tokens", "exclude", "enabled"})
# OpenRouter's HTTP status -> the OpenAI error code a client's retry logic knows.
CODES = {
    400: "invalid_request_error",
    401: "invalid_api_key",
    402: "insufficient_quota",
    403: "content_filter",
    404: "model_not_found",
    408: "upstream_timeout",
    429: "rate_limit_exceeded",
    502: "upstream_provider_error",
    503: "no_provider_available",
}


class OpenRouter(Backend):
    name = "openrouter"

    def __init__(self, settings) -> None:
        self.own: OpenRouterSettings = settings.of(OpenRouterSettings)
        self.native_responses = self.own.native_responses  # stateless either way: nothing stored to relay
        super().__init__(settings)

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        for value, header in ((self.own.http_referer, "http-referer"), (self.own.x_title, "x-title")):
            if value:
                headers[header] = value
        return headers

    def translate_options(self) -> TranslateOptions:
        return dataclasses.replace(
            super().translate_options(), reasoning_param="reasoning", reasoning_extras=REASONING_EXTRAS
        )

    def take_extras(self, body: dict[str, Any]) -> dict[str, Any]:
        self.pin_sampling(body, ("temperature", "top_p"))  # as the base does: the echo shows the pins
        return {key: body.pop(key) for key in EXTRAS if key in body}

    def prepare_responses(self, body: dict[str, Any]) -> None:
        # OpenRouter's Responses API is stateless: refuse what needs a stored response, by name.
        if body.get("previous_response_id"):
            raise unsupported(
                "previous_response_id", "OpenRouter's Responses API is stateless; send the whole conversation as input."
            )
        if body.get("store") is True:
            raise unsupported(
                "store",
                "OpenRouter's Responses API is stateless and stores nothing; send store: false or leave it out.",
            )
        if body.get("conversation"):
            raise unsupported(
                "conversation", "OpenRouter's Responses API is stateless; send the whole conversation as input."
            )

    def error(self, status: int, content: bytes | dict[str, Any]) -> APIError:
        """`{"error": {"code": 401, "message": ..., "metadata": {...}}}` in OpenAI's format."""
        body = self.loads(content)
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict) or "message" not in err:
            return super().error(status, content)
        code = err.get("code")
        # The HTTP status is error.code; an error inside a 200 reply or stream carries only the latter.
        if isinstance(code, int) and 400 <= code < 600:
            status = code
        elif status < 400:
            status = 502
        message = str(err.get("message") or "OpenRouter returned an error.")
        meta = err.get("metadata") if isinstance(err.get("metadata"), dict) else {}
        if meta.get("provider_name") or meta.get("raw"):
            raw = meta.get("raw")
            detail = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
            message += f" (upstream provider {meta.get('provider_name') or 'unknown'}: {detail[:1000]})"
        if meta.get("reasons"):
            message += f" (flagged: {', '.join(map(str, meta['reasons']))})"
        return APIError(status, self.redact(message), code=code if isinstance(code, str) else CODES.get(status))

    def reply_error(self, reply: Reply) -> APIError | None:
        # Once a model has started, OpenRouter answers 200 and puts any error in the body.
        body = reply.json
        if isinstance(body, dict) and isinstance(body.get("error"), dict) and "choices" not in body:
            return self.error(200, body)
        return None


BACKEND = OpenRouter
