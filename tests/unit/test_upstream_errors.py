"""Upstream error bodies -> OpenAI-format errors."""

from __future__ import annotations

import json

import pytest

from modelyard.upstream_errors import upstream_error
from tests.unit.spec import check_spec


def vllm(message: str, status: int = 400, type_: str = "BadRequestError") -> bytes:
    return json.dumps({"object": "error", "message": message, "type": type_, "param": None, "code": status}).encode()


@pytest.mark.parametrize(
    ("status", "body", "want_status", "want_type", "want_code", "want_param", "message"),
    [
        # vLLM: integer codes are HTTP statuses, not error codes
        (400, vllm("temperature must be non-negative"), 400, "invalid_request_error", None, None, "temperature must"),
        (
            404,
            vllm("The model `x` does not exist.", 404, "NotFoundError"),
            404,
            "not_found_error",
            "not_found",
            None,
            "`x`",
        ),
        # OpenAI and Azure
        (
            400,
            {
                "error": {
                    "message": "Invalid 'top_p'.",
                    "type": "invalid_request_error",
                    "param": "top_p",
                    "code": "decimal_above_max_value",
                }
            },
            400,
            "invalid_request_error",
            "decimal_above_max_value",
            "top_p",
            "Invalid 'top_p'.",
        ),
        (
            401,
            {
                "error": {
                    "message": "Incorrect API key provided.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            401,
            "authentication_error",
            "invalid_api_key",
            None,
            "Incorrect API key",
        ),
        (
            429,
            b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}',
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
            None,
            "Rate limit",
        ),
        # OpenRouter: numeric code, provider metadata
        (
            402,
            {
                "error": {
                    "code": 402,
                    "message": "Insufficient credits",
                    "metadata": {"provider_name": "Lambda", "raw": "quota"},
                }
            },
            402,
            "invalid_request_error",
            None,
            None,
            "Insufficient credits (provider Lambda: quota)",
        ),
        # NIM / FastAPI
        (
            422,
            {"detail": [{"loc": ["body", "messages"], "msg": "field required", "type": "missing"}]},
            400,
            "invalid_request_error",
            None,
            None,
            "body.messages: field required",
        ),
        (400, {"detail": "Bad request: unknown field"}, 400, "invalid_request_error", None, None, "unknown field"),
        (
            500,
            {"error": "Triton inference failed"},
            502,
            "server_error",
            "upstream_error",
            None,
            "Triton inference failed",
        ),
        (403, {"message": "Forbidden"}, 403, "permission_error", "permission_denied", None, "Forbidden"),
        # not JSON
        (
            502,
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            502,
            "server_error",
            "upstream_error",
            None,
            "502 Bad Gateway",
        ),
        (503, "Service Unavailable", 503, "server_error", "upstream_unavailable", None, "Service Unavailable"),
        (504, None, 502, "server_error", "upstream_error", None, "HTTP 504"),
        (413, b"", 413, "invalid_request_error", "request_too_large", None, "HTTP 413"),
        (200, {"error": {"message": "provider died"}}, 502, "server_error", "upstream_error", None, "provider died"),
    ],
)
def test_mapping(status, body, want_status, want_type, want_code, want_param, message) -> None:
    err = upstream_error(status, body)
    assert (err.status, err.type, err.code, err.param) == (want_status, want_type, want_code, want_param)
    assert message in err.message
    check_spec(err.body(), "ErrorResponse")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, vllm("This model's maximum context length is 2048 tokens. However, you requested 2100 tokens.")),
        (400, vllm("The decoder prompt (length 3000) is longer than the maximum model length of 2048.")),
        (
            400,
            vllm(
                "'max_tokens' or 'max_completion_tokens' is too large: 64. This model's maximum context length is 2048"
            ),
        ),
        (400, {"error": {"message": "Too long", "type": "invalid_request_error", "code": "context_length_exceeded"}}),
        (400, {"error": {"code": 400, "message": "This endpoint's maximum context length is 8192 tokens."}}),
        (500, {"error": "Input length exceeds maximum allowed token size"}),
        (400, {"detail": "Prompt is too long: 9000 tokens > 8192"}),
    ],
)
def test_context_overflow(status, body) -> None:
    err = upstream_error(status, body)
    assert (err.status, err.code, err.param) == (400, "context_length_exceeded", "input")
    assert err.message.startswith("Your input exceeds the context window of this model.")


@pytest.mark.parametrize(
    "leak",
    [
        "Incorrect API key provided: sk-proj-abcdefghijklmnop1234.",
        "upstream rejected header Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "invalid key nvapi-AbCdEf0123456789_xyz",
        'bad request {"api_key": "hunter2hunter2"}',
        "api-key=0123456789abcdef0123456789abcdef rejected",
    ],
)
def test_credentials_are_redacted(leak: str) -> None:
    err = upstream_error(401, {"error": {"message": leak}})
    for secret in (
        "sk-proj-abcdefghijklmnop1234",
        "eyJhbGciOiJIUzI1NiJ9",
        "nvapi-AbCdEf0123456789_xyz",
        "hunter2",
        "0123456789abcdef0123",
    ):
        assert secret not in err.message
    assert "[redacted]" in err.message


def test_long_bodies_are_cut() -> None:
    err = upstream_error(500, b"x" * 100_000)
    assert len(err.message) < 2100


def test_body_is_not_what_we_expect() -> None:
    for body in (b"[1, 2]", b"null", b"\xff\xfe", {"error": {"code": 500}}, {"unexpected": True}):
        err = upstream_error(500, body)
        assert err.status == 502 and err.type == "server_error" and err.message
