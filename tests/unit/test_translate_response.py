"""Chat completion -> Response: golden replies, then each rule on its own."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import APIError
from modelyard.translate import TranslateOptions, new_response_id, responses_to_chat
from tests.unit.spec import check_response

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.json"))
OPTS = TranslateOptions()
RID = "resp_" + "ab" * 24


def load(name: str) -> dict[str, Any]:
    return json.loads((Path(__file__).parent / "golden" / f"{name}.json").read_text())


def translate(chat: dict, request: dict | None = None, opts: TranslateOptions = OPTS) -> dict:
    return responses_to_chat(request or {"model": "m", "input": "x"}, opts).reply(chat, response_id=RID, created_at=1)


def reply(message: dict, finish: str = "stop", **choice: Any) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **choice}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8, "prompt_tokens_details": None},
    }


def kinds(response: dict) -> list[str]:
    return [item["type"] for item in response["output"]]


def text_of(response: dict) -> str:
    return "".join(p["text"] for i in response["output"] if i["type"] == "message" for p in i["content"] if "text" in p)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_reply_is_a_valid_response(path: Path) -> None:
    case = json.loads(path.read_text())
    request = copy.deepcopy(case["request"])
    response = responses_to_chat(request, OPTS).reply(case["chat"], response_id=RID, created_at=1)
    assert request == case["request"], "the request is left as it was"
    assert response["id"] == RID and response["object"] == "response"
    assert response["model"] == case["chat"]["model"]
    usage = case["chat"]["usage"]
    assert response["usage"]["input_tokens"] == usage["prompt_tokens"]
    assert response["usage"]["output_tokens"] == usage["completion_tokens"]
    finish = case["chat"]["choices"][0]["finish_reason"]
    assert response["status"] == ("incomplete" if finish in ("length", "content_filter") else "completed")
    assert (response["completed_at"] is None) == (response["status"] == "incomplete")
    check_response(response)


def test_golden_shapes() -> None:
    """What each hand-made golden must come out as (re-recorded ones are checked only for what is stable)."""
    out = {p.stem: translate(json.loads(p.read_text())["chat"], json.loads(p.read_text())["request"]) for p in GOLDEN}
    assert kinds(out["reasoning_field"]) == ["reasoning", "message"]
    assert out["reasoning_field"]["output"][0]["content"][0]["text"].startswith("91 = 7 × 13")
    assert kinds(out["reasoning_think_tags"]) == ["reasoning", "message"]
    assert out["reasoning_think_tags"]["output"][0]["content"][0]["text"].startswith("Check divisors")
    assert text_of(out["reasoning_think_tags"]) == "Yes, 97 is prime."
    assert kinds(out["tool_call"]) == ["function_call"]
    assert kinds(out["parallel_tool_calls"]) == ["function_call"] * 3
    assert [i["name"] for i in out["parallel_tool_calls"]["output"]] == ["get_weather", "get_time", "get_weather"]
    assert all(i["call_id"].startswith("chatcmpl-tool-") for i in out["parallel_tool_calls"]["output"])
    assert out["multi_turn_tool_output"]["usage"]["input_tokens_details"]["cached_tokens"] == 192
    if out["structured_output"]["status"] == "completed":  # guided decoding: JSON of the schema
        assert json.loads(text_of(out["structured_output"])).keys() == {"name", "age"}
    assert out["structured_output"]["text"]["format"]["type"] == "json_schema"
    assert out["length"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["length"]["output"][-1]["status"] == "incomplete"
    assert out["content_filter"]["incomplete_details"] == {"reason": "content_filter"}
    assert out["refusal"]["output"][0]["content"] == [
        {"type": "refusal", "refusal": "I'm sorry, but I can't help with that."}
    ]
    logprobs = out["logprobs"]["output"][0]["content"][0]["logprobs"]
    assert logprobs and all(lp["top_logprobs"] and lp["bytes"] is not None for lp in logprobs)


def test_echo_says_whether_a_tool_without_strict_was_enforced_strictly() -> None:
    closed = {"type": "object", "properties": {}, "additionalProperties": False}
    tools = [
        {"type": "function", "name": "closed", "parameters": closed},
        {"type": "function", "name": "open", "parameters": {"type": "object"}},
    ]
    response = translate(reply({"content": "hi"}), {"model": "m", "input": "x", "tools": tools})
    check_response(response)
    assert [t["strict"] for t in response["tools"]] == [True, False]


def test_echo_of_request_params() -> None:
    request = {
        "model": "m",
        "input": "x",
        "instructions": "Be brief.",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "temperature": 0.5,
        "top_p": 0.9,
        "max_output_tokens": 100,
        "top_logprobs": 3,
        "metadata": {"run": "7"},
        "user": "u1",
        "store": False,
        "reasoning": {"effort": "high", "summary": "auto"},
        "text": {"format": {"type": "json_object"}},
        "prompt_cache_key": "k",
        "safety_identifier": "s",
    }
    response = translate(reply({"content": "{}"}), request)
    check_response(response)
    expected = {
        "instructions": "Be brief.",
        "tools": [
            {"type": "function", "name": "f", "description": None, "parameters": {"type": "object"}, "strict": True}
        ],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "temperature": 0.5,
        "top_p": 0.9,
        "max_output_tokens": 100,
        "top_logprobs": 3,
        "metadata": {"run": "7"},
        "user": "u1",
        "store": False,
        "reasoning": {"effort": "high", "summary": None},  # a summary is not made: dropped and named
        "text": {"format": {"type": "json_object"}},
        "prompt_cache_key": "k",
        "safety_identifier": "s",
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "service_tier": "default",
        "previous_response_id": None,
        "truncation": "disabled",
        "background": False,
        "error": None,
    }
    assert {k: response[k] for k in expected} == expected


def test_defaults_when_the_request_sets_nothing() -> None:
    response = translate(reply({"content": "hi"}))
    check_response(response)
    assert response["tools"] == [] and response["tool_choice"] == "auto" and response["parallel_tool_calls"] is True
    assert response["text"] == {"format": {"type": "text"}} and response["metadata"] == {}
    assert response["reasoning"] is None and "user" not in response
    # The sampling in force: the engine's defaults, never null.
    assert [response[k] for k in ("temperature", "top_p", "top_logprobs", "presence_penalty", "frequency_penalty")] == [
        1.0,
        1.0,
        0,
        0.0,
        0.0,
    ]
    assert response["service_tier"] == "default"
    assert response["output"] == [
        {
            "id": response["output"][0]["id"],
            "type": "message",
            "status": "completed",
            "content": [{"type": "output_text", "text": "hi", "annotations": [], "logprobs": []}],
            "role": "assistant",
        }
    ]
    assert response["output"][0]["id"].startswith("msg_")


def test_usage_details() -> None:
    chat = reply({"content": "hi"})
    chat["usage"] = {
        "prompt_tokens": 10,
        "completion_tokens": 7,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    assert translate(chat)["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 17,
    }
    del chat["usage"]
    response = translate(chat)
    assert response["usage"] is None  # the upstream sent none
    check_response(response)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_field(field: str) -> None:
    response = translate(reply({field: "think", "content": "<think>not parsed</think>answer"}))
    check_response(response)
    assert kinds(response) == ["reasoning", "message"]
    reasoning = response["output"][0]
    assert reasoning["id"].startswith("rs_") and reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "think"}]
    assert text_of(response) == "<think>not parsed</think>answer"  # a reasoning field means content is content


@pytest.mark.parametrize(
    ("content", "reasoning", "text"),
    [
        ("<think>\nhmm\n</think>\n\nHi.", "hmm\n", "Hi."),
        ("  <think>a</think>b", "a", "b"),
        ("<think>cut off by the limit", "cut off by the limit", None),
        ("<think></think>Just text", None, "Just text"),
        ("No tags <think>here</think>", None, "No tags <think>here</think>"),
        ("reasoning only closes</think>answer", None, "reasoning only closes</think>answer"),
        ("<thinking>not the tag", None, "<thinking>not the tag"),
        ("<thi", None, "<thi"),
    ],
)
def test_think_tags(content: str, reasoning: str | None, text: str | None) -> None:
    response = translate(reply({"content": content}))
    check_response(response)
    got_reasoning = [i["content"][0]["text"] for i in response["output"] if i["type"] == "reasoning"]
    assert got_reasoning == ([reasoning] if reasoning else [])
    assert (text_of(response) if "message" in kinds(response) else None) == text


def test_think_tags_off_or_custom() -> None:
    off = translate(reply({"content": "<think>a</think>b"}), opts=TranslateOptions(think_tags=None))
    assert kinds(off) == ["message"] and text_of(off) == "<think>a</think>b"
    custom = translate(reply({"content": "[R]a[/R]b"}), opts=TranslateOptions(think_tags=("[R]", "[/R]")))
    assert kinds(custom) == ["reasoning", "message"] and text_of(custom) == "b"


def test_tool_calls_with_text_and_generated_ids() -> None:
    calls = [
        {"id": "call_up", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
        {"type": "function", "function": {"name": "b", "arguments": {"y": 2}}},  # no id; arguments as an object
    ]
    response = translate(reply({"content": "Let me check.", "tool_calls": calls}, "tool_calls"))
    check_response(response)
    assert kinds(response) == ["message", "function_call", "function_call"]
    first, second = response["output"][1:]
    assert first["call_id"] == "call_up" and first["arguments"] == '{"x": 1}' and first["status"] == "completed"
    assert second["call_id"].startswith("call_") and second["arguments"] == '{"y":2}'
    assert second["id"].startswith("fc_") and first["id"] != second["id"]
    again = translate(reply({"content": "Let me check.", "tool_calls": calls}, "tool_calls"))
    assert again["output"][2]["call_id"] == second["call_id"]  # stable for the same response id


def test_whitespace_before_tool_calls_makes_no_message() -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]
    response = translate(reply({"content": "\n\n", "tool_calls": calls}, "tool_calls"))
    assert kinds(response) == ["function_call"]


@pytest.mark.parametrize("message", [{"content": ""}, {"content": None}, {"content": "   "}, {}])
def test_empty_reply_is_one_empty_message(message: dict) -> None:
    response = translate(reply(message))
    check_response(response)
    assert kinds(response) == ["message"]
    assert text_of(response) == (message.get("content") or "")


def test_refusal_with_text() -> None:
    response = translate(reply({"content": "Partly: ", "refusal": "no more."}))
    check_response(response)
    assert [p["type"] for p in response["output"][0]["content"]] == ["output_text", "refusal"]


def test_length_during_reasoning_marks_the_reasoning_incomplete() -> None:
    response = translate(reply({"reasoning_content": "still thinking", "content": None}, "length"))
    check_response(response)
    assert kinds(response) == ["reasoning"] and response["output"][0]["status"] == "incomplete"
    assert response["status"] == "incomplete"


def test_logprobs_without_bytes() -> None:
    logprobs = {"content": [{"token": "é", "logprob": -0.5, "top_logprobs": [{"token": "é", "logprob": -0.5}]}]}
    response = translate(reply({"content": "é"}, logprobs=logprobs))
    check_response(response)
    assert response["output"][0]["content"][0]["logprobs"] == [
        {
            "token": "é",
            "logprob": -0.5,
            "bytes": [195, 169],
            "top_logprobs": [{"token": "é", "logprob": -0.5, "bytes": [195, 169]}],
        }
    ]


def test_service_tier_from_the_upstream() -> None:
    chat = reply({"content": "x"})
    chat["service_tier"] = "default"
    assert translate(chat, {"model": "m", "input": "x", "service_tier": "auto"})["service_tier"] == "default"
    chat["service_tier"] = None
    assert translate(chat, {"model": "m", "input": "x", "service_tier": "auto"})["service_tier"] == "auto"


@pytest.mark.parametrize("chat", [{}, {"choices": []}, {"choices": None}, {"choices": ["x"]}])
def test_reply_without_choices_is_502(chat: dict) -> None:
    with pytest.raises(APIError) as err:
        translate(chat)
    assert err.value.status == 502 and err.value.code == "bad_upstream_reply"


def test_overflow_response() -> None:
    response = responses_to_chat({"model": "m", "input": "x"}, OPTS).overflow(response_id=RID, created_at=1)
    check_response(response)
    assert response["status"] == "incomplete" and response["output"] == []
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}


def test_new_response_id() -> None:
    a, b = new_response_id(), new_response_id()
    assert a.startswith("resp_") and a != b and int(a[5:], 16) >= 0
