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
# One SSE event's data: a JSON object (a Responses event has a type; a chat chunk or a final error chunk),
# or chat's closing [DONE].
SSE_EVENT = {"anyOf": [{"type": "object"}, {"type": "string", "enum": ["[DONE]"]}]}


def annotate(schema: dict[str, Any]) -> dict[str, Any]:
    """Fill in the generation routes' bodies and replies, and every operation's error replies."""
    generation = {
        "/v1/responses": (RESPONSES_REQUEST, RESPONSE),
        "/v1/chat/completions": (CHAT_REQUEST, CHAT_COMPLETION),
    }
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            op["operationId"] = f"{method}{path.replace('/', '_').replace('{', '').replace('}', '')}"  # unique
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's validation error shape: ours are OpenAI's (400)
            responses["default"] = ERRORS
            if method == "post" and path in generation:
                request, reply = generation[path]
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": request}}}
                content = {"application/json": {"schema": reply}, "text/event-stream": {"schema": SSE_EVENT}}
                responses["200"] = {
                    "description": "The reply, or its event stream when stream is true",
                    "content": content,
                }
            if path == "/readyz":
                responses["503"] = {"description": "Not ready, or draining", "content": {"application/json": {}}}
            if path == "/metrics":
                responses["200"] = {"description": "Prometheus text", "content": {"text/plain": {}}}
    return schema
