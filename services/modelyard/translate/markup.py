"""Tool-call markup left in content: `<tool_call>{"name": …, "arguments": …}</tool_call>` (Hermes style, as
vLLM's hermes parser and SmolLM2's template write it) that the engine's tool parser did not turn into
tool calls, typically because the generation was cut short inside a call and its JSON does not parse.
"""

from __future__ import annotations

import re

import orjson

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_NAME = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)')
_ARGUMENTS = re.compile(r'"(?:arguments|parameters)"\s*:\s*')


def _unescape(text: str) -> str:
    try:
        return orjson.loads(f'"{text}"')
    except orjson.JSONDecodeError:
        return text


def markup_calls(text: str) -> list[tuple[str, str, bool]]:
    """The calls in `text` (which starts with CALL_OPEN after whitespace), in order, as (name, arguments,
    complete): a call whose JSON is whole gives its arguments re-serialized as a string; one cut short
    gives the arguments as far as they arrived."""
    calls = []
    for block in text.split(CALL_OPEN)[1:]:
        body = block.partition(CALL_CLOSE)[0].strip()
        try:
            call = orjson.loads(body)
        except orjson.JSONDecodeError:
            call = None
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            args = call.get("arguments", call.get("parameters", {}))
            calls.append((call["name"], args if isinstance(args, str) else orjson.dumps(args).decode(), True))
            continue
        name = _NAME.match(body)
        arguments = _ARGUMENTS.search(body)
        calls.append((_unescape(name.group(1)) if name else "", body[arguments.end() :] if arguments else "", False))
    return calls
