"""OpenAI-format errors: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any

# HTTP status -> OpenAI error type, as OpenAI's own API reports them.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class APIError(Exception):
    """An error to be returned to the client in OpenAI's format."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def __repr__(self) -> str:
        return f"APIError({self.status}, {self.message!r}, param={self.param!r}, code={self.code!r})"


def invalid(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    """A 400 for a request the client must fix."""
    return APIError(400, message, param=param, code=code)


def unsupported(param: str, why: str = "") -> APIError:
    """A 400 for a parameter this backend cannot honour (never dropped silently)."""
    msg = f"Parameter '{param}' is not supported by this backend"
    return APIError(400, f"{msg}: {why}" if why else f"{msg}.", param=param, code="unsupported_parameter")
