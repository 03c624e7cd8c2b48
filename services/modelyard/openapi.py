"""The adapter's /openapi.json, filled in where FastAPI cannot see: the generation routes read raw bodies (no
pydantic on the hot path), so their request bodies and replies are described here, compactly, after the
OpenAI spec (only the fields a fuzzer should vary; others are allowed). Every operation also documents its
error replies in OpenAI's format. Used by tests/unit/test_schemathesis.py."""

from __future__ import annotations

from typing import Any

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string", "minLength": 1},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
ERRORS = {"description": "An error in OpenAI's format", "content": {"application/json": {"schema": ERROR}}}
# Anthropic's error format, on /v1/messages (messages/errors.py).
ANTHROPIC_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string", "minLength": 1}},
        },
    },
}
ANTHROPIC_ERRORS = {
    "description": "An error in Anthropic's format",
    "content": {"application/json": {"schema": ANTHROPIC_ERROR}},
}

TEXT = {"type": "string", "maxLength": 200}
ROLE = {"type": "string", "enum": ["user", "assistant", "system", "developer"]}
PARAMETERS = {
    "type": "object",
    "properties": {"type": {"const": "object"}, "properties": {"type": "object"}},
    "required": ["type"],
}
SAMPLING = {
    "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
    "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    "stream": {"type": ["boolean", "null"]},
    "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string", "maxLength": 50}},
}

RESPONSES_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 40},
        "input": {
            "anyOf": [
                TEXT,
                {
                    "type": "array",
                    "maxItems": 5,
                    "items": {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {"type": {"const": "message"}, "role": ROLE, "content": TEXT},
                    },
                },
            ]
        },
        "instructions": {"type": ["string", "null"], "maxLength": 200},
        "max_output_tokens": {"type": ["integer", "null"], "minimum": 16, "maximum": 4096},
        "tool_choice": {"type": "string", "enum": ["auto", "none", "required"]},
        "tools": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "required": ["type", "name"],
                "properties": {
                    "type": {"const": "function"},
                    "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                    "description": TEXT,
                    "parameters": PARAMETERS,
                },
            },
        },
        **SAMPLING,
    },
}

CHAT_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 40},
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": 5,
            "items": {"type": "object", "required": ["role", "content"], "properties": {"role": ROLE, "content": TEXT}},
        },
        "max_tokens": {"type": ["integer", "null"], "minimum": 1, "maximum": 4096},
        "tools": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "required": ["type", "function"],
                "properties": {
                    "type": {"const": "function"},
                    "function": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                            "parameters": PARAMETERS,
                        },
                    },
                },
            },
        },
        **SAMPLING,
    },
}

RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["id", "object", "created_at", "status", "model", "output"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "response"},
        "created_at": {"type": "number"},
        "status": {
            "type": "string",
            "enum": ["completed", "incomplete", "failed", "in_progress", "queued", "cancelled"],
        },
        "model": {"type": "string"},
        "output": {"type": "array", "items": {"type": "object", "required": ["type"]}},
        "usage": {"type": ["object", "null"]},
    },
}
CHAT_COMPLETION: dict[str, Any] = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object", "required": ["index", "message", "finish_reason"]}},
    },
}
MESSAGES_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "max_tokens", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 40},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096},
        "system": {"type": "string", "maxLength": 200},
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": 5,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {"role": {"enum": ["user", "assistant"]}, "content": TEXT},
            },
        },
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "stream": {"type": "boolean"},
    },
}
MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "role", "content", "model", "stop_reason", "usage"],
    "properties": {
        "type": {"const": "message"},
        "role": {"const": "assistant"},
        "content": {"type": "array", "items": {"type": "object", "required": ["type"]}},
        "usage": {"type": "object", "required": ["input_tokens", "output_tokens"]},
    },
}
COUNT_REQUEST = {**MESSAGES_REQUEST, "required": ["model", "messages"]}
COUNT_REQUEST["properties"] = {
    k: v for k, v in MESSAGES_REQUEST["properties"].items() if k not in ("max_tokens", "stream")
}
TOKEN_COUNT = {"type": "object", "required": ["input_tokens"], "properties": {"input_tokens": {"type": "integer"}}}
# POST /v1/responses/input_tokens: a Responses request without what concerns generation alone.
_COUNTED = ("model", "input", "instructions", "tools", "tool_choice")
INPUT_TOKENS_REQUEST = {
    **RESPONSES_REQUEST,
    "properties": {k: v for k, v in RESPONSES_REQUEST["properties"].items() if k in _COUNTED},
}
INPUT_TOKENS = {
    "type": "object",
    "required": ["object", "input_tokens"],
    "properties": {"object": {"const": "response.input_tokens"}, "input_tokens": {"type": "integer"}},
}
# Replies that are one JSON object, never an event stream.
NO_STREAM = ("/v1/messages/count_tokens", "/v1/responses/input_tokens")
# One SSE event's data: a JSON object (a Responses event has a type; a chat chunk or a final error chunk),
# or chat's closing [DONE].
SSE_EVENT = {"anyOf": [{"type": "object"}, {"type": "string", "enum": ["[DONE]"]}]}


def annotate(schema: dict[str, Any]) -> dict[str, Any]:
    """Fill in the generation routes' bodies and replies, and every operation's error replies."""
    generation = {
        "/v1/responses": (RESPONSES_REQUEST, RESPONSE),
        "/v1/chat/completions": (CHAT_REQUEST, CHAT_COMPLETION),
        "/v1/messages": (MESSAGES_REQUEST, MESSAGE),
        "/v1/messages/count_tokens": (COUNT_REQUEST, TOKEN_COUNT),
        "/v1/responses/input_tokens": (INPUT_TOKENS_REQUEST, INPUT_TOKENS),
    }
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            op["operationId"] = f"{method}{path.replace('/', '_').replace('{', '').replace('}', '')}"  # unique
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's validation error shape: ours are OpenAI's (400)
            responses["default"] = ANTHROPIC_ERRORS if path.startswith("/v1/messages") else ERRORS
            if method == "post" and path in generation:
                request, reply = generation[path]
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": request}}}
                content: dict[str, Any] = {"application/json": {"schema": reply}}
                if path not in NO_STREAM:
                    content["text/event-stream"] = {"schema": SSE_EVENT}
                responses["200"] = {
                    "description": "The reply, or its event stream when stream is true",
                    "content": content,
                }
            if path == "/readyz":
                responses["503"] = {"description": "Not ready, or draining", "content": {"application/json": {}}}
            if path == "/metrics":
                responses["200"] = {"description": "Prometheus text", "content": {"text/plain": {}}}
    return schema
