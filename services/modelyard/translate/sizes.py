"""Bounds on what one request may carry, checked before any translation work (and on chat requests, which
are relayed unchecked otherwise): the list fields' types and lengths, `stream`, chat tools' schemas."""

from __future__ import annotations

from typing import Any

from ..errors import invalid
from .request import type_error
from .schema import check_schema

# What each list field holds, as its 400 says it.
_EXPECTED = {
    "input": "a string or an array of input items",
    "messages": "an array of messages",
    "tools": "an array of tools",
}


def check_sizes(body: dict[str, Any], max_items: int, max_tools: int, items_key: str) -> None:
    """A 400 naming the field, for `items_key` ("input" or "messages") and `tools` above their limits
    (MODELYARD_MAX_INPUT_ITEMS, MODELYARD_MAX_TOOLS; 0: none) or of the wrong type."""
    for key, limit, setting in (
        (items_key, max_items, "MODELYARD_MAX_INPUT_ITEMS"),
        ("tools", max_tools, "MODELYARD_MAX_TOOLS"),
    ):
        value = body.get(key)
        if value is None or (key == "input" and isinstance(value, str)):
            continue
        if not isinstance(value, list):
            raise type_error(key, _EXPECTED[key], value)
        if limit and len(value) > limit:
            msg = f"'{key}' has {len(value)} entries; at most {limit} are allowed ({setting})."
            raise invalid(msg, param=key, code="array_above_max_length")
    if body.get("stream") not in (None, True, False):  # a truthy list would otherwise start a stream
        raise type_error("stream", "a boolean", body["stream"])
    if items_key == "messages":  # chat tools go to the engine as they are: a bad schema is a 400 here, not its 500
        for i, tool in enumerate(body.get("tools") or []):
            if not isinstance(tool, dict):
                raise type_error(f"tools[{i}]", "an object", tool)
            if not isinstance(tool.get("function", {}), dict):
                raise type_error(f"tools[{i}].function", "an object", tool["function"])
            nested = "function" in tool  # some backends also take Responses' flat tools here
            fn = tool["function"] if nested else tool
            if fn.get("parameters") is not None:
                check_schema(
                    fn["parameters"], f"tools[{i}].function.parameters" if nested else f"tools[{i}].parameters"
                )
