"""The native Responses relay over the local store (native_store.py, MODELYARD_NATIVE_STATE=local; OpenRouter's
native mode with a store): chains rebuilt here and sent whole with store: false, the provider's Responses
stored under their own ids, the stored-response API served locally and scoped to the key."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import httpx
import orjson

from modelyard.state import SCOPE_HEADER
from tests.unit.hosted_helpers import adapter, streamed

R = "/v1/responses"
OPENAI = {"MODELYARD_UPSTREAM_URL": "https://api.openai.com/v1", "MODELYARD_UPSTREAM_API_KEY": "sk-test"}
OPENROUTER = {
    "MODELYARD_UPSTREAM_URL": "https://openrouter.ai/api/v1",
    "MODELYARD_UPSTREAM_API_KEY": "sk-or-v1-secret",
    "MODELYARD_RESPONSES_MODE": "native",
}


class Provider:
    """A native Responses endpoint that answers every turn with a numbered reply (plain or streamed)."""

    def __init__(self) -> None:
        self.n = itertools.count(1)

    def response(self, body: dict) -> dict:
        n = next(self.n)
        text = f"reply {n}"
        message = {
            "type": "message", "id": f"msg_up{n}", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }  # fmt: skip
        return {
            "id": f"resp_up{n}", "object": "response", "created_at": 1, "status": "completed", "model": body["model"],
            "output": [message], "store": body.get("store", True), "previous_response_id": None,
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
        }  # fmt: skip

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not request.content:
            return httpx.Response(200, json={"object": "list", "data": []})
        body = json.loads(request.content)
        out = self.response(body)
        if not body.get("stream"):
            return httpx.Response(200, json=out)
        running = {**out, "status": "in_progress", "output": []}
        events = [
            {"type": "response.created", "sequence_number": 0, "response": running},
            {"type": "response.output_text.delta", "sequence_number": 1, "item_id": out["output"][0]["id"],
             "output_index": 0, "content_index": 0, "delta": out["output"][0]["content"][0]["text"]},
            {"type": "response.completed", "sequence_number": 2, "response": out},
        ]  # fmt: skip
        raw = b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)
        return streamed(raw)


def local(tmp_path: Path, env: dict[str, str] = OPENAI, backend: str = "openai", **extra: str):
    store = {"MODELYARD_STORE_URL": f"sqlite://{tmp_path / 'store.db'}"}
    return adapter(backend, {**env, **store, **extra}, Provider())


def upstream_bodies(script) -> list[dict]:
    return [json.loads(r.content) for r in script.requests if r.url.path.endswith("/responses")]


def test_a_three_turn_chain_by_id_goes_upstream_whole_with_store_false(tmp_path: Path) -> None:
    tc, script = local(tmp_path, MODELYARD_NATIVE_STATE="local")
    with tc:
        one = tc.post(R, json={"model": "m", "input": "first"}).json()
        assert one["id"] == "resp_up1" and one["store"] is True  # the provider's id; stored here as asked
        two = tc.post(R, json={"model": "m", "input": "second", "previous_response_id": one["id"]}).json()
        three = tc.post(R, json={"model": "m", "input": [{"role": "user", "content": "third"}],
                                 "previous_response_id": two["id"]}).json()  # fmt: skip
        assert three["previous_response_id"] == two["id"] and three["store"] is True
    sent = upstream_bodies(script)
    assert all(b["store"] is False and "previous_response_id" not in b for b in sent)
    assert [(i.get("role"), i["content"] if isinstance(i["content"], str) else i["content"][0]["text"])
            for i in sent[2]["input"]] == [
        ("user", "first"), ("assistant", "reply 1"), ("user", "second"), ("assistant", "reply 2"), ("user", "third")
    ]  # fmt: skip
    assert [i.get("id") for i in sent[2]["input"]] == [
        None,
        "msg_up1",
        None,
        "msg_up2",
        None,
    ]  # ids minted here stay here


def test_stored_api_is_local_and_scoped_to_the_key(tmp_path: Path) -> None:
    tc, script = local(tmp_path, MODELYARD_NATIVE_STATE="local")
    k1, k2 = {SCOPE_HEADER: "k1"}, {SCOPE_HEADER: "k2"}
    with tc:
        made = tc.post(R, json={"model": "m", "input": "hello"}, headers=k1).json()
        rid = made["id"]
        assert tc.get(f"{R}/{rid}", headers=k1).json() == made
        items = tc.get(f"{R}/{rid}/input_items", headers=k1).json()
        assert [i["content"] for i in items["data"]] == [[{"type": "input_text", "text": "hello"}]]
        for call in (tc.get(f"{R}/{rid}", headers=k2), tc.get(f"{R}/{rid}/input_items", headers=k2),
                     tc.delete(f"{R}/{rid}", headers=k2), tc.post(f"{R}/{rid}/cancel", headers=k2)):  # fmt: skip
            assert call.status_code == 404 and call.json()["error"]["code"] == "response_not_found"
        foreign = tc.post(R, json={"model": "m", "input": "x", "previous_response_id": rid}, headers=k2)
        assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "previous_response_not_found"
        cancel = tc.post(f"{R}/{rid}/cancel", headers=k1)
        assert cancel.status_code == 400  # not a background response
        assert tc.delete(f"{R}/{rid}", headers=k1).json() == {"id": rid, "object": "response", "deleted": True}
        assert tc.get(f"{R}/{rid}", headers=k1).status_code == 404
    assert len(upstream_bodies(script)) == 1  # the foreign chain and the stored-response calls never went upstream
    assert all(r.method == "POST" for r in script.requests if "/responses" in r.url.path)


def test_a_streamed_turn_is_stored_and_continued(tmp_path: Path) -> None:
    tc, script = local(tmp_path, MODELYARD_NATIVE_STATE="local")
    with tc:
        with tc.stream("POST", R, json={"model": "m", "input": "first", "stream": True}) as resp:
            events = [json.loads(x[6:]) for x in resp.iter_lines() if x.startswith("data: ")]
        assert [e["type"] for e in events][-1] == "response.completed"
        assert all(e["response"]["store"] is True for e in events if "response" in e)
        final = events[-1]["response"]
        assert tc.get(f"{R}/{final['id']}").json() == final
        two = tc.post(R, json={"model": "m", "input": "again", "previous_response_id": final["id"]}).json()
        assert two["status"] == "completed"
    assert [i.get("role") for i in upstream_bodies(script)[-1]["input"]] == ["user", "assistant", "user"]


def test_store_false_keeps_nothing_and_background_is_refused_by_name(tmp_path: Path) -> None:
    tc, script = local(tmp_path, MODELYARD_NATIVE_STATE="local")
    with tc:
        made = tc.post(R, json={"model": "m", "input": "x", "store": False}).json()
        assert made["store"] is False and tc.get(f"{R}/{made['id']}").status_code == 404
        bg = tc.post(R, json={"model": "m", "input": "x", "background": True})
        assert bg.status_code == 400 and bg.json()["error"]["param"] == "background"
    assert len(upstream_bodies(script)) == 1


def test_a_conversation_is_rebuilt_in_front_of_the_input(tmp_path: Path) -> None:
    tc, script = local(tmp_path, MODELYARD_NATIVE_STATE="local")
    with tc:
        conv = tc.post("/v1/conversations", json={}).json()["id"]
        tc.post(R, json={"model": "m", "input": "one", "conversation": conv})
        two = tc.post(R, json={"model": "m", "input": "two", "conversation": {"id": conv}}).json()
        assert two["conversation"] == {"id": conv}
    last = upstream_bodies(script)[-1]
    assert "conversation" not in last and [i.get("role") for i in last["input"]] == ["user", "assistant", "user"]


def test_provider_mode_still_relays_state_to_openai(tmp_path: Path) -> None:
    tc, script = local(tmp_path)  # MODELYARD_NATIVE_STATE defaults to provider
    with tc:
        tc.post(R, json={"model": "m", "input": "x", "previous_response_id": "resp_up0"})
        assert upstream_bodies(script)[-1]["previous_response_id"] == "resp_up0"
        tc.get(f"{R}/resp_up1")
    assert script.last.method == "GET" and script.last.url.path == "/v1/responses/resp_up1"


def test_openrouter_native_with_a_store_uses_it(tmp_path: Path) -> None:
    tc, script = local(tmp_path, OPENROUTER, "openrouter")
    with tc:
        one = tc.post(R, json={"model": "m", "input": "first", "store": True}).json()
        two = tc.post(R, json={"model": "m", "input": "second", "previous_response_id": one["id"]}).json()
        assert tc.get(f"{R}/{two['id']}").json() == two
    sent = upstream_bodies(script)
    assert sent[-1]["store"] is False and "previous_response_id" not in sent[-1]
    assert [i.get("role") for i in sent[-1]["input"]] == ["user", "assistant", "user"]
    assert all(r.url.path == "/api/v1/responses" for r in script.requests if r.content)


def test_openrouter_native_without_a_store_still_refuses_by_name(tmp_path: Path) -> None:
    tc, script = adapter("openrouter", OPENROUTER, Provider())
    with tc:
        for field, value in (("store", True), ("previous_response_id", "resp_1"), ("conversation", "conv_1")):
            resp = tc.post(R, json={"model": "m", "input": "x", field: value})
            assert resp.status_code == 400 and resp.json()["error"]["param"] == field
            assert "stateless" in resp.json()["error"]["message"]
    assert upstream_bodies(script) == []


def test_local_without_a_store_is_a_start_up_error() -> None:
    import pytest

    from modelyard.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="MODELYARD_NATIVE_STATE"):
        Settings.from_env("openai", {**OPENAI, "MODELYARD_NATIVE_STATE": "local"})


def test_azure_native_with_local_state_chains_through_the_deployment(tmp_path: Path) -> None:
    env = {"MODELYARD_UPSTREAM_URL": "https://res.openai.azure.com", "MODELYARD_UPSTREAM_API_KEY": "azure-key",
           "AZURE_OPENAI_DEPLOYMENT_MAP": '{"gpt-4o": "dep-4o"}'}  # fmt: skip
    tc, script = local(tmp_path, env, "azure", MODELYARD_NATIVE_STATE="local")
    with tc:
        one = tc.post(R, json={"model": "gpt-4o", "input": "first"}).json()
        two = tc.post(R, json={"model": "gpt-4o", "input": "second", "previous_response_id": one["id"]}).json()
        assert tc.get(f"{R}/{two['id']}").json() == two
    sent = upstream_bodies(script)[-1]
    assert sent["model"] == "dep-4o" and sent["store"] is False and "previous_response_id" not in sent
    assert [i.get("role") for i in sent["input"]] == ["user", "assistant", "user"]
    assert all(r.method == "POST" for r in script.requests if "/responses" in r.url.path)
