"""Tools a chat engine has no type for, offered as plain functions and mapped back (request.py, stream.py).

- `namespace` tools (Codex's multi-agent tools): each member is offered as `<namespace>__<name>`; a call
  comes back under its own name with `namespace` set, as the client sent it.
- `custom` (freeform) tools: offered as a function with one string argument, `input`; a call comes back
  as a `custom_tool_call` item whose `input` is that string. A grammar is given to the model in the
  description (it is not enforced).
"""

from __future__ import annotations

from typing import Any

import orjson

SEPARATOR = "__"
NAMESPACE_KEYS = frozenset({"type", "name", "description", "tools"})
CUSTOM_KEYS = frozenset({"type", "name", "description", "format", "defer_loading"})


def engine_name(space: str | None, name: str) -> str:
    """The function name the engine sees for `name` in namespace `space`."""
    return f"{space}{SEPARATOR}{name}" if space else name


def custom_function(name: str, description: str | None, fmt: dict[str, Any] | None) -> dict[str, Any]:
    """The chat function a custom tool is offered as."""
    text = description or ""
    if fmt and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        syntax = fmt.get("syntax") or "lark"
        text += f"\n\nThe input must follow this {syntax} grammar:\n{fmt['definition']}"
    parameters = {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The tool's input, as free text."}},
        "required": ["input"],
        "additionalProperties": False,
    }
    return {"name": name, "description": text.strip(), "parameters": parameters, "strict": True}


def custom_arguments(text: str) -> str:
    """A custom tool call's input as the function arguments the engine produced it in."""
    return orjson.dumps({"input": text}).decode()


def custom_input(arguments: str) -> str:
    """The function arguments of a custom tool call -> its free-text input (the raw text where the engine's
    arguments are not the one-string object it was offered)."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return value["input"]
    return arguments
