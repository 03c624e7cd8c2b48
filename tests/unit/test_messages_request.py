"""Messages request -> chat request: every field honoured, refused with a 400 naming it, or (tolerated) dropped
and named. The request bodies are built as the anthropic SDK's param types describe them."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import APIError
from modelyard.messages import messages_to_chat
from modelyard.translate import TranslateOptions

OPTS = TranslateOptions()
TOOL = {
    "name": "get_weather",
    "description": "Weather.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def req(**kw: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}], **kw}


def chat(request: dict[str, Any], style: str = "template", **opts: Any) -> dict[str, Any]:
    return messages_to_chat(request, TranslateOptions(**opts), style).body  # type: ignore[arg-type]


def refused(request: dict[str, Any], style: str = "template") -> APIError:
    with pytest.raises(APIError) as err:
        messages_to_chat(request, OPTS, style)  # type: ignore[arg-type]
    assert err.value.status == 400
    return err.value


def test_sampling_and_limits() -> None:
    body = chat(req(temperature=0.5, top_p=0.9, top_k=40, stop_sequences=["\n\n", "END"], metadata={"user_id": "u1"}))
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 16,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["\n\n", "END"],
        "user": "u1",
    }
    assert chat(req(), max_tokens_param="max_completion_tokens")["max_completion_tokens"] == 16


def test_stream_asks_for_usage() -> None:
    body = chat(req(stream=True))
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_system_string_and_blocks() -> None:
    assert chat(req(system="Be brief."))["messages"][0] == {"role": "system", "content": "Be brief."}
    blocks = [{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}]
    assert chat(req(system=blocks))["messages"][0] == {"role": "system", "content": "A\n\nB"}


def test_images_base64_and_url() -> None:
    content = [
        {"type": "text", "text": "What is it?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    [message] = chat(req(messages=[{"role": "user", "content": content}]))["messages"]
    assert message["content"][1:] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]


def test_tool_loop_translates() -> None:
    turns = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ]
    body = chat(req(messages=turns, tools=[TOOL], tool_choice={"type": "auto", "disable_parallel_tool_use": True}))
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
        ],
    }
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather.", "parameters": TOOL["input_schema"]},
        }
    ]  # not strict: the schema does not allow it (additionalProperties is not false)
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False
    sent = chat(req(messages=turns), reasoning_history="send")["messages"][1]
    assert sent["reasoning_content"] == "Use the tool."


def test_tool_results_go_before_the_rest_of_the_turn() -> None:
    content = [
        {"type": "text", "text": "Here:"},
        {"type": "tool_result", "tool_use_id": "a", "content": [{"type": "text", "text": "1"}]},
        {"type": "tool_result", "tool_use_id": "b", "is_error": True, "content": "boom"},
    ]
    messages = chat(req(messages=[{"role": "user", "content": content}]))["messages"]
    assert messages == [
        {"role": "tool", "tool_call_id": "a", "content": [{"type": "text", "text": "1"}]},
        {"role": "tool", "tool_call_id": "b", "content": "Error: boom"},
        {"role": "user", "content": [{"type": "text", "text": "Here:"}]},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    assert chat(req(tools=[TOOL], tool_choice=choice))["tool_choice"] == expected


def test_strict_where_the_schema_allows() -> None:
    schema = {**TOOL["input_schema"], "additionalProperties": False}
    [tool] = chat(req(tools=[{**TOOL, "input_schema": schema}]))["tools"]
    assert tool["function"]["strict"] is True
    [tool] = chat(req(tools=[{**TOOL, "input_schema": schema, "strict": False}]))["tools"]
    assert tool["function"]["strict"] is False


@pytest.mark.parametrize(
    ("style", "thinking", "expected"),
    [
        ("template", {"type": "enabled", "budget_tokens": 2048}, {"chat_template_kwargs": {"enable_thinking": True}}),
        ("template", {"type": "disabled"}, {"chat_template_kwargs": {"enable_thinking": False}}),
        ("template", {"type": "adaptive"}, {"chat_template_kwargs": {"enable_thinking": True}}),
        ("effort", {"type": "enabled", "budget_tokens": 2048}, {"reasoning_effort": "low"}),
        ("effort", {"type": "enabled", "budget_tokens": 8000}, {"reasoning_effort": "medium"}),
        ("effort", {"type": "enabled", "budget_tokens": 20000}, {"reasoning_effort": "high"}),
        ("effort", {"type": "disabled"}, {}),
        ("openrouter", {"type": "enabled", "budget_tokens": 2048}, {"reasoning": {"max_tokens": 2048}}),
        ("openrouter", {"type": "disabled"}, {"reasoning": {"enabled": False}}),
    ],
)
def test_thinking_becomes_the_backends_reasoning_settings(style: str, thinking: dict, expected: dict) -> None:
    body = chat(req(max_tokens=30000, thinking=thinking), style)
    assert {k: v for k, v in body.items() if k in ("chat_template_kwargs", "reasoning_effort", "reasoning")} == expected


def test_output_config() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = chat(req(output_config={"effort": "high", "format": {"type": "json_schema", "schema": schema}}))
    assert body["reasoning_effort"] == "high"
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def test_prefill_is_continued_on_template_engines() -> None:
    turns = [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi"}]
    body = chat(req(messages=turns))
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert refused(req(messages=turns), "effort").param == "messages"


def test_no_ops_are_accepted() -> None:
    body = chat(req(cache_control={"type": "ephemeral"}, service_tier="standard_only", speed="standard"))
    assert set(body) == {"model", "messages", "max_tokens"}


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        ({"model": "m", "messages": []}, "max_tokens"),
        (req(messages=[]), "messages"),
        (req(max_tokens=0), "max_tokens"),
        (req(temperature=1.5), "temperature"),
        (req(top_k="x"), "top_k"),
        (req(stop_sequences="END"), "stop_sequences"),
        (req(stream="yes"), "stream"),
        (req(metadata={"user_id": 3}), "metadata.user_id"),
        (req(metadata={"session": "x"}), "metadata.session"),
        (req(frequency_penalty=1), "frequency_penalty"),
        (req(messages=[{"role": "system", "content": "x"}]), "messages[0].role"),
        (req(messages=[{"role": "user", "content": [{"type": "video"}]}]), "messages[0].content[0].type"),
        (req(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages[0].content[0].text"),
        (req(messages=[{"role": "user", "content": [{"type": "tool_result"}]}]), "messages[0].content[0].tool_use_id"),
        (
            req(
                messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": []}]}]
            ),
            "messages[0].content[0].input",
        ),
        (req(tools=[{"name": "f"}]), "tools[0].input_schema"),
        (req(tools=[{"name": "bad name", "input_schema": {"type": "object"}}]), "tools[0].name"),
        (req(tools=[{**TOOL, "input_schema": {"type": "object", "properties": 3}}]), "tools[0].input_schema"),
        (req(tool_choice={"type": "any"}), "tool_choice"),
        (req(tools=[TOOL], tool_choice={"type": "tool", "name": "nope"}), "tool_choice.name"),
        (req(tools=[TOOL], tool_choice={"type": "sometimes"}), "tool_choice"),
        (req(thinking={"type": "enabled"}), "thinking.budget_tokens"),
        (req(thinking={"type": "enabled", "budget_tokens": 100}), "thinking.budget_tokens"),
        (req(max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 4000}), "thinking.budget_tokens"),
        (req(thinking={"type": "sometimes"}), "thinking.type"),
        (req(service_tier="priority"), "service_tier"),
    ],
)
def test_client_errors_name_the_param(request_: dict[str, Any], param: str) -> None:
    assert refused(request_).param == param


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (req(container="c1"), "container"),
        (req(mcp_servers=[{"type": "url"}]), "mcp_servers"),
        (req(inference_geo="eu"), "inference_geo"),
        (req(speed="fast"), "speed"),
        (req(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools[0].type"),
        (req(tools=[{**TOOL, "input_examples": [{"city": "Paris"}]}]), "tools[0].input_examples"),
        (req(thinking={"type": "between_tools"}), "thinking.type"),
        (req(thinking={"type": "adaptive", "display": "omitted"}), "thinking.display"),
        (req(system=[{"type": "text", "text": "x", "citations": [{"type": "char_location"}]}]), "system[0].citations"),
        (
            req(messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}]),
            "messages[0].content[0].type",
        ),
        (
            req(
                messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]
            ),
            "messages[0].content[0].source.type",
        ),
        (
            req(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "a", "content": [{"type": "image"}]}],
                    }
                ]
            ),
            "messages[0].content[0].content[0].type",
        ),
        (
            req(messages=[{"role": "assistant", "content": [{"type": "server_tool_use"}]}]),
            "messages[0].content[0].type",
        ),
    ],
)
def test_unsupported_is_refused_by_name_or_dropped_where_tolerated(request_: dict[str, Any], param: str) -> None:
    err = refused(request_)
    assert err.param == param and err.code == "unsupported_parameter"
    key = param.split("[")[0] + "".join(p.split("]", 1)[1] for p in param.split("[")[1:])
    tolerant = messages_to_chat(request_, TranslateOptions(tolerate_params=frozenset({key})), "template")
    assert tolerant.dropped == [param]


def test_token_ids_echoed_on_an_assistant_message() -> None:
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "prompt_token_ids": [1, 2], "generation_token_ids": [3, 4]},
        {"role": "user", "content": "More"},
    ]
    result = messages_to_chat(req(messages=turns, system="S"), TranslateOptions(token_ids=True), "template")
    assert result.token_prefix == (2, [1, 2, 3, 4])
    assert result.body["messages"][2] == {"role": "assistant", "content": "Hello"}
    assert refused(req(messages=turns)).param == "messages[1].prompt_token_ids"  # not in token mode


def test_count_tokens_body() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    assert messages_to_chat(body, OPTS, "template", count=True).body == {**body}
    with pytest.raises(APIError):
        messages_to_chat({**body, "max_tokens": 3}, OPTS, "template", count=True)
