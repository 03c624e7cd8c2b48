"""Agent harnesses (docs/agent-harnesses.md): namespace and custom tools both ways, sealed reasoning,
client_metadata never upstream, text.verbosity per backend, client profiles, the forced tool choice."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import pytest

from modelyard.config import ConfigError, Settings
from modelyard.errors import APIError
from modelyard.translate import TranslateOptions, responses_to_chat
from modelyard.translate.seal import Sealer, SealError, parse_keys
from tests.unit.hosted_helpers import adapter, streamed
from tests.unit.spec import check_event, check_response
from tests.unit.test_translate_stream import chunk, stream

VLLM = {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1"}
FN = {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}}
NS = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "sub-agents",
    "tools": [
        {"type": "function", "name": "spawn_agent", "strict": False, "parameters": {"type": "object"}},
        {"type": "function", "name": "wait_agent", "parameters": {"type": "object"}},
    ],
}
PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
}
SEALER = Sealer((secrets.token_bytes(32),))
OPTS = TranslateOptions(sealer=SEALER)


def call_chunk(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    call = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return chunk({"tool_calls": [call]})


def request(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "input": "hi", "tools": [FN, NS, PATCH], **extra}


# -- namespace tools -----------------------------------------------------------------------------------
def test_namespace_members_are_flattened_for_the_engine() -> None:
    chat = responses_to_chat(request(), OPTS)
    names = [t["function"]["name"] for t in chat.body["tools"]]
    assert names == ["exec_command", "multi_agent_v1__spawn_agent", "multi_agent_v1__wait_agent", "apply_patch"]
    assert chat.echo["tools"][1] == NS and chat.echo["tools"][2] == PATCH  # echoed as sent
    assert chat.dropped == []


def test_namespaced_call_maps_back_streamed_and_not() -> None:
    req = request()
    events, final = stream([call_chunk("multi_agent_v1__spawn_agent", '{"task":"x"}'), chunk({}, "tool_calls")], req)
    item = final["output"][0]
    assert item["type"] == "function_call" and item["name"] == "spawn_agent" and item["namespace"] == "multi_agent_v1"
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["name"] == "spawn_agent" and added["item"]["namespace"] == "multi_agent_v1"
    chat = responses_to_chat(req, OPTS)
    call = {"id": "c", "type": "function", "function": {"name": "multi_agent_v1__wait_agent", "arguments": "{}"}}
    reply = {
        "choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [call]}, "finish_reason": "tool_calls"}]
    }
    whole = chat.reply(reply, response_id="resp_" + "a" * 32, created_at=1)
    assert whole["output"][0]["name"] == "wait_agent" and whole["output"][0]["namespace"] == "multi_agent_v1"
    check_response(whole)


def test_namespaced_call_in_history_goes_back_flattened() -> None:
    call = {
        "type": "function_call",
        "call_id": "c1",
        "name": "spawn_agent",
        "namespace": "multi_agent_v1",
        "arguments": "{}",
    }
    out = {"type": "function_call_output", "call_id": "c1", "output": "ok"}
    chat = responses_to_chat(request(input=[{"role": "user", "content": "hi"}, call, out]), OPTS)
    assert chat.body["messages"][1]["tool_calls"][0]["function"]["name"] == "multi_agent_v1__spawn_agent"
    assert chat.dropped == []


def test_a_flattened_name_that_clashes_is_a_400() -> None:
    clash = {**FN, "name": "multi_agent_v1__spawn_agent"}
    with pytest.raises(APIError) as err:
        responses_to_chat(request(tools=[clash, NS]), OPTS)
    assert err.value.param == "tools"


# -- custom tools --------------------------------------------------------------------------------------
def test_custom_tool_is_a_one_string_function_with_its_grammar_described() -> None:
    fn = responses_to_chat(request(), OPTS).body["tools"][3]["function"]
    assert fn["parameters"]["required"] == ["input"] and fn["parameters"]["properties"]["input"]["type"] == "string"
    assert "start: /.+/" in fn["description"] and fn["description"].startswith("Apply a patch.")


def test_custom_call_streamed_has_its_own_events() -> None:
    args = json.dumps({"input": "*** Begin Patch\n*** End Patch"})
    pieces = [call_chunk("apply_patch", args[:10]), call_chunk("apply_patch", args[10:]), chunk({}, "tool_calls")]
    pieces[1]["choices"][0]["delta"]["tool_calls"][0].pop("id")
    events, final = stream(pieces, request())
    item = final["output"][0]
    assert item["type"] == "custom_tool_call" and item["input"] == "*** Begin Patch\n*** End Patch"
    assert item["name"] == "apply_patch" and item["call_id"] == "call_1" and "arguments" not in item
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" not in kinds
    assert kinds[-4:] == [
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    done = next(e for e in events if e["type"] == "response.custom_tool_call_input.done")
    assert done["input"] == item["input"] and done["output_index"] == 0
    for event in events:
        check_event(event)


def test_custom_call_not_streamed_and_raw_arguments() -> None:
    chat = responses_to_chat(request(), OPTS)
    call = {"id": "c", "type": "function", "function": {"name": "apply_patch", "arguments": "not json"}}
    reply = {
        "choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [call]}, "finish_reason": "tool_calls"}]
    }
    whole = chat.reply(reply, response_id="resp_" + "b" * 32, created_at=1)
    assert whole["output"][0]["type"] == "custom_tool_call" and whole["output"][0]["input"] == "not json"


def test_custom_call_and_output_in_history() -> None:
    call = {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "PATCH"}
    out = {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done"}
    chat = responses_to_chat(request(input=[{"role": "user", "content": "hi"}, call, out]), OPTS)
    sent = chat.body["messages"][1]["tool_calls"][0]["function"]
    assert sent == {"name": "apply_patch", "arguments": '{"input":"PATCH"}'}
    assert chat.body["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "Done"}


def test_tool_choice_custom_and_namespaced() -> None:
    body = responses_to_chat(request(tool_choice={"type": "custom", "name": "apply_patch"}), OPTS).body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    choice = {"type": "function", "name": "spawn_agent", "namespace": "multi_agent_v1"}
    body = responses_to_chat(request(tool_choice=choice), OPTS).body
    assert body["tool_choice"]["function"]["name"] == "multi_agent_v1__spawn_agent"


# -- sealed reasoning ----------------------------------------------------------------------------------
def reasoning_reply(opts: TranslateOptions = OPTS) -> dict[str, Any]:
    chat = responses_to_chat(request(include=["reasoning.encrypted_content"], store=False), opts)
    reply = {
        "choices": [{"index": 0, "message": {"role": "assistant", "reasoning_content": "secret plan", "content": "hi"}}]
    }
    return chat.reply(reply, response_id="resp_" + "c" * 32, created_at=1)


def test_sealed_reasoning_round_trip_streamed_and_not() -> None:
    item = reasoning_reply()["output"][0]
    assert item["type"] == "reasoning" and "secret plan" not in item["encrypted_content"]
    assert SEALER.open(item["encrypted_content"]) == "secret plan"
    req = request(include=["reasoning.encrypted_content"])
    events, final = stream([chunk({"reasoning_content": "plan B"}), chunk({"content": "ok"}, "stop")], req, OPTS)
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert SEALER.open(done["item"]["encrypted_content"]) == "plan B"
    # Sent back next turn, without its text (as Codex keeps it): opened and handed to the engine.
    back = {"type": "reasoning", "id": item["id"], "summary": [], "encrypted_content": item["encrypted_content"]}
    history = [
        {"role": "user", "content": "q"},
        back,
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "n"},
    ]
    chat = responses_to_chat(request(input=history), TranslateOptions(sealer=SEALER, reasoning_history="send"))
    assert chat.body["messages"][1]["reasoning_content"] == "secret plan"
    dropped = responses_to_chat(request(input=history), OPTS)  # reasoning_history "drop": named
    assert "reasoning_content" not in dropped.body["messages"][1] and dropped.dropped == ["input[1]"]


@pytest.mark.parametrize("blob", ["tampered", "foreign", "other_key", "not_ours"])
def test_tampered_or_foreign_blob_is_a_400_naming_the_item(blob: str) -> None:
    sealed = reasoning_reply()["output"][0]["encrypted_content"]
    bad = {
        "tampered": sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB"),
        "foreign": "gAAAAABo-openai-blob",
        "other_key": Sealer((secrets.token_bytes(32),)).seal("x"),
        "not_ours": "mys1.!!!",
    }[blob]
    item = {"type": "reasoning", "summary": [], "encrypted_content": bad}
    with pytest.raises(APIError) as err:
        responses_to_chat(request(input=[{"role": "user", "content": "q"}, item]), OPTS)
    assert err.value.status == 400 and err.value.param == "input[1].encrypted_content"


def test_key_rotation_first_seals_all_open() -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    sealed_old = Sealer((old,)).seal("before")
    rotated = Sealer((new, old))
    assert rotated.open(sealed_old) == "before"
    assert Sealer((new,)).open(rotated.seal("after")) == "after"
    with pytest.raises(SealError):
        Sealer((old,)).open(rotated.seal("after"))
    assert "key" not in repr(rotated).lower().replace("keys", "")


def test_seal_keys_setting() -> None:
    k1, k2 = secrets.token_bytes(32), secrets.token_bytes(32)
    import base64

    value = f"{base64.b64encode(k1).decode()}, {k2.hex()}"
    assert parse_keys(value) == (k1, k2)
    assert Settings.from_env("vllm", {**VLLM, "MODELYARD_SEAL_KEYS": value}).seal_keys == (k1, k2)
    with pytest.raises(ConfigError, match="MODELYARD_SEAL_KEYS must be"):
        Settings.from_env("vllm", {**VLLM, "MODELYARD_SEAL_KEYS": "short"})
    assert k1.hex() not in repr(Settings.from_env("vllm", {**VLLM, "MODELYARD_SEAL_KEYS": value}))


def test_without_a_sealer_encrypted_content_is_refused_by_name() -> None:
    with pytest.raises(APIError) as err:
        responses_to_chat(request(include=["reasoning.encrypted_content"]), TranslateOptions())
    assert err.value.param == "include[0]"


# -- through the adapter: client_metadata, verbosity, profiles, forced tool choice -----------------------
CODEX_META = {"session_id": "s", "thread_id": "t", "turn_id": "u", "x-codex-turn-metadata": "{}"}


def completion(request: httpx.Request) -> httpx.Response:
    if json.loads(request.content or b"{}").get("stream"):
        line = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}  # fmt: skip
        return streamed(b"data: " + json.dumps(line).encode() + b"\n\ndata: [DONE]\n\n")
    choice = {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    return httpx.Response(
        200, json={"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice]}
    )


@pytest.mark.parametrize("stream_", [False, True])
def test_client_metadata_never_reaches_upstream(stream_: bool) -> None:
    tc, script = adapter("vllm", VLLM, completion)
    body = request(client_metadata=CODEX_META, include=["reasoning.encrypted_content"], store=False, stream=stream_)
    with tc:
        resp = tc.post("/v1/responses", json=body)
    assert resp.status_code == 200, resp.text
    assert "client_metadata" not in script.body() and "x-codex-turn-metadata" not in script.last.content.decode()


def test_client_metadata_not_relayed_natively() -> None:
    tc, script = adapter(
        "openai", {"MODELYARD_UPSTREAM_URL": "https://api.openai.com/v1", "MODELYARD_UPSTREAM_API_KEY": "k"}
    )
    with tc:
        resp = tc.post("/v1/responses", json={"model": "m", "input": "x", "client_metadata": CODEX_META})
    assert resp.status_code == 200 and "client_metadata" not in script.body()


def test_verbosity_per_backend_and_the_codex_profile() -> None:
    with pytest.raises(APIError):
        responses_to_chat(request(text={"verbosity": "low"}), OPTS)
    body = responses_to_chat(request(text={"verbosity": "low"}), TranslateOptions(verbosity_param="verbosity")).body
    assert body["verbosity"] == "low"
    tc, script = adapter("vllm", {**VLLM, "MODELYARD_CLIENTS": "codex"}, completion)
    web = {"type": "web_search", "external_web_access": False}
    with tc:
        resp = tc.post("/v1/responses", json=request(text={"verbosity": "low"}, tools=[FN, web]))
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-modelyard-dropped-params"] == "tools[1].type,text.verbosity"
    assert "verbosity" not in script.body() and len(script.body()["tools"]) == 1
    with pytest.raises(ConfigError, match="MODELYARD_CLIENTS"):
        Settings.from_env("vllm", {**VLLM, "MODELYARD_CLIENTS": "emacs"})


def test_forced_tool_choice_on_a_turns_first_step_only() -> None:
    opts = TranslateOptions(force_tool_choice="exec_command")
    assert responses_to_chat(request(), opts).body["tools"][0]["function"]["strict"] is True
    assert responses_to_chat(request(), opts).body["tool_choice"] == {
        "type": "function",
        "function": {"name": "exec_command"},
    }
    call = {"type": "function_call", "call_id": "c", "name": "exec_command", "arguments": "{}"}
    after = [{"role": "user", "content": "q"}, call, {"type": "function_call_output", "call_id": "c", "output": "ok"}]
    assert "tool_choice" not in responses_to_chat(request(input=after), opts).body
    spaced = TranslateOptions(force_tool_choice="multi_agent_v1.spawn_agent")
    assert responses_to_chat(request(), spaced).body["tool_choice"]["function"]["name"] == "multi_agent_v1__spawn_agent"
