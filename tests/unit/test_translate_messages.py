"""Exact messages (issue N): a 400 for a wrong type or value names everything that is accepted there, not
half of it (`{"input": 42}` is not "'input' must be an array": a string is valid too)."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import APIError
from modelyard.translate import TranslateOptions, responses_to_chat
from modelyard.translate.sizes import check_sizes

TOOL = {"type": "function", "name": "f", "parameters": {"type": "object"}}
USER = {"role": "user", "content": "x"}


def call_output(output: Any) -> list[dict[str, Any]]:
    return [{"type": "function_call_output", "call_id": "c", "output": output}]


# (request, param, what the message must name)
CASES = [
    ({"input": 42}, "input", ["a string", "an array of input items", "a number"]),
    ({"instructions": 42}, "instructions", ["a string", "an array of input items"]),
    ({"input": [{"role": "user", "content": 42}]}, "input[0].content", ["a string", "an array of content parts"]),
    ({"input": call_output(42)}, "input[0].output", ["a string", "an array of input_text parts"]),
    ({"input": call_output([{"type": "x"}])}, "input[0].output[0].type", ["input_text"]),
    (
        {"input": [{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}]},
        "input[0].content[0].type",
        ["input_text", "output_text", "input_image", "input_audio"],
    ),
    (
        {"input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]}]},
        "input[0].content[0].type",
        ["output_text", "input_text", "refusal"],
    ),
    (
        {"input": [{"role": "system", "content": [{"type": "refusal", "refusal": "no"}]}]},
        "input[0].content[0].type",
        ["input_text", "output_text"],
    ),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].input_audio", []),
    ({"input": [{"type": "x"}]}, "input[0].type", ["message", "function_call", "function_call_output", "reasoning"]),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", ["user", "assistant", "system", "developer"]),
    ({"input": "x", "tools": [{"type": "x"}]}, "tools[0].type", ["function"]),
    ({"input": "x", "tools": [{"type": "function", "name": ""}]}, "tools[0].name", ["non-empty string"]),
    ({"input": "x", "tool_choice": "any"}, "tool_choice", ["auto", "none", "required", '"function"']),
    ({"input": "x", "tools": [TOOL], "tool_choice": {"type": "function", "name": "g"}}, "tool_choice.name", ["f"]),
    ({"input": "x", "truncation": "x"}, "truncation", ["disabled", "auto"]),
    ({"input": "x", "include": ["x"]}, "include[0]", ["message.output_text.logprobs", "file_search_call.results"]),
    ({"input": "x", "text": {"format": {"type": "x"}}}, "text.format.type", ["text", "json_object", "json_schema"]),
    ({"input": "x", "text": {"format": {}}}, "text.format.type", []),
    ({"input": "x", "reasoning": {"effort": "x"}}, "reasoning.effort", ["none", "minimal", "low", "medium", "high"]),
    ({"input": "x", "reasoning": {"summary": "x"}}, "reasoning.summary", ["auto", "concise", "detailed"]),
    ({"input": "x", "temperature": 3}, "temperature", ["0", "2"]),
    ({"input": "x", "top_p": 2}, "top_p", ["0", "1"]),
    ({"input": "x", "top_logprobs": 21}, "top_logprobs", ["0", "20"]),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens", ["at least 1"]),
    ({"input": "x", "metadata": {str(i): "v" for i in range(17)}}, "metadata", ["16"]),
    ({"input": "x", "stream_options": {"include_usage": True}}, "stream_options.include_usage", []),
    (
        {"input": "x", "tools": [{**TOOL, "parameters": {"type": "object", "items": 5}}]},
        "tools[0].parameters",
        ["an object or a boolean", "an array of schemas"],
    ),
    (
        {"input": "x", "tools": [{**TOOL, "parameters": {"type": "number", "exclusiveMinimum": "0"}}]},
        "tools[0].parameters",
        ["a number", "a boolean"],
    ),
]


@pytest.mark.parametrize(("request_", "param", "names"), CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_message_names_what_is_accepted(request_: dict[str, Any], param: str, names: list[str]) -> None:
    with pytest.raises(APIError) as err:
        responses_to_chat({"model": "m", **request_}, TranslateOptions())
    assert err.value.status == 400 and err.value.param == param, err.value.message
    assert all(name in err.value.message for name in names), err.value.message


SIZE_CASES = [
    ({"input": 42}, "input", "input", ["a string", "an array of input items", "a number"]),
    ({"messages": "hi"}, "messages", "messages", ["an array of messages", "a string"]),
    ({"input": "x", "tools": {}}, "input", "tools", ["an array of tools", "an object"]),
    ({"input": "x", "stream": "yes"}, "input", "stream", ["a boolean", "a string"]),
    ({"messages": [], "tools": ["x"]}, "messages", "tools[0]", ["an object", "a string"]),
    ({"messages": [], "tools": [{"function": 1}]}, "messages", "tools[0].function", ["an object", "a number"]),
]


@pytest.mark.parametrize(("body", "items_key", "param", "names"), SIZE_CASES, ids=[c[2] for c in SIZE_CASES])
def test_size_check_messages_name_what_is_accepted(
    body: dict[str, Any], items_key: str, param: str, names: list[str]
) -> None:
    with pytest.raises(APIError) as err:
        check_sizes(body, 0, 0, items_key)
    assert err.value.status == 400 and err.value.param == param and err.value.code == "invalid_type"
    assert all(name in err.value.message for name in names), err.value.message
