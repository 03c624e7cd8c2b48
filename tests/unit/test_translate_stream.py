"""Chat chunks -> Responses stream events: goldens, sequence rules, and equality with the non-streamed Response."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.translate import StreamTranslator, TranslateOptions, responses_to_chat
from tests.unit.spec import check_event, check_response

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.json"))
OPTS = TranslateOptions()
RID = "resp_" + "cd" * 24
REQUEST = {"model": "m", "input": "x"}


def translator_for(request: dict = REQUEST, opts: TranslateOptions = OPTS) -> StreamTranslator:
    return responses_to_chat(request, opts).stream(RID, 1)


def chat_to_response(chat: dict, request: dict = REQUEST, opts: TranslateOptions = OPTS) -> dict:
    """The non-streamed Response for `chat` answering `request`."""
    return responses_to_chat(request, opts).reply(chat, response_id=RID, created_at=1)


def stream(chunks: list[dict], request: dict = REQUEST, opts: TranslateOptions = OPTS) -> tuple[list[dict], dict]:
    translator = translator_for(request, opts)
    events = translator.start()
    for chunk in chunks:
        events += translator.feed(chunk)
    events += translator.finish()
    return events, translator.response


def settled(response: dict) -> dict:
    """A Response minus what differs between two translations of one reply (when it completed)."""
    return {k: v for k, v in response.items() if k != "completed_at"}


def chunk(delta: dict | None = None, finish: str | None = None, **extra: Any) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, **extra}]
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up", "choices": choices}


def usage_chunk(prompt: int = 5, completion: int = 3) -> dict:
    return {
        **chunk(),
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def check_sequence(events: list[dict], final: dict) -> None:
    """The rules a Responses client relies on, replayed the way a client accumulates the stream."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert events[-1]["type"] in ("response.completed", "response.incomplete", "response.failed")
    assert events[-1]["response"] is final or events[-1]["response"] == final
    assert all(e["response"]["id"] == final["id"] for e in events if "response" in e)
    items: dict[int, dict] = {}  # output_index -> what a client built from added/delta events
    done: dict[int, dict] = {}
    for e in events[2:-1]:
        kind, index = e["type"], e.get("output_index")
        if kind == "response.output_item.added":
            assert index not in items and index == len(items), "items are added in output order"
            assert e["item"]["status"] == "in_progress"
            items[index] = {"item": e["item"], "parts": [], "args": ""}
            if e["item"]["type"] == "function_call":
                assert e["item"]["arguments"] == ""
            continue
        assert index in items and index not in done, f"{kind} outside its item"
        state = items[index]
        assert e.get("item_id", state["item"]["id"]) == state["item"]["id"]
        if kind == "response.content_part.added":
            assert e["content_index"] == len(state["parts"])
            state["parts"].append({"part": e["part"], "text": "", "done": False})
        elif kind in ("response.output_text.delta", "response.reasoning_text.delta", "response.refusal.delta"):
            part = state["parts"][e["content_index"]]
            assert e["content_index"] == len(state["parts"]) - 1 and not part["done"]
            part["text"] += e["delta"]
        elif kind in ("response.output_text.done", "response.reasoning_text.done", "response.refusal.done"):
            part = state["parts"][e["content_index"]]
            assert (e.get("text") if "text" in e else e["refusal"]) == part["text"]
            part["done"] = True
        elif kind == "response.content_part.done":
            part = state["parts"][e["content_index"]]
            assert part["done"] and (e["part"].get("text") or e["part"].get("refusal") or "") == part["text"]
        elif kind == "response.function_call_arguments.delta":
            state["args"] += e["delta"]
        elif kind == "response.function_call_arguments.done":
            assert e["arguments"] == state["args"] and e["name"] == state["item"]["name"]
        elif kind == "response.output_item.done":
            assert all(p["done"] for p in state["parts"])
            done[index] = e["item"]
        else:
            raise AssertionError(f"unexpected event {kind}")
    if final["status"] != "failed":
        assert sorted(done) == list(range(len(final["output"])))
        assert [done[i] for i in sorted(done)] == final["output"]


def as_stream_of(case: dict) -> tuple[list[dict], dict, dict]:
    events, final = stream(case["chunks"], case["request"])
    twin = chat_to_response(case["chat"], case["request"])
    return events, final, twin


def recorded_pair(response: dict) -> dict:
    """What a streamed and a non-streamed recording of one request share. They are two generations: each
    call gets its own id, and vLLM re-serializes non-streamed arguments while streamed ones keep the
    model's whitespace (`{"city": "Paris"}` vs `{\\n    "city": "Paris"\\n}`)."""
    out = settled(response)
    output = []
    for item in out["output"]:
        if item["type"] == "function_call":
            assert item["call_id"].startswith("chatcmpl-tool-"), "vLLM's own call id is kept"
            item = {**item, "call_id": "chatcmpl-tool-", "arguments": json.loads(item["arguments"])}
        output.append(item)
    return {**out, "output": output}


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_stream(path: Path) -> None:
    case = json.loads(path.read_text())
    events, final, twin = as_stream_of(case)
    check_sequence(events, final)
    if case["recorded_from"] == "vllm-cpu":
        assert recorded_pair(final) == recorded_pair(twin)
    else:  # hand-made: one reply, chunked
        assert settled(final) == settled(twin)
    for event in events:
        check_event(event)
    check_response(final)


def test_golden_event_kinds() -> None:
    def types(name: str) -> list[str]:
        events, _, _ = as_stream_of(json.loads((Path(__file__).parent / "golden" / f"{name}.json").read_text()))
        seen: list[str] = []
        for e in events:
            if not seen or seen[-1] != e["type"]:
                seen.append(e["type"])
        return seen

    message = [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    reasoning = [t.replace("output_text", "reasoning_text") for t in message]
    start = ["response.created", "response.in_progress"]
    assert types("text") == [*start, *message, "response.completed"]
    assert types("reasoning_field") == [*start, *reasoning, *message, "response.completed"]
    assert types("reasoning_think_tags") == [*start, *reasoning, *message, "response.completed"]
    assert types("length")[-1] == "response.incomplete"
    assert types("tool_call") == [
        *start,
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert "response.refusal.delta" in types("refusal")


def test_interleaved_parallel_tool_calls() -> None:
    def call(index: int, args: str, name: str | None = None, cid: str | None = None) -> dict:
        function = {"arguments": args} | ({"name": name} if name else {})
        return chunk({"tool_calls": [{"index": index, "function": function} | ({"id": cid} if cid else {})]})

    chunks = [
        call(0, "", "a", "id0"),
        call(1, '{"q"', "b", "id1"),
        call(0, '{"p": '),
        call(1, ": 2}"),
        call(0, "1}"),
        chunk({}, "tool_calls"),
        usage_chunk(),
    ]
    events, final = stream(chunks)
    for event in events:
        check_event(event)
    check_sequence(events, final)
    assert [(i["name"], i["call_id"], i["arguments"]) for i in final["output"]] == [
        ("a", "id0", '{"p": 1}'),
        ("b", "id1", '{"q": 2}'),
    ]
    deltas = [(e["output_index"], e["delta"]) for e in events if e["type"].endswith("arguments.delta")]
    assert deltas == [(1, '{"q"'), (0, '{"p": '), (1, ": 2}"), (0, "1}")]


def test_parallel_calls_all_at_index_zero_with_new_ids() -> None:
    chunks = [
        chunk({"tool_calls": [{"index": 0, "id": "x", "function": {"name": "a", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "y", "function": {"name": "b", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
    ]
    _, final = stream(chunks)
    assert [(i["call_id"], i["name"]) for i in final["output"]] == [("x", "a"), ("y", "b")]


def test_call_name_after_arguments_and_missing_id() -> None:
    chunks = [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": ": 1}"}}]}),
        chunk({}, "tool_calls"),
    ]
    events, final = stream(chunks)
    check_sequence(events, final)
    (item,) = final["output"]
    assert item["name"] == "f" and item["arguments"] == '{"a": 1}' and item["call_id"].startswith("call_")


def test_think_tags_split_across_chunks() -> None:
    pieces = ["<", "thi", "nk>\nR", "eason", "ing</th", "ink>", "\n\n", "Ans", "wer"]
    events, final = stream([chunk({"content": p}) for p in pieces] + [chunk({}, "stop")])
    check_sequence(events, final)
    assert final["output"][0]["content"][0]["text"] == "Reasoning"
    assert final["output"][1]["content"][0]["text"] == "Answer"
    assert not any("<" in e.get("delta", "") for e in events)


def test_text_is_sent_as_it_arrives() -> None:
    translator = translator_for()
    translator.start()
    events = translator.feed(chunk({"content": "Hel"}))
    assert [e["type"] for e in events][-1] == "response.output_text.delta" and events[-1]["delta"] == "Hel"
    assert translator.feed(chunk({"content": "lo"}))[0]["delta"] == "lo"
    assert translator.response["output"][0]["content"][0]["text"] == "Hello"  # assembled so far
    assert translator.response["status"] == "in_progress"


def test_logprobs_ride_with_their_text() -> None:
    def lp(token: str) -> dict:
        return {"content": [{"token": token, "logprob": -1.0, "bytes": None, "top_logprobs": []}]}

    chunks = [
        chunk({"reasoning_content": "r"}, logprobs=lp("r")),
        chunk({"content": "a"}, logprobs=lp("a")),
        chunk({"content": "b"}, logprobs=lp("b")),
        chunk({}, "stop"),
    ]
    events, final = stream(chunks)
    for event in events:
        check_event(event)
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [[lp["token"] for lp in d["logprobs"]] for d in deltas] == [["r", "a"], ["b"]]
    assert [lp["token"] for lp in final["output"][1]["content"][0]["logprobs"]] == ["r", "a", "b"]


def test_usage_and_model_from_chunks() -> None:
    _, final = stream([chunk({"content": "x"}, "stop"), usage_chunk(11, 2)])
    assert final["usage"]["input_tokens"] == 11 and final["usage"]["total_tokens"] == 13
    assert final["model"] == "up"


def test_stream_without_any_output() -> None:
    events, final = stream([chunk({"role": "assistant", "content": ""}), chunk({}, "stop"), usage_chunk()])
    for event in events:
        check_event(event)
    check_sequence(events, final)
    assert final["output"][0]["content"][0]["text"] == ""


def test_fail_mid_stream() -> None:
    translator = translator_for()
    events = translator.start()
    events += translator.feed(chunk({"content": "partial"}))
    events += translator.feed(
        chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}]})
    )
    failed = translator.fail("Upstream stream broke off (ReadError).", "upstream_stream_error")
    for event in events + failed:
        check_event(event)
    assert [e["type"] for e in failed] == ["error", "response.failed"]
    error, end = failed
    assert error == {
        "type": "error",
        "code": "upstream_stream_error",
        "message": "Upstream stream broke off (ReadError).",
        "param": None,
        "sequence_number": events[-1]["sequence_number"] + 1,
    }
    response = end["response"]
    assert response["status"] == "failed" and response["completed_at"] is None
    assert response["error"] == {"code": "server_error", "message": "Upstream stream broke off (ReadError)."}
    assert [i["status"] for i in response["output"]] == ["completed", "incomplete"]
    assert response["output"][1]["arguments"] == "{"
    check_response(response)
    assert translator.finish() == [] and translator.feed(chunk({"content": "late"})) == []


def test_fail_keeps_a_known_response_error_code() -> None:
    translator = translator_for()
    translator.start()
    assert translator.fail("slow down", "rate_limit_exceeded")[-1]["response"]["error"]["code"] == "rate_limit_exceeded"


def test_overflow_stream() -> None:
    translator = translator_for()
    events = translator.overflow()
    for event in events:
        check_event(event)
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.incomplete"]
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_other_choices_and_empty_chunks_are_ignored() -> None:
    chunks = [
        {"id": "c", "choices": [{"index": 1, "delta": {"content": "other"}}]},
        {"id": "c"},
        chunk({"content": "mine"}, "stop"),
    ]
    _, final = stream(chunks)
    assert [i["content"][0]["text"] for i in final["output"]] == ["mine"]


# -- property: however a reply is cut into chunks, the stream ends in the non-streamed Response ------------------
_TEXT = st.text(st.sampled_from('ab <>/thinkTHINK\n{}":é'), max_size=40)


@st.composite
def replies(draw: st.DrawFn) -> tuple[dict, list[dict]]:
    """A reply (reasoning field or <think> content, text, tool calls, logprobs) and a random chunking of it."""
    think = draw(st.sampled_from(["field", "tags", "none"]))
    reasoning = draw(_TEXT)
    text = draw(_TEXT)
    content = f"<think>{reasoning}</think>{text}" if think == "tags" else text
    calls = draw(st.lists(st.tuples(st.sampled_from(["f", "g"]), _TEXT, st.booleans()), max_size=3))
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
    with_logprobs = draw(st.booleans()) and not calls  # tool-call tokens' logprobs are dropped when streamed

    def cuts(s: str) -> list[str]:
        points = sorted(draw(st.sets(st.integers(1, max(1, len(s) - 1)), max_size=6))) if len(s) > 1 else []
        return [s[a:b] for a, b in zip([0, *points], [*points, len(s)], strict=True) if s[a:b]]

    def lp(token: str) -> dict:
        return {"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": []}

    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    chunks = [chunk({"role": "assistant", "content": ""})]
    if think == "field" and reasoning:
        message["reasoning_content"] = reasoning
        chunks += [chunk({"reasoning_content": p}) for p in cuts(reasoning)]
    pieces = cuts(content)
    for piece in pieces:
        chunks.append(chunk({"content": piece}, logprobs={"content": [lp(piece)]} if with_logprobs else None))
    logprobs = {"content": [lp(p) for p in pieces]} if with_logprobs and pieces else None
    message["tool_calls"] = []
    for i, (name, args, has_id) in enumerate(calls):
        call_id = f"id{i}" if has_id else None
        message["tool_calls"].append({"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})
        head = {"index": i, "type": "function", "function": {"name": name, "arguments": ""}}
        chunks.append(chunk({"tool_calls": [head | ({"id": call_id} if has_id else {})]}))
        chunks += [chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}) for p in cuts(args)]
    chunks.append(chunk({}, finish))
    chunks.append(usage_chunk())
    chat = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "up",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": logprobs}],
        "usage": usage_chunk()["usage"],
    }
    return chat, chunks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies())
def test_any_chunking_reassembles_to_the_non_streamed_response(reply: tuple[dict, list[dict]]) -> None:
    chat, chunks = reply
    events, final = stream(chunks)
    check_sequence(events, final)
    twin = chat_to_response(chat)
    assert settled(final) == settled(twin)


@settings(max_examples=25, deadline=None)
@given(replies())
def test_any_chunking_gives_valid_events(reply: tuple[dict, list[dict]]) -> None:
    events, final = stream(reply[1])
    for event in events:
        check_event(event)
    check_response(final)
