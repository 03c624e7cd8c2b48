"""Errors in Anthropic's format on the Messages routes: `{"type": "error", "error": {"type", "message"}}`.

The adapter raises `errors.APIError` everywhere; this renders one as Anthropic's API would, keeping the
status (Anthropic's error types are per status, as in its API reference's error table).
"""

from __future__ import annotations

from typing import Any

from ..errors import APIError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",  # Anthropic documents request_too_large; the SDK types know no such type
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    return _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(err: APIError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(err.status), "message": err.message}}
