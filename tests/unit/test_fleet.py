"""Engine fleets (replicas.py, admin.py, gate.py; docs/fleet.md) against scripted engines: members found by
DNS and by registration, joining and draining under load with no failed request, load-aware stickiness,
the admin API and its persistence, pause/resume for weight updates and the policy version on replies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from modelyard.admin import ADMIN_HEADER
from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import Settings
from modelyard.endpoints import Connection
from modelyard.policy import Policy
from modelyard.replicas import ReplicaSet, Route
from tests.unit.test_app import CHUNKS, sse
from tests.unit.test_replicas import CHAT, REPLY

ADMIN = {ADMIN_HEADER: "admin-secret-1"}
_ADMIN_ENV = {"MODELYARD_ADMIN_KEY": "admin-secret-1", "MODELYARD_REPLICA_PROBE_INTERVAL": "60"}


class Fleet:
    """Engines by host: each answers with its name; `slow` hosts wait for a gate before answering."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.gate = asyncio.Event()
        self.slow: set[str] = set()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if request.url.path == "/health":
            return httpx.Response(200)
        self.seen.append(host)
        if host in self.slow:
            await self.gate.wait()
        body = json.loads(request.content or b"{}")
        if body.get("stream"):
            return httpx.Response(200, content=sse(CHUNKS), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={**REPLY, "model": host})


def app(fleet: Fleet, tmp_path: Path | None = None, **env: str) -> TestClient:
    base = {"MODELYARD_UPSTREAM_URL": "http://engine-a:8000/v1", "MODELYARD_DYNAMIC_REPLICAS": "true"}
    base |= {"MODELYARD_ADMIN_KEY": "admin-secret-1", "MODELYARD_REPLICA_PROBE_INTERVAL": "60"}
    if tmp_path is not None:
        base["MODELYARD_STORE_URL"] = f"sqlite://{tmp_path / 'store.db'}"
    settings = Settings.from_env("vllm", {**base, **env})
    backend = load("vllm", settings)
    return TestClient(create_app(backend, upstream=backend.make_upstream(httpx.MockTransport(fleet))))


def chat(tc: TestClient, session: str) -> str:
    tc.cookies.clear()  # the replica cookie would keep every request on one replica
    return tc.post("/v1/chat/completions", json=CHAT, headers={"x-session-id": session}).json()["model"]


def test_registration_api_and_persistence(tmp_path: Path) -> None:
    fleet = Fleet()
    with app(fleet, tmp_path) as tc:
        assert tc.get("/admin/replicas").status_code == 401
        added = tc.post(
            "/admin/replicas",
            json={"url": "http://engine-b:8000/v1", "weight": 2, "labels": {"gpu": "h100"}},
            headers=ADMIN,
        )
        assert added.status_code == 200 and added.json()["healthy"] and added.json()["source"] == "registered"
        listed = tc.get("/admin/replicas", headers=ADMIN).json()["data"]
        assert [(r["url"], r["source"]) for r in listed] == [
            ("http://engine-a:8000/v1", "static"),
            ("http://engine-b:8000/v1", "registered"),
        ]
        hosts = {chat(tc, f"s{i}") for i in range(6)}
        assert hosts == {"engine-a", "engine-b"}
        bad = tc.post("/admin/replicas", json={"url": "engine-c"}, headers=ADMIN)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "url"
    with app(fleet, tmp_path) as tc:  # an adapter restart keeps what was registered
        urls = [r["url"] for r in tc.get("/admin/replicas", headers=ADMIN).json()["data"]]
        assert urls == ["http://engine-a:8000/v1", "http://engine-b:8000/v1"]
        gone = tc.request("DELETE", "/admin/replicas", json={"url": "http://engine-b:8000/v1"}, headers=ADMIN)
        assert gone.json() == {"url": "http://engine-b:8000/v1", "deleted": True}
        assert {chat(tc, f"t{i}") for i in range(4)} == {"engine-a"}
    with app(fleet, tmp_path) as tc:
        assert len(tc.get("/admin/replicas", headers=ADMIN).json()["data"]) == 1


def test_admin_api_is_off_without_a_key() -> None:
    with app(Fleet(), MODELYARD_ADMIN_KEY="") as tc:
        assert tc.get("/admin/replicas", headers=ADMIN).status_code == 404


async def test_members_join_and_drain_under_load_with_no_failed_request() -> None:
    """DNS says who the members are; one leaves while requests run on it: they finish, none fails."""
    fleet = Fleet()
    answers = [["http://engine-a:8000/v1", "http://engine-b:8000/v1"]]

    async def discover() -> list[str]:
        return answers[-1]

    async def probe(ep: Any) -> tuple[bool, str]:
        return True, "ok"

    eps = ReplicaSet(
        [], Connection(transport=httpx.MockTransport(fleet)), Policy(), "vllm", probe=probe, discover=discover
    )
    from modelyard.upstream import Upstream

    up = Upstream(endpoints=eps, policy=Policy(), name="vllm")
    await eps.start()
    assert [r.host for r in eps.replicas] == ["engine-a:8000", "engine-b:8000"]
    fleet.slow.add("engine-b")
    running = [asyncio.create_task(up.call("POST", "/chat/completions", CHAT)) for _ in range(6)]
    await asyncio.sleep(0.05)
    on_b = eps.by_index[1].in_flight
    assert on_b > 0
    answers.append(["http://engine-a:8000/v1", "http://engine-c:8000/v1"])  # b goes, c comes
    await eps.probe_all()
    assert [r.host for r in eps.replicas] == ["engine-a:8000", "engine-c:8000"] and 1 in eps.draining
    more = [await up.call("POST", "/chat/completions", CHAT) for _ in range(4)]
    assert {r.json["model"] for r in more} <= {"engine-a", "engine-c"}
    fleet.gate.set()
    done = await asyncio.gather(*running)
    assert all(r.json["model"] in ("engine-a", "engine-b") for r in done)  # every one answered
    await eps.probe_all()
    assert not eps.draining and 1 not in eps.by_index  # b's pool closed once it carried nothing
    await up.aclose()


async def test_a_session_moves_off_a_replica_far_busier_than_the_least_loaded() -> None:
    async def probe(ep: Any) -> tuple[bool, str]:
        return True, "ok"

    urls = ["http://engine-a:8000/v1", "http://engine-b:8000/v1"]
    eps = ReplicaSet(urls, Connection(), Policy(), "vllm", probe=probe, rebalance_factor=2.0)
    a, b = eps.replicas
    eps.sessions["s"] = a.index
    route = Route("s", None)
    a.in_flight, b.in_flight = 2, 0
    assert eps.pick(route, set()) is a  # 2 is not more than 2 x max(0, 1)
    a.in_flight = 3
    assert eps.pick(route, set()) is b  # far busier: the session moves
    eps.rebalance_factor = 0
    assert eps.pick(route, set()) is a  # 0: sessions never move while their replica is up
    await eps.aclose()


def test_pause_waits_for_in_flight_then_resume_stamps_the_policy_version() -> None:
    fleet = Fleet()
    with app(fleet) as tc:
        tc.portal.call(fleet.gate.set)
        before = tc.post("/v1/responses", json={"model": "m", "input": "x"})
        assert "x-modelyard-policy-version" not in before.headers
        paused = tc.post("/admin/pause", json={}, headers=ADMIN).json()
        assert paused["paused"] and paused["drained"]

        async def late() -> httpx.Response:  # sent while paused: waits, then runs under the new version
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tc.app), base_url="http://a") as c:
                return await c.post("/v1/responses", json={"model": "m", "input": "x"})

        async def scenario() -> tuple[httpx.Response, dict]:
            task = asyncio.create_task(late())
            await asyncio.sleep(0.1)
            assert not task.done()  # waiting at the gate
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tc.app), base_url="http://a") as c:
                resumed = (await c.post("/admin/resume", json={"policy_version": "step-7"}, headers=ADMIN)).json()
            return await task, resumed

        resp, resumed = tc.portal.call(scenario)
        assert resumed == {"paused": False, "policy_version": "step-7"}
        assert resp.status_code == 200 and resp.headers["x-modelyard-policy-version"] == "step-7"
        assert resp.json()["metadata"]["policy_version"] == "step-7"
        chat = tc.post("/v1/chat/completions", json=CHAT)
        assert chat.headers["x-modelyard-policy-version"] == "step-7"
        with tc.stream("POST", "/v1/responses", json={"model": "m", "input": "x", "stream": True}) as s:
            assert s.headers["x-modelyard-policy-version"] == "step-7"
            first = json.loads(next(x for x in s.iter_lines() if x.startswith("data: "))[6:])
            assert first["response"]["metadata"]["policy_version"] == "step-7"


def test_pause_with_abort_ends_in_flight_generations_with_a_clear_error() -> None:
    fleet = Fleet()
    fleet.slow.add("engine-a")
    with app(fleet) as tc:

        async def scenario() -> tuple[httpx.Response, dict]:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tc.app), base_url="http://a") as c:
                task = asyncio.create_task(c.post("/v1/responses", json={"model": "m", "input": "x"}))
                await asyncio.sleep(0.1)
                paused = (await c.post("/admin/pause", json={"abort": True, "timeout": 5}, headers=ADMIN)).json()
                return await task, paused

        resp, paused = tc.portal.call(scenario)
        assert paused["drained"]
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "policy_update"
        assert "weights are being updated" in resp.json()["error"]["message"]


class _HeldStream(httpx.AsyncByteStream):
    """A chat stream whose first chunk comes at once and the rest only once `release` is set."""

    def __init__(self, release: asyncio.Event) -> None:
        self.release = release

    async def __aiter__(self):
        first, rest = sse(CHUNKS).split(b"\n\n", 1)
        yield first + b"\n\n"
        await self.release.wait()
        yield rest


def test_pause_with_abort_ends_a_chat_stream_with_the_policy_update_error() -> None:
    release = asyncio.Event()

    def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200)
        return httpx.Response(200, stream=_HeldStream(release), headers={"content-type": "text/event-stream"})

    settings = Settings.from_env("vllm", {"MODELYARD_UPSTREAM_URL": "http://engine-a:8000/v1", **_ADMIN_ENV})
    backend = load("vllm", settings)
    with TestClient(create_app(backend, upstream=backend.make_upstream(httpx.MockTransport(engine)))) as tc:

        async def scenario() -> tuple[bytes, dict]:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tc.app), base_url="http://a") as c:

                async def read() -> bytes:
                    async with c.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as s:
                        return await s.aread()

                body = asyncio.create_task(read())
                await asyncio.sleep(0.1)
                pause = asyncio.create_task(c.post("/admin/pause", json={"abort": True, "timeout": 5}, headers=ADMIN))
                await asyncio.sleep(0.1)
                release.set()  # the engine's next chunk: the stream sees the abort there
                return await body, (await pause).json()

        raw, paused = tc.portal.call(scenario)
    assert paused["drained"]
    last = [line for line in raw.decode().splitlines() if line.startswith("data: ")][-1]
    assert json.loads(last[6:])["error"]["code"] == "policy_update" and b"[DONE]" not in raw


def test_a_request_sent_while_paused_waits_even_with_every_replica_out() -> None:
    """The engines restart while the gate is shut: what arrives then waits for resume, not a 503."""
    fleet = Fleet()
    settings = Settings.from_env(
        "vllm", {"MODELYARD_UPSTREAM_URL": "http://engine-a:8000/v1,http://engine-b:8000/v1", **_ADMIN_ENV}
    )
    backend = load("vllm", settings)
    up = backend.make_upstream(httpx.MockTransport(fleet))
    with TestClient(create_app(backend, upstream=up)) as tc:
        assert tc.post("/admin/pause", json={}, headers=ADMIN).json()["drained"]
        for r in up.endpoints.replicas:
            r.healthy = False  # both engines restarting

        async def scenario() -> tuple[httpx.Response, bool]:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tc.app), base_url="http://a") as c:
                task = asyncio.create_task(c.post("/v1/responses", json={"model": "m", "input": "x"}))
                await asyncio.sleep(0.1)
                waited = not task.done()
                for r in up.endpoints.replicas:
                    r.healthy = True  # back with the new weights
                await c.post("/admin/resume", json={"policy_version": "v2"}, headers=ADMIN)
                return await task, waited

        resp, waited = tc.portal.call(scenario)
    assert waited and resp.status_code == 200 and resp.json()["metadata"]["policy_version"] == "v2"


@pytest.mark.parametrize("body", [{"abort": "yes"}, {"timeout": -1}])
def test_pause_checks_its_body(body: dict) -> None:
    with app(Fleet()) as tc:
        assert tc.post("/admin/pause", json=body, headers=ADMIN).status_code == 400


def test_fallback_takes_what_the_policy_backend_cannot_and_says_so() -> None:
    from modelyard import metrics
    from modelyard.upstream import Fallback, Upstream

    class Down(Fleet):
        async def __call__(self, request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

    hosted: list[dict] = []

    def catalog(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        hosted.append({"body": body, "auth": request.headers.get("authorization")})
        return httpx.Response(200, json={**REPLY, "model": body["model"]})

    settings = Settings.from_env(
        "vllm",
        {"MODELYARD_UPSTREAM_URL": "http://engine-a:8000/v1", "MODELYARD_BREAKER_FAILURES": "1",
         "MODELYARD_RETRIES": "0", "MODELYARD_RETURN_TOKEN_IDS": "false"},
    )  # fmt: skip
    backend = load("vllm", settings)
    up = backend.make_upstream(httpx.MockTransport(Down()))
    fb = Upstream("https://catalog.example/v1", headers={"authorization": "Bearer fb-key"},
                  transport=httpx.MockTransport(catalog), name="vllm-catalog", errors=backend)  # fmt: skip
    up.fallback = Fallback("catalog", fb, "meta/llama-3.1-8b-instruct")
    before = metrics.FALLBACKS.labels("vllm-catalog", "upstream_circuit_open")._value.get()
    with TestClient(create_app(backend, upstream=up)) as tc:
        first = tc.post("/v1/chat/completions", json={**CHAT, "chat_template_kwargs": {"x": 1}})
        assert first.status_code == 502  # the engine refused after the request started: no fallback
        moved = tc.post("/v1/chat/completions", json=CHAT)  # the circuit is open now: not started, so moved
        assert moved.status_code == 200 and moved.headers["x-modelyard-fallback"] == "catalog"
        assert moved.json()["model"] == "meta/llama-3.1-8b-instruct"
        resp = tc.post("/v1/responses", json={"model": "m", "input": "x"})
        assert resp.status_code == 200 and resp.headers["x-modelyard-fallback"] == "catalog"
    assert hosted[0]["auth"] == "Bearer fb-key" and "chat_template_kwargs" not in hosted[0]["body"]
    assert metrics.FALLBACKS.labels("vllm-catalog", "upstream_circuit_open")._value.get() - before == 2
