"""The store on a real PostgreSQL server (the `modelyard/postgres` image of the `postgres` profile), the same
checks as on SQLite, and what only a shared store gives: two adapters, one chain. Skips where the image
is missing (scripts/test builds it)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
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
from tests.unit.test_app import Upstream_

IMAGE = "modelyard/postgres:latest"
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        pytest.skip(f"{IMAGE} is not built (scripts/build-images postgres)")
    port, name = _free_port(), f"modelyard-pg-test-{uuid.uuid4().hex[:8]}"
    run = ["docker", "run", "-d", "--rm", "--name", name, "-e", "POSTGRES_PASSWORD=test-pw"]
    subprocess.run([*run, "-p", f"127.0.0.1:{port}:5432", IMAGE], check=True, capture_output=True)
    try:
        for _ in range(120):
            ok = subprocess.run(["docker", "exec", name, "pg_isready", "-h", "127.0.0.1", "-q"], capture_output=True)
            if ok.returncode == 0:
                break
            time.sleep(0.5)
        else:
            pytest.fail("PostgreSQL did not become ready in 60 s")
        yield f"postgresql://modelyard:test-pw@127.0.0.1:{port}/modelyard"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def env_record(rid: str, status: str = "completed") -> StoredResponse:
    envelope = {"id": rid, "object": "response", "created_at": 1, "status": status, "output": []}
    return StoredResponse(rid, "open", status, None, None, {}, [], envelope)


async def test_store_api_on_postgres(pg_url: str) -> None:
    store = open_store(pg_url, ttl=60)
    await store.start()
    try:
        rid = f"resp_{uuid.uuid4().hex}"
        await asyncio.gather(*(store.put_response(env_record(f"{rid}{i}")) for i in range(50)))  # group commit
        assert all([await store.get_response(f"{rid}{i}", "open") for i in range(50)])
        assert await store.get_response(f"{rid}0", "other-key") is None
        await store.add_events(f"{rid}0", [{"type": "x", "sequence_number": n} for n in range(5)])
        assert [e["sequence_number"] for e in await store.events_after(f"{rid}0", 2)] == [3, 4]
        await store.purge(now=time.time() + 120)
        assert await store.get_response(f"{rid}0", "open") is None
        cid = f"conv_{uuid.uuid4().hex}"
        await store.put_conversation(cid, "open", 1, {"a": "b"})
        await store.add_items(cid, [{"id": "i1", "type": "message"}, {"id": "i2", "type": "message"}])
        assert [i["id"] for i in await store.items(cid)] == ["i1", "i2"]
        assert await store.delete_item(cid, "i1") and [i["id"] for i in await store.items(cid)] == ["i2"]
    finally:
        await store.close()


async def test_migrations_run_once_and_restart_marks_running_failed(pg_url: str) -> None:
    rid = f"resp_{uuid.uuid4().hex}"
    first, second = open_store(pg_url), open_store(pg_url)
    await asyncio.gather(first.start(), second.start())  # adapters starting together: one migration
    await first.put_response(env_record(rid, "in_progress"))
    await first.close()
    await second.close()
    again = open_store(pg_url)
    await again.start()
    try:
        rec = await again.get_response(rid, "open")
        assert rec is not None and rec.status == "failed"
    finally:
        await again.close()


def adapter(pg_url: str, script: Upstream_) -> TestClient:
    settings = Settings.from_env(
        "vllm", {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1", "MODELYARD_STORE_URL": pg_url}
    )
    upstream = Upstream(settings.upstream_url, transport=httpx.MockTransport(script))
    return TestClient(create_app(load("vllm", settings), upstream=upstream))


def test_a_chain_made_through_one_adapter_continues_through_the_other(pg_url: str, tmp_path: Path) -> None:
    one, two = Upstream_(), Upstream_()
    with adapter(pg_url, one) as a, adapter(pg_url, two) as b:
        first = a.post(
            "/v1/responses", json={"model": "m", "input": "Capital of France?"}, headers={SCOPE_HEADER: "k1"}
        )
        rid = first.json()["id"]
        second = b.post(
            "/v1/responses",
            json={"model": "m", "input": "And Spain?", "previous_response_id": rid},
            headers={SCOPE_HEADER: "k1"},
        )
        assert second.status_code == 200 and second.json()["previous_response_id"] == rid
        import json

        sent = json.loads(two.requests[-1].content)["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        foreign = b.post(
            "/v1/responses",
            json={"model": "m", "input": "x", "previous_response_id": rid},
            headers={SCOPE_HEADER: "k2"},
        )
        assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "previous_response_not_found"
