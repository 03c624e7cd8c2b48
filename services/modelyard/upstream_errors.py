"""Upstream error bodies -> OpenAI-format errors with the status an OpenAI client expects.

Bodies seen in the wild: vLLM `{"object": "error", "message", "type", "param", "code": 400}`, OpenAI and
Azure `{"error": {"message", "type", "param", "code"}}`, OpenRouter `{"error": {"code": 402, "message",
"metadata": {"provider_name", "raw"}}}`, NIM and FastAPI `{"detail": "..." | [{"loc", "msg"}]}` or
`{"error": "..."}`, and plain text or HTML from proxies. Anything that looks like a credential is
redacted from the message before it reaches the client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from .errors import APIError

_MAX_MESSAGE = 2000
_CODES = {
    401: "invalid_api_key",
    403: "permission_denied",
    404: "not_found",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    502: "upstream_error",
    503: "upstream_unavailable",
}
_TOKENS = re.compile(r"(?i)\bbearer\s+[\w.~+/=-]+|\b(?:sk|nvapi)-[\w-]{6,}")  # header values, OpenAI/NVIDIA keys
_KEY_VALUES = re.compile(r"(?i)\b(api[-_ ]?key|authorization)([\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+")
_OVERFLOW = re.compile(
    r"(?i)context[ _-]?(length|window)|maximum model length|max_model_len|prompt is too long"
    r"|too many (input )?tokens|longer than the model|input (length|tokens?) exceeds?"
)


# A key as providers echo it back masked ("sk-abc*****wxyz"): never passed on to the client.
_MASKED_KEY = re.compile(r"[\w-]*\*{4,}[\w-]*")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the configured secrets, anything shaped like a credential and masked keys taken out:
    the one redaction pass every upstream error message goes through."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _KEY_VALUES.sub(r"\1\2[redacted]", _TOKENS.sub("[redacted]", text))
    return _MASKED_KEY.sub("[redacted]", text)


def _parse(body: bytes | dict[str, Any] | str | None) -> tuple[Any, str]:
    """The body as JSON (None if it is not), and as text."""
    if body is None:
        return None, ""
    if isinstance(body, dict):
        return body, ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        return orjson.loads(text), text
    except orjson.JSONDecodeError:
        return None, text


def _fields(data: Any, text: str) -> tuple[str, str | None, str | None]:
    """(message, param, code) from any of the known shapes; codes that are HTTP statuses are left out."""
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, str):
            return err, None, None
        if isinstance(err, dict):
            data = err
        message = data.get("message")
        detail = data.get("detail")
        if message is None and isinstance(detail, str):
            message = detail
        elif message is None and isinstance(detail, list):  # FastAPI validation errors
            message = "; ".join(
                f"{'.'.join(str(x) for x in d.get('loc', ()))}: {d.get('msg')}" if isinstance(d, dict) else str(d)
                for d in detail
            )
        meta = data.get("metadata")
        if isinstance(meta, dict) and meta.get("provider_name"):  # OpenRouter: which provider said so
            raw = meta.get("raw")
            message = f"{message} (provider {meta['provider_name']}{': ' + str(raw) if raw else ''})"
        param, code = data.get("param"), data.get("code")
        if message is not None:
            return str(message), param if isinstance(param, str) else None, code if isinstance(code, str) else None
    text = " ".join(text.split())
    return text, None, None


def _status(status: int) -> int:
    if status == 422:  # FastAPI's validation status; OpenAI says 400
        return 400
    if 400 <= status < 500:
        return status
    return 503 if status == 503 else 502


def upstream_error(status: int, body: bytes | dict[str, Any] | str | None, secrets: Iterable[str] = ()) -> APIError:
    """An upstream error reply in OpenAI's format.

    A context-length overflow is a 400 with code `context_length_exceeded` whatever the upstream said
    (where MODELYARD_CONTEXT_OVERFLOW is "incomplete" the serving layer answers with an incomplete Response).
    """
    data, text = _parse(body)
    message, param, code = _fields(data, text)
    message = redact(message.strip(), secrets)[:_MAX_MESSAGE]
    if _OVERFLOW.search(message) or code == "context_length_exceeded":
        return APIError(
            400,
            f"Your input exceeds the context window of this model. Upstream said: {message}",
            param="input",
            code="context_length_exceeded",
        )
    mapped = _status(status)
    if not message:
        message = f"The upstream returned HTTP {status} with no message."
    elif mapped >= 500:
        message = f"The upstream failed (HTTP {status}): {message}"
    return APIError(
        mapped, message, param=param, code=code or _CODES.get(mapped, "upstream_error" if mapped >= 500 else None)
    )
