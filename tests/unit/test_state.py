"""Stored responses, background mode and conversations (state.py, store/) on SQLite, over a scripted
engine: what is stored, chains by id, key isolation, background runs polled, cancelled and resumed."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import Settings
from modelyard.state import SCOPE_HEADER
from modelyard.store import StoredResponse, open_store
from modelyard.upstream import Upstream
from tests.unit.test_app import CHUNKS, Upstream_, sse

R = "/v1/responses"


def make(tmp_path: Path, script: Upstream_ | None = None, **env: str) -> tuple[TestClient, Upstream_]:
    script = script or Upstream_()
    settings = Settings.from_env(
        "vllm",
        {
            "MODELYARD_UPSTREAM_URL": "http://engine:8000/v1",
            "MODELYARD_READINESS_TTL": "0",
            "MODELYARD_STORE_URL": f"sqlite://{tmp_path / 'store.db'}",
            **env,
        },
    )
    upstream = Upstream(settings.upstream_url, transport=httpx.MockTransport(script))
    return TestClient(create_app(load("vllm", settings), upstream=upstream)), script


def messages(script: Upstream_) -> list[dict]:
    chats = [r for r in script.requests if r.url.path.endswith("/chat/completions")]
    return json.loads(chats[-1].content)["messages"]


def test_stored_by_default_retrieved_listed_and_deleted(tmp_path: Path) -> None:
    tc, _ = make(tmp_path)
    with tc:
        made = tc.post(R, json={"model": "m", "input": "Capital of France?"}).json()
        assert made["store"] is True and made["status"] == "completed"
        got = tc.get(f"{R}/{made['id']}").json()
        assert got == made
        items = tc.get(f"{R}/{made['id']}/input_items").json()
        assert items["object"] == "list" and items["has_more"] is False
        (item,) = items["data"]
        assert item["role"] == "user" and item["content"] == [{"type": "input_text", "text": "Capital of France?"}]
        assert items["first_id"] == items["last_id"] == item["id"]
        assert tc.delete(f"{R}/{made['id']}").json() == {"id": made["id"], "object": "response", "deleted": True}
        gone = tc.get(f"{R}/{made['id']}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "response_not_found"


def test_store_false_stores_nothing(tmp_path: Path) -> None:
    tc, _ = make(tmp_path)
    with tc:
        made = tc.post(R, json={"model": "m", "input": "x", "store": False}).json()
        assert made["store"] is False
        assert tc.get(f"{R}/{made['id']}").status_code == 404


def test_previous_response_id_rebuilds_the_conversation(tmp_path: Path) -> None:
    tc, script = make(tmp_path)
    with tc:
        one = tc.post(R, json={"model": "m", "input": "Capital of France?", "instructions": "Be brief."}).json()
        two = tc.post(R, json={"model": "m", "input": "And of Spain?", "previous_response_id": one["id"]}).json()
        assert two["previous_response_id"] == one["id"]
        assert [(m["role"], m["content"]) for m in messages(script)] == [
            ("user", "Capital of France?"),
            ("assistant", "Paris."),
            ("user", "And of Spain?"),
        ]  # instructions are the request's own: not carried over (OpenAI's rule)
        tc.post(R, json={"model": "m", "input": "And Italy?", "previous_response_id": two["id"]})
        assert [m["role"] for m in messages(script)] == ["user", "assistant", "user", "assistant", "user"]


def test_a_missing_or_foreign_id_is_previous_response_not_found(tmp_path: Path) -> None:
    tc, _ = make(tmp_path)
    with tc:
        mine = tc.post(R, json={"model": "m", "input": "x"}, headers={SCOPE_HEADER: "k1"}).json()
        for headers, rid in (({SCOPE_HEADER: "k2"}, mine["id"]), ({SCOPE_HEADER: "k1"}, "resp_nope")):
            resp = tc.post(R, json={"model": "m", "input": "y", "previous_response_id": rid}, headers=headers)
            assert resp.status_code == 404
            err = resp.json()["error"]
            assert err["code"] == "previous_response_not_found" and err["param"] == "previous_response_id"
        # Another key sees none of it.
        assert tc.get(f"{R}/{mine['id']}", headers={SCOPE_HEADER: "k2"}).status_code == 404
        assert tc.get(f"{R}/{mine['id']}/input_items", headers={SCOPE_HEADER: "k2"}).status_code == 404
        assert tc.delete(f"{R}/{mine['id']}", headers={SCOPE_HEADER: "k2"}).status_code == 404
        assert tc.get(f"{R}/{mine['id']}", headers={SCOPE_HEADER: "k1"}).status_code == 200


def test_streamed_reply_is_stored_before_it_ends(tmp_path: Path) -> None:
    tc, _ = make(tmp_path)
    with tc, tc.stream("POST", R, json={"model": "m", "input": "x", "stream": True}) as resp:
        lines = [json.loads(x[6:]) for x in resp.iter_lines() if x.startswith("data: ")]
        assert lines[0]["response"]["store"] is True
        final = lines[-1]["response"]
        assert final["status"] == "completed"
        assert tc.get(f"{R}/{final['id']}").json()["output"] == final["output"]


def test_input_items_pagination(tmp_path: Path) -> None:
    tc, _ = make(tmp_path)
    with tc:
        sent = [{"role": "user", "content": f"m{i}"} for i in range(5)]
        rid = tc.post(R, json={"model": "m", "input": sent}).json()["id"]
        page1 = tc.get(f"{R}/{rid}/input_items", params={"limit": 2, "order": "asc"}).json()
        assert [i["content"][0]["text"] for i in page1["data"]] == ["m0", "m1"] and page1["has_more"]
        page2 = tc.get(f"{R}/{rid}/input_items", params={"limit": 2, "order": "asc", "after": page1["last_id"]}).json()
        assert [i["content"][0]["text"] for i in page2["data"]] == ["m2", "m3"]
        desc = tc.get(f"{R}/{rid}/input_items").json()
        assert [i["content"][0]["text"] for i in desc["data"]] == ["m4", "m3", "m2", "m1", "m0"]
        bad = tc.get(f"{R}/{rid}/input_items", params={"limit": 0})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


class Slow(Upstream_):
    """An engine whose stream waits for a gate before its last chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat/completions"):
            self.requests.append(request)
            gate = self.gate

            class Body(httpx.AsyncByteStream):
                async def __aiter__(self):
                    yield sse(CHUNKS[:2], done=False)
                    await gate.wait()
                    yield sse(CHUNKS[2:])

            return httpx.Response(200, stream=Body(), headers={"content-type": "text/event-stream"})
        return super().__call__(request)


def poll(tc: TestClient, rid: str, until: set[str], timeout: float = 10) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = tc.get(f"{R}/{rid}").json()
        if got["status"] in until:
            return got
        time.sleep(0.02)
    raise AssertionError(f"{rid} never reached {until}: {got['status']}")


def test_background_is_queued_then_polled_to_completion(tmp_path: Path) -> None:
    tc, _ = make(tmp_path)
    with tc:
        made = tc.post(R, json={"model": "m", "input": "x", "background": True}).json()
        assert made["status"] == "queued" and made["background"] is True and made["output"] == []
        done = poll(tc, made["id"], {"completed"})
        assert done["output"][0]["content"][0]["text"] == "Paris." and done["usage"]["output_tokens"] == 2
        assert tc.post(f"{R}/{made['id']}/cancel").json()["status"] == "completed"  # over already: as it is


def test_background_cancelled_while_running(tmp_path: Path) -> None:
    script = Slow()
    tc, _ = make(tmp_path, script)
    with tc:
        made = tc.post(R, json={"model": "m", "input": "x", "background": True}).json()
        poll(tc, made["id"], {"in_progress"})
        cancelled = tc.post(f"{R}/{made['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
        assert tc.get(f"{R}/{made['id']}").json()["status"] == "cancelled"


def test_background_needs_store_and_cancel_needs_background(tmp_path: Path) -> None:
    tc, _ = make(tmp_path)
    with tc:
        resp = tc.post(R, json={"model": "m", "input": "x", "background": True, "store": False})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "background"
        rid = tc.post(R, json={"model": "m", "input": "x"}).json()["id"]
        assert tc.post(f"{R}/{rid}/cancel").status_code == 400


def test_background_stream_resumes_after_a_sequence_number(tmp_path: Path) -> None:
    script = Slow()
    tc, _ = make(tmp_path, script)
    with tc:
        with tc.stream("POST", R, json={"model": "m", "input": "x", "background": True, "stream": True}) as resp:
            first = json.loads(next(x for x in resp.iter_lines() if x.startswith("data: "))[6:])
            rid = first["response"]["id"]
        # The client left after its first event; the run goes on.
        poll(tc, rid, {"in_progress"})
        tc.portal.call(script.gate.set)
        poll(tc, rid, {"completed"})
        with tc.stream("GET", f"{R}/{rid}", params={"stream": "true", "starting_after": "1"}) as resumed:
            events = [json.loads(x[6:]) for x in resumed.iter_lines() if x.startswith("data: ")]
        assert events[0]["sequence_number"] == 2 and events[-1]["type"] == "response.completed"
        seqs = [e["sequence_number"] for e in events]
        assert seqs == list(range(2, 2 + len(seqs)))


def test_conversations(tmp_path: Path) -> None:
    tc, script = make(tmp_path)
    with tc:
        conv = tc.post(
            "/v1/conversations", json={"metadata": {"topic": "geo"}, "items": [{"role": "user", "content": "hi"}]}
        ).json()
        assert conv["object"] == "conversation" and conv["metadata"] == {"topic": "geo"}
        made = tc.post(R, json={"model": "m", "input": "Capital of France?", "conversation": conv["id"]}).json()
        assert made["conversation"] == {"id": conv["id"]}
        assert [m["role"] for m in messages(script)] == ["user", "user"]
        items = tc.get(f"/v1/conversations/{conv['id']}/items", params={"order": "asc"}).json()["data"]
        assert [i.get("role") for i in items] == ["user", "user", "assistant"]
        tc.post(R, json={"model": "m", "input": "And Spain?", "conversation": {"id": conv["id"]}})
        assert [m["role"] for m in messages(script)] == ["user", "user", "assistant", "user"]
        updated = tc.post(f"/v1/conversations/{conv['id']}", json={"metadata": {"topic": "maps"}}).json()
        assert updated["metadata"] == {"topic": "maps"}
        first = items[0]["id"]
        assert tc.get(f"/v1/conversations/{conv['id']}/items/{first}").json()["id"] == first
        assert tc.delete(f"/v1/conversations/{conv['id']}/items/{first}").json()["id"] == conv["id"]
        added = tc.post(f"/v1/conversations/{conv['id']}/items", json={"items": [{"role": "user", "content": "more"}]})
        assert added.json()["data"][0]["content"][0]["text"] == "more"
        assert tc.get(f"/v1/conversations/{conv['id']}", headers={SCOPE_HEADER: "k9"}).status_code == 404
        deleted = tc.delete(f"/v1/conversations/{conv['id']}").json()
        assert deleted == {"id": conv["id"], "object": "conversation.deleted", "deleted": True}
        resp = tc.post(R, json={"model": "m", "input": "x", "conversation": conv["id"]})
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "conversation_not_found"


def test_without_a_store_stateful_fields_are_refused_as_before(tmp_path: Path) -> None:
    tc, _ = make(tmp_path, MODELYARD_STORE_URL="")
    with tc:
        resp = tc.post(R, json={"model": "m", "input": "x", "previous_response_id": "resp_1"})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "previous_response_id"
        assert tc.get(f"{R}/resp_1").status_code == 404


async def test_a_restart_marks_what_was_running_failed(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 's.db'}"
    store = open_store(url)
    await store.start()
    envelope = {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress", "output": []}
    await store.put_response(StoredResponse("resp_1", "open", "in_progress", None, None, {}, [], envelope))
    await store.close()  # as if killed: nothing finished it
    store = open_store(url)
    await store.start()
    rec = await store.get_response("resp_1", "open")
    assert rec is not None and rec.status == "failed" and "restarted" in rec.response["error"]["message"]
    await store.close()


async def test_ttl_purges_expired_objects(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path / 's.db'}", ttl=60)
    await store.start()
    envelope = {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "output": []}
    await store.put_response(StoredResponse("resp_1", "open", "completed", None, None, {}, [], envelope))
    await store.purge(now=time.time() + 30)
    assert await store.get_response("resp_1", "open") is not None
    await store.purge(now=time.time() + 120)
    assert await store.get_response("resp_1", "open") is None
    await store.close()


@pytest.mark.parametrize("n", [50])
async def test_group_commit_stores_a_burst(tmp_path: Path, n: int) -> None:
    store = open_store(f"sqlite://{tmp_path / 's.db'}")
    await store.start()

    async def put(i: int) -> None:
        env = {"id": f"resp_{i}", "object": "response", "created_at": 1, "status": "completed", "output": []}
        await store.put_response(StoredResponse(f"resp_{i}", "open", "completed", None, None, {}, [], env))

    await asyncio.gather(*(put(i) for i in range(n)))
    assert all([await store.get_response(f"resp_{i}", "open") for i in range(n)])
    await store.close()


def ws_events(ws, until: str = "response.completed") -> list[dict]:
    events = []
    while True:
        event = ws.receive_json()
        events.append(event)
        if event["type"] in (until, "response.failed", "response.incomplete", "error"):
            return events


@pytest.mark.parametrize("store_url", ["", "store"])
def test_websocket_session_of_two_continued_turns(tmp_path: Path, store_url: str) -> None:
    url = f"sqlite://{tmp_path / 'store.db'}" if store_url else ""
    tc, script = make(tmp_path, MODELYARD_STORE_URL=url)
    with tc, tc.websocket_connect(R) as ws:
        ws.send_json({"type": "response.create", "model": "m", "input": "Capital of France?", "store": False})
        one = ws_events(ws)
        assert [e["type"] for e in one][:2] == ["response.created", "response.in_progress"]
        first = one[-1]["response"]
        assert first["status"] == "completed" and first["store"] is False
        ws.send_json(
            {"type": "response.create", "model": "m", "input": "And Spain?", "previous_response_id": first["id"]}
        )
        two = ws_events(ws)[-1]["response"]
        assert two["previous_response_id"] == first["id"]
        assert [(m["role"], m["content"]) for m in messages(script)] == [
            ("user", "Capital of France?"),
            ("assistant", "Paris."),
            ("user", "And Spain?"),
        ]
        # Unknown ids, wrong messages and transport fields are errors on the socket, which stays open.
        ws.send_json({"type": "response.create", "model": "m", "input": "x", "previous_response_id": "resp_x"})
        err = ws.receive_json()
        assert err["type"] == "error" and err["status"] == 404
        assert err["error"]["code"] == "previous_response_not_found"
        ws.send_json({"type": "session.update"})
        assert ws.receive_json()["error"]["param"] == "type"
        ws.send_json({"type": "response.create", "model": "m", "input": "x", "stream": True})
        assert ws.receive_json()["error"]["param"] == "stream"
        ws.send_json({"type": "response.create", "model": "m", "input": "x", "stream_id": "lane-1"})
        lane = ws_events(ws)
        assert {e["stream_id"] for e in lane} == {"lane-1"} and lane[-1]["type"] == "response.completed"


def test_websocket_events_match_the_sdk_types(tmp_path: Path) -> None:
    from openai.types.responses.responses_server_event import ResponsesServerEvent
    from pydantic import TypeAdapter

    adapter = TypeAdapter(ResponsesServerEvent)
    tc, _ = make(tmp_path)
    with tc, tc.websocket_connect(R) as ws:
        ws.send_json({"type": "response.create", "model": "m", "input": "hi"})
        for event in ws_events(ws):
            adapter.validate_python(event, strict=False)


def test_background_input_too_long_ends_incomplete_where_overflow_is_incomplete(tmp_path: Path) -> None:
    script = Upstream_()
    script.chat_status = 400
    script.chat_body = json.dumps({"object": "error", "message": "maximum context length is 2048 tokens"}).encode()
    script.stream_body = script.chat_body
    tc, _ = make(tmp_path, script, MODELYARD_CONTEXT_OVERFLOW="incomplete")
    with tc:
        made = tc.post(R, json={"model": "m", "input": "x", "background": True}).json()
        done = poll(tc, made["id"], {"incomplete", "failed"})
        assert done["status"] == "incomplete" and done["incomplete_details"] == {"reason": "max_output_tokens"}
        assert done["background"] is True and done["output"] == []
