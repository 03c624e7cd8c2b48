"""A structural check of client-supplied JSON Schemas (tool parameters, structured output).

An upstream given a malformed schema fails late and obscurely (vLLM's guided decoding raises a 500 or
hangs compiling it), so the keywords' shapes are checked here, as the JSON Schema meta-schema states
them. Semantics (regex dialects, unresolvable $refs) are left to the upstream.
"""

from __future__ import annotations

from typing import Any

from ..errors import invalid

_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_SUBSCHEMA = (
    "not", "additionalProperties", "additionalItems", "contains", "propertyNames", "if", "then", "else",
    "unevaluatedProperties", "unevaluatedItems",
)  # fmt: skip
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_COUNTS = (
    "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains",
    "maxContains",
)  # fmt: skip
_NUMBERS = ("minimum", "maximum", "multipleOf")
_STRINGS = ("$ref", "$id", "$schema", "pattern", "format", "title", "description")
_MAX_DEPTH = 64


def check_schema(schema: Any, param: str) -> None:
    """Raise a 400 naming `param` unless `schema` is a JSON object shaped as a JSON Schema."""
    if not isinstance(schema, dict):
        raise invalid(f"Invalid schema for '{param}': a JSON Schema must be a JSON object.", param, "invalid_type")
    problem = _problem(schema, "", 0)
    if problem:
        raise invalid(f"Invalid schema for '{param}': {problem}.", param, "invalid_schema")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _problem(schema: Any, at: str, depth: int) -> str | None:
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return f"{at or 'the schema'} must be an object or a boolean"
    if depth > _MAX_DEPTH:
        return f"{at} is nested more than {_MAX_DEPTH} levels deep"
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or not all(isinstance(k, str) and k in _TYPES for k in kinds):
            return f"{at}/type must be one of {sorted(_TYPES)} or a list of them"
    for key in _SCHEMA_MAPS:
        if key in schema:
            value = schema[key]
            if not isinstance(value, dict):
                return f"{at}/{key} must be an object"
            for name, sub in value.items():
                if problem := _problem(sub, f"{at}/{key}/{name}", depth + 1):
                    return problem
    for key in _SCHEMA_LISTS:
        if key in schema:
            value = schema[key]
            if not isinstance(value, list) or not value:
                return f"{at}/{key} must be a non-empty array"
            for i, sub in enumerate(value):
                if problem := _problem(sub, f"{at}/{key}/{i}", depth + 1):
                    return problem
    for key in _SUBSCHEMA:
        if key in schema and (problem := _problem(schema[key], f"{at}/{key}", depth + 1)):
            return problem
    if "items" in schema:
        items = schema["items"]
        listed = isinstance(items, list)  # draft 4's tuple form
        if not listed and not isinstance(items, dict | bool):
            return f"{at}/items must be a schema (an object or a boolean) or an array of schemas"
        for path, sub in [(f"{at}/items/{i}", s) for i, s in enumerate(items)] if listed else [(f"{at}/items", items)]:
            if problem := _problem(sub, path, depth + 1):
                return problem
    if "required" in schema:
        required = schema["required"]
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            return f"{at}/required must be an array of strings"
    if "enum" in schema and not isinstance(schema["enum"], list):
        return f"{at}/enum must be an array"
    for key in _COUNTS:
        if key in schema:
            value = schema[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return f"{at}/{key} must be a non-negative integer"
    for key in _NUMBERS:
        if key in schema and not _is_number(schema[key]):
            return f"{at}/{key} must be a number"
    for key in ("exclusiveMinimum", "exclusiveMaximum"):  # a number, or a boolean in draft 4
        if key in schema and not (_is_number(schema[key]) or isinstance(schema[key], bool)):
            return f"{at}/{key} must be a number (or, as in draft 4, a boolean)"
    for key in _STRINGS:
        if key in schema and not isinstance(schema[key], str):
            return f"{at}/{key} must be a string"
    return None


def strict_compatible(schema: Any) -> bool:
    """Can `schema` be enforced strictly, as OpenAI's strict mode defines it: every object closed
    (`additionalProperties: false`) with all its properties required. The Responses API uses strict
    validation for a function tool that does not say `strict` exactly when this holds."""
    return _strict_ok(schema, 0)


def _strict_ok(schema: Any, depth: int) -> bool:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return False
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    props = schema.get("properties")
    if "object" in kinds or props is not None:
        if schema.get("additionalProperties") is not False:
            return False
        props = props or {}
        if not isinstance(props, dict) or set(schema.get("required") or ()) != set(props):
            return False
    subs: list[Any] = list((props or {}).values()) if isinstance(props, dict) else []
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            subs.extend(schema[key].values())
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        if isinstance(schema.get(key), list):
            subs.extend(schema[key])
    if isinstance(schema.get("items"), dict):
        subs.append(schema["items"])
    return all(_strict_ok(sub, depth + 1) for sub in subs)
