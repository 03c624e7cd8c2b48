"""Responses request -> Chat Completions request: what is sent, and every 400."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.errors import APIError
from modelyard.translate import ChatRequest, TranslateOptions, responses_to_chat

OPTS = TranslateOptions()
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {"type": "function", "name": "get_weather", "description": "Weather.", "parameters": SCHEMA, "strict": True}


def chat(opts: TranslateOptions = OPTS, **request: Any) -> ChatRequest:
    return responses_to_chat({"model": "m", **request}, opts)


def messages(input: Any, opts: TranslateOptions = OPTS, **request: Any) -> list[dict]:
    return chat(opts, input=input, **request).body["messages"]


def refused(request: dict, opts: TranslateOptions = OPTS) -> APIError:
    with pytest.raises(APIError) as err:
        responses_to_chat(request, opts)
    assert err.value.status == 400 and err.value.type == "invalid_request_error"
    return err.value


# -- what is sent ------------------------------------------------------------------------------------------------
def test_string_input() -> None:
    assert chat(input="Hi").body == {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


def test_instructions_lead() -> None:
    assert messages("Hi", instructions="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    listed = [{"role": "developer", "content": "Rules."}]
    assert messages("Hi", instructions=listed)[0] == {"role": "system", "content": "Rules."}


def test_message_items_with_and_without_type() -> None:
    items = [
        {"role": "system", "content": "S"},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "U"}],
            "id": "x",
            "status": "completed",
        },
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_1",
            "status": "completed",
            "content": [{"type": "output_text", "text": "A", "annotations": []}, {"type": "output_text", "text": "B"}],
        },
    ]
    assert messages(items) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "text", "text": "U"}]},
        {"role": "assistant", "content": "AB"},
    ]


@pytest.mark.parametrize("role", ["developer", "system"])
def test_developer_role(role: str) -> None:
    opts = TranslateOptions(developer_role=role)
    assert messages([{"role": "developer", "content": "D"}], opts) == [{"role": role, "content": "D"}]


def test_images() -> None:
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
    ]
    assert messages([{"role": "user", "content": content}])[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]


def test_audio() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    assert messages([{"role": "user", "content": [part]}])[0]["content"] == [part]


def test_assistant_refusal_in_history() -> None:
    content = [{"type": "refusal", "refusal": "I can't."}]
    assert messages([{"role": "assistant", "content": content}]) == [{"role": "assistant", "content": "I can't."}]


def test_function_calls_merge_into_the_assistant_message() -> None:
    items = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"city": "Paris"}', "id": "fc_1"},
        {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"city": "Rome"}', "status": "completed"},
        {"type": "function_call_output", "call_id": "c1", "output": "18C"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "21C"}]},
        {"type": "function_call", "call_id": "c3", "name": "w", "arguments": "{}"},
    ]
    assert messages(items) == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"city": "Paris"}'}},
                {"id": "c2", "type": "function", "function": {"name": "w", "arguments": '{"city": "Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "21C"}]},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c3", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
    ]


REASONING_TURN = [
    {"role": "user", "content": "Q1"},
    {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "think 1"}]},
    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    {
        "type": "reasoning",
        "id": "rs_2",
        "summary": [{"type": "summary_text", "text": "sum 2"}],
        "encrypted_content": None,
    },
    {"role": "assistant", "content": "A1"},
    {"type": "reasoning", "id": "rs_3", "summary": [{"type": "summary_text", "text": "stray"}]},
    {"role": "user", "content": "Q2"},
]


def test_reasoning_history_dropped_by_default() -> None:
    sent = messages(REASONING_TURN)
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert not any("reasoning_content" in m for m in sent)


def test_reasoning_history_sent() -> None:
    sent = messages(REASONING_TURN, TranslateOptions(reasoning_history="send"))
    assert [m.get("reasoning_content") for m in sent] == [None, "think 1", None, "sum 2", None]


def test_sampling_and_limits() -> None:
    body = chat(input="x", temperature=0.2, top_p=0.5, max_output_tokens=64, user="u", stream=True).body
    assert body | {"messages": None} == {
        "model": "m",
        "messages": None,
        "temperature": 0.2,
        "top_p": 0.5,
        "max_tokens": 64,
        "user": "u",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    opts = TranslateOptions(max_tokens_param="max_completion_tokens")
    assert chat(opts, input="x", max_output_tokens=64).body["max_completion_tokens"] == 64


def test_stream_options_are_always_ours() -> None:
    body = chat(input="x", stream=True, stream_options={"include_obfuscation": False}).body
    assert body["stream_options"] == {"include_usage": True}
    assert "stream" not in chat(input="x", stream=False).body


def test_tools_and_tool_choice() -> None:
    body = chat(
        input="x", tools=[TOOL], tool_choice={"type": "function", "name": "get_weather"}, parallel_tool_calls=False
    ).body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather.", "parameters": SCHEMA, "strict": True},
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    for choice in ("auto", "none", "required"):
        assert chat(input="x", tools=[TOOL], tool_choice=choice).body["tool_choice"] == choice
    bare = chat(input="x", tools=[{"type": "function", "name": "f"}], tool_choice="none", parallel_tool_calls=True).body
    assert bare["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert chat(input="x", tool_choice="auto", parallel_tool_calls=True).body.keys() == {"model", "messages"}


CLOSED = {**SCHEMA, "additionalProperties": False}
NESTED = {
    "type": "object",
    "properties": {"where": {**CLOSED}, "days": {"type": "array", "items": {"type": "integer"}}},
    "required": ["where", "days"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("parameters", "strict"),
    [
        (CLOSED, True),  # closed, all required: strict, as the Responses API does when `strict` is left out
        (NESTED, True),
        (SCHEMA, None),  # open object: the Responses API falls back to non-strict
        ({**CLOSED, "required": []}, None),  # an optional property is not strict-compatible
        ({**NESTED, "properties": {**NESTED["properties"], "where": SCHEMA}}, None),  # an open nested object
        ({"type": "object", "properties": {}, "additionalProperties": False}, True),
    ],
)
def test_omitted_strict_is_strict_where_the_schema_allows(parameters: dict, strict: bool | None) -> None:
    tool = {"type": "function", "name": "f", "parameters": parameters}
    [sent] = chat(input="x", tools=[tool]).body["tools"]
    assert sent["function"].get("strict") == strict
    # An explicit value always wins.
    [off] = chat(input="x", tools=[{**tool, "strict": False}]).body["tools"]
    assert off["function"]["strict"] is False


def test_text_formats() -> None:
    assert "response_format" not in chat(input="x", text={"format": {"type": "text"}}).body
    assert chat(input="x", text={"format": {"type": "json_object"}}).body["response_format"] == {"type": "json_object"}
    fmt = {"type": "json_schema", "name": "p", "schema": SCHEMA, "strict": True, "description": "A person."}
    assert chat(input="x", text={"format": fmt}).body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "p", "description": "A person.", "schema": SCHEMA, "strict": True},
    }


def test_reasoning_effort_and_summary() -> None:
    body = chat(input="x", reasoning={"effort": "high", "summary": "auto"}).body
    assert body["reasoning_effort"] == "high" and "reasoning" not in body


def test_logprobs() -> None:
    assert chat(input="x", top_logprobs=3).body | {"messages": 0} == {
        "model": "m",
        "messages": 0,
        "logprobs": True,
        "top_logprobs": 3,
    }
    body = chat(input="x", include=["message.output_text.logprobs", "web_search_call.results"]).body
    assert body["logprobs"] is True and "top_logprobs" not in body


def test_accepted_and_not_sent() -> None:
    body = chat(
        input="x",
        metadata={"k": "v"},
        store=False,
        truncation="disabled",
        background=False,
        previous_response_id=None,
        stream_options=None,
        text={"format": None, "verbosity": None},
    ).body
    assert body.keys() == {"model", "messages"}


def test_passed_through_by_name() -> None:
    body = chat(input="x", service_tier="flex", prompt_cache_key="k", safety_identifier="s").body
    assert (body["service_tier"], body["prompt_cache_key"], body["safety_identifier"]) == ("flex", "k", "s")


def test_empty_input_list_with_instructions() -> None:
    assert messages([], instructions="I") == [{"role": "system", "content": "I"}]


def test_the_request_is_left_as_it_was() -> None:
    request = {"model": "m", "input": [*REASONING_TURN], "tools": [TOOL], "text": {"format": {"type": "json_object"}}}
    before = copy.deepcopy(request)
    responses_to_chat(request, TranslateOptions(reasoning_history="send"))
    assert request == before


# -- unsupported: 400 by name, or dropped and reported when tolerated ---------------------------------------------
UNSUPPORTED = [
    ({"background": True}, "background", "background"),
    ({"previous_response_id": "resp_1"}, "previous_response_id", "previous_response_id"),
    ({"conversation": "conv_1"}, "conversation", "conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt", "prompt"),
    ({"max_tool_calls": 3}, "max_tool_calls", "max_tool_calls"),
    ({"truncation": "auto"}, "truncation", "truncation"),
    ({"include": ["reasoning.encrypted_content"]}, "include[0]", "include"),
    ({"text": {"verbosity": "low"}}, "text.verbosity", "text.verbosity"),
    ({"reasoning": {"mode": "pro"}}, "reasoning.mode", "reasoning.mode"),
    ({"tools": [TOOL, {"type": "web_search"}]}, "tools[1].type", "tools.type"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}, "tools[0].type", "tools.type"),
    ({"tools": [{"type": "mcp", "server_label": "x"}]}, "tools[0].type", "tools.type"),
    ({"tools": [{"type": "custom", "name": "x"}]}, "tools[0].type", "tools.type"),
    ({"tools": [{**TOOL, "defer_loading": True}]}, "tools[0].defer_loading", "tools.defer_loading"),
    ({"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}}, "tool_choice", "tool_choice"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice", "tool_choice"),
    (
        {"input": [{"type": "item_reference", "id": "msg_1"}, {"role": "user", "content": "x"}]},
        "input[0].type",
        "input.type",
    ),
    (
        {"input": [{"type": "web_search_call", "id": "ws"}, {"role": "user", "content": "x"}]},
        "input[0].type",
        "input.type",
    ),
    (
        {
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_file", "file_id": "f"}, {"type": "input_text", "text": "x"}],
                }
            ]
        },
        "input[0].content[0].type",
        "input.content.type",
    ),
    (
        {
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "file_id": "f"}, {"type": "input_text", "text": "x"}],
                }
            ]
        },
        "input[0].content[0].file_id",
        "input.content.file_id",
    ),
    (
        {
            "input": [
                {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": "u"}]}
            ]
        },
        "input[0].output[0].type",
        "input.output.type",
    ),
    ({"context_management": [{"type": "compaction"}]}, "context_management", "context_management"),
    ({"brand_new_param": 1}, "brand_new_param", "brand_new_param"),
]


@pytest.mark.parametrize(("extra", "param", "key"), UNSUPPORTED, ids=[u[1] for u in UNSUPPORTED])
def test_unsupported_is_refused_by_name(extra: dict, param: str, key: str) -> None:
    err = refused({"model": "m", "input": "x", **extra})
    assert err.param == param
    assert err.code == ("unknown_parameter" if key == "brand_new_param" else "unsupported_parameter")
    if err.code == "unsupported_parameter":
        assert f"tolerate '{key}'" in err.message


@pytest.mark.parametrize(("extra", "param", "key"), UNSUPPORTED, ids=[u[1] for u in UNSUPPORTED])
def test_tolerated_is_dropped_and_reported(extra: dict, param: str, key: str) -> None:
    out = responses_to_chat({"model": "m", "input": "x", **extra}, TranslateOptions(tolerate_params=frozenset({key})))
    assert out.dropped == [param]
    assert not set(out.body) & {key, "background", "truncation", "include", "tool_choice", "brand_new_param"}
    assert out.body["messages"]


def test_dropping_a_built_in_tool_keeps_the_function_tools() -> None:
    opts = TranslateOptions(tolerate_params=frozenset({"tools.type"}))
    out = chat(opts, input="x", tools=[{"type": "web_search"}, TOOL, {"type": "code_interpreter", "container": "auto"}])
    assert [t["function"]["name"] for t in out.body["tools"]] == ["get_weather"]
    assert out.dropped == ["tools[0].type", "tools[2].type"]


# -- invalid: 400 naming the param --------------------------------------------------------------------------------
INVALID = [
    ({"input": "x"}, "model", "missing_required_parameter"),
    ({"model": 5, "input": "x"}, "model", "invalid_type"),
    ({"model": "m"}, "input", "empty_input"),
    ({"model": "m", "input": []}, "input", "empty_input"),
    ({"model": "m", "input": 5}, "input", "invalid_type"),
    ({"model": "m", "input": ["x"]}, "input[0]", "invalid_type"),
    ({"model": "m", "input": [{"content": "x"}]}, "input[0].type", "missing_required_parameter"),
    ({"model": "m", "input": [{"type": 3}]}, "input[0].type", "invalid_type"),
    ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role", "invalid_value"),
    ({"model": "m", "input": [{"type": "message", "content": "x"}]}, "input[0].role", "missing_required_parameter"),
    ({"model": "m", "input": [{"role": "user"}]}, "input[0].content", "missing_required_parameter"),
    ({"model": "m", "input": [{"role": "user", "content": 7}]}, "input[0].content", "invalid_type"),
    (
        {"model": "m", "input": [{"role": "user", "content": [{"type": "output_audio"}]}]},
        "input[0].content[0].type",
        "invalid_value",
    ),
    (
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
        "input[0].content[0].text",
        "invalid_type",
    ),
    (
        {"model": "m", "input": [{"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}]},
        "input[0].content[0].type",
        "invalid_value",
    ),
    (
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
        "input[0].content[0].image_url",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}]},
        "input[0].content[0].input_audio.format",
        "invalid_type",
    ),
    ({"model": "m", "input": [{"role": "user", "content": "x"}, {"type": "funky"}]}, "input[1].type", "invalid_value"),
    ({"model": "m", "input": "x", "tools": [{"type": "funky"}]}, "tools[0].type", "invalid_value"),
    (
        {"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
        "input[0].call_id",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]},
        "input[0].name",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
        "input[0].arguments",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
        "input[0].arguments",
        "invalid_type",
    ),
    (
        {"model": "m", "input": [{"type": "function_call_output", "output": "x"}]},
        "input[0].call_id",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]},
        "input[0].output",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 1}]},
        "input[0].output",
        "invalid_type",
    ),
    (
        {"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "x"}]}]},
        "input[0].output[0].type",
        "invalid_value",
    ),
    ({"model": "m", "input": [{"type": "reasoning", "summary": "no"}]}, "input[0].summary", "invalid_type"),
    (
        {"model": "m", "input": [{"type": "reasoning", "summary": [{"text": 1}]}]},
        "input[0].summary[0].text",
        "invalid_type",
    ),
    ({"model": "m", "input": "x", "instructions": 3}, "instructions", "invalid_type"),
    ({"model": "m", "input": "x", "temperature": "hot"}, "temperature", "invalid_type"),
    ({"model": "m", "input": "x", "temperature": True}, "temperature", "invalid_type"),
    ({"model": "m", "input": "x", "temperature": 2.5}, "temperature", "invalid_value"),
    ({"model": "m", "input": "x", "top_p": -0.1}, "top_p", "invalid_value"),
    ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens", "invalid_value"),
    ({"model": "m", "input": "x", "max_output_tokens": 1.5}, "max_output_tokens", "invalid_type"),
    ({"model": "m", "input": "x", "top_logprobs": 21}, "top_logprobs", "invalid_value"),
    ({"model": "m", "input": "x", "stream": "yes"}, "stream", "invalid_type"),
    ({"model": "m", "input": "x", "stream_options": []}, "stream_options", "invalid_type"),
    ({"model": "m", "input": "x", "store": "no"}, "store", "invalid_type"),
    ({"model": "m", "input": "x", "parallel_tool_calls": 1}, "parallel_tool_calls", "invalid_type"),
    ({"model": "m", "input": "x", "truncation": "sometimes"}, "truncation", "invalid_value"),
    ({"model": "m", "input": "x", "user": 5}, "user", "invalid_type"),
    ({"model": "m", "input": "x", "tools": {}}, "tools", "invalid_type"),
    ({"model": "m", "input": "x", "tools": ["f"]}, "tools[0]", "invalid_type"),
    ({"model": "m", "input": "x", "tools": [{"name": "f"}]}, "tools[0].type", "missing_required_parameter"),
    ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name", "missing_required_parameter"),
    ({"model": "m", "input": "x", "tools": [{"type": "function", "name": ""}]}, "tools[0].name", "invalid_value"),
    (
        {"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "parameters": "{}"}]},
        "tools[0].parameters",
        "invalid_type",
    ),
    (
        {"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "parameters": {"type": "obj"}}]},
        "tools[0].parameters",
        "invalid_schema",
    ),
    (
        {"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "strict": "yes"}]},
        "tools[0].strict",
        "invalid_type",
    ),
    (
        {"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "description": 1}]},
        "tools[0].description",
        "invalid_type",
    ),
    ({"model": "m", "input": "x", "tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
    ({"model": "m", "input": "x", "tool_choice": 1}, "tool_choice", "invalid_type"),
    ({"model": "m", "input": "x", "tool_choice": "required"}, "tool_choice", "invalid_value"),
    (
        {"model": "m", "input": "x", "tools": [TOOL], "tool_choice": {"type": "function"}},
        "tool_choice.name",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "input": "x", "tools": [TOOL], "tool_choice": {"type": "function", "name": "nope"}},
        "tool_choice.name",
        "invalid_value",
    ),
    ({"model": "m", "input": "x", "text": "json"}, "text", "invalid_type"),
    ({"model": "m", "input": "x", "text": {"fmt": {}}}, "text.fmt", "unknown_parameter"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type", "invalid_value"),
    (
        {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": SCHEMA}}},
        "text.format.name",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "p"}}},
        "text.format.schema",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "p", "schema": "{}"}}},
        "text.format.schema",
        "invalid_type",
    ),
    (
        {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "p", "schema": [1]}}},
        "text.format.schema",
        "invalid_type",
    ),
    (
        {
            "model": "m",
            "input": "x",
            "text": {"format": {"type": "json_schema", "name": "p", "schema": {"properties": {"a": 1}}}},
        },
        "text.format.schema",
        "invalid_schema",
    ),
    (
        {
            "model": "m",
            "input": "x",
            "text": {"format": {"type": "json_schema", "name": "p", "schema": {"required": "a"}}},
        },
        "text.format.schema",
        "invalid_schema",
    ),
    ({"model": "m", "input": "x", "reasoning": "high"}, "reasoning", "invalid_type"),
    ({"model": "m", "input": "x", "reasoning": {"effort": "huge"}}, "reasoning.effort", "invalid_value"),
    ({"model": "m", "input": "x", "reasoning": {"summary": "long"}}, "reasoning.summary", "invalid_value"),
    ({"model": "m", "input": "x", "metadata": []}, "metadata", "invalid_type"),
    ({"model": "m", "input": "x", "metadata": {str(i): "v" for i in range(17)}}, "metadata", "invalid_value"),
    ({"model": "m", "input": "x", "metadata": {"k" * 65: "v"}}, "metadata", "invalid_value"),
    ({"model": "m", "input": "x", "metadata": {"k": 1}}, "metadata.k", "invalid_type"),
    ({"model": "m", "input": "x", "metadata": {"k": "v" * 513}}, "metadata.k", "invalid_value"),
    ({"model": "m", "input": "x", "include": "message.output_text.logprobs"}, "include", "invalid_type"),
    ({"model": "m", "input": "x", "include": ["everything"]}, "include[0]", "invalid_value"),
]


@pytest.mark.parametrize(("request_", "param", "code"), INVALID, ids=[f"{i}-{c[1]}" for i, c in enumerate(INVALID)])
def test_invalid_is_400_naming_the_param(request_: dict, param: str, code: str) -> None:
    err = refused(request_)
    assert (err.param, err.code) == (param, code), err.message


def test_not_an_object() -> None:
    assert refused([1]).code == "invalid_type"  # type: ignore[arg-type]


def test_schema_nesting_is_bounded() -> None:
    deep: dict = {"type": "object"}
    for _ in range(200):
        deep = {"type": "object", "properties": {"a": deep}}
    err = refused(
        {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "p", "schema": deep}}}
    )
    assert err.code == "invalid_schema" and "nested" in err.message


@pytest.mark.parametrize(
    "schema",
    [
        {"type": ["string", "null"]},
        {"items": [{"type": "string"}], "additionalItems": False},
        {"$defs": {"a": {"type": "string"}}, "anyOf": [{"$ref": "#/$defs/a"}, True]},
        {"exclusiveMinimum": True, "minimum": 0},
        {"type": "object", "patternProperties": {"^x": {}}, "minProperties": 1, "not": {"required": ["y"]}},
    ],
)
def test_valid_schemas_pass(schema: dict) -> None:
    chat(input="x", tools=[{"type": "function", "name": "f", "parameters": schema}])


# -- property: random JSON is either translated or refused with a 4xx --------------------------------------------
_SCALARS = st.none() | st.booleans() | st.integers(-3, 30) | st.floats(-1, 3, allow_nan=False) | st.text(max_size=8)
_WORDS = st.sampled_from(
    [
        "model", "input", "type", "role", "content", "text", "message", "function_call", "function_call_output",
        "reasoning", "call_id", "name", "arguments", "output", "tools", "function", "parameters", "tool_choice",
        "format", "json_schema", "schema", "input_text", "input_image", "image_url", "user", "assistant", "system",
        "developer", "summary", "include", "metadata", "temperature", "instructions", "stream", "strict",
        "properties", "required", "items", "effort", "refusal", "output_text", "web_search", "auto", "required",
    ]
)  # fmt: skip
_JSON = st.recursive(
    _SCALARS | _WORDS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_WORDS | st.text(max_size=5), inner, max_size=5),
    max_leaves=30,
)


_PARAMS = st.sampled_from(
    [
        "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens", "temperature", "top_p",
        "text", "reasoning", "metadata", "include", "stream", "store", "truncation", "top_logprobs", "user",
        "background", "previous_response_id", "stream_options", "service_tier",
    ]
)  # fmt: skip
_PART = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "output_text", "input_image", "refusal", "input_file", "x"])},
    optional={"text": _JSON, "image_url": _JSON, "refusal": _JSON, "detail": _JSON, "file_id": _JSON},
)
_ITEM = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning", "web_search_call"]),
        "role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]),
        "content": st.text(max_size=5) | st.lists(_PART, max_size=3) | _JSON,
        "call_id": st.text(max_size=3) | _JSON,
        "name": st.text(max_size=3) | _JSON,
        "arguments": st.text(max_size=3) | _JSON,
        "output": st.text(max_size=3) | st.lists(_PART, max_size=2) | _JSON,
        "summary": st.lists(st.fixed_dictionaries({"type": _WORDS, "text": _JSON}), max_size=2) | _JSON,
    },
)
_TOOL = st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "web_search", "x"])},
    optional={"name": st.text(max_size=3) | _JSON, "parameters": _JSON, "strict": _JSON, "description": _JSON},
)
_REQUESTS = st.fixed_dictionaries(
    {"model": st.just("m"), "input": st.text(max_size=5) | st.lists(_ITEM, max_size=5)},
    optional={"tools": st.lists(_TOOL, max_size=3), "instructions": st.text(max_size=3)},
).flatmap(lambda base: st.dictionaries(_PARAMS, st.none() | _JSON, max_size=3).map(lambda extra: {**extra, **base}))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(_REQUESTS, _REQUESTS, _REQUESTS, st.dictionaries(_WORDS, _JSON, max_size=6), _JSON),
    st.sampled_from(
        [OPTS, TranslateOptions(reasoning_history="send", tolerate_params=frozenset({"tools.type", "include"}))]
    ),
)
def test_random_json_is_translated_or_refused(request: Any, opts: TranslateOptions) -> None:
    try:
        out = responses_to_chat(request, opts)
    except APIError as err:
        assert 400 <= err.status < 500 and err.param is not None
    else:
        assert out.body["messages"] and isinstance(out.body["model"], str)
