"""Two adapters for the same backend behind the gateway, one killed under load (docs/fleet.md "Adapters in
parallel"): compose.yaml + compose.adapters.yaml with `--scale adapter-vllm=2`, PostgreSQL as the shared
store, one real vLLM CPU engine; its own stack.

Chains are started through both adapters; then four clients send Responses and chat completions, plain
and streamed, while one adapter gets `docker kill`. Checked: no request hangs; the only failures are
requests the gateway had sent to the killed adapter before it died; everything sent after the kill is
answered by the survivor; every chain, those begun through the killed adapter included, continues
through the survivor (the store is shared); usage recorded by either adapter is read from either.
The gateway's access log (request id → adapter address) says which adapter had each request.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from .conftest import logged
from .fleet import ADMIN, FleetStack, Load, wait_until

pytestmark = pytest.mark.integration

FILES = ["compose.yaml", "tests/integration/compose.adapters.yaml"]
CHAINS = 6


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetStack]:
    stack = FleetStack(FILES, ["cpu", "postgres"], {"POSTGRES_PASSWORD": "fleet-pg-password-1"})
    tmp = tmp_path_factory.mktemp("adapters")
    stack.up(tmp, "--scale", "adapter-vllm=2")
    try:
        yield stack
    finally:
        # Every service's log (the gateway's access and error log above all), kept for a failure's post-mortem.
        (tmp / "compose.log").write_text(stack.compose("logs", "--timestamps").stdout)
        print(f"\nfleet logs kept in {tmp / 'compose.log'}")
        stack.down()


def address(container: str) -> str:
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return subprocess.run(["docker", "inspect", "-f", fmt, container], capture_output=True, text=True).stdout.strip()


def tried(fleet: FleetStack, *rids: str) -> dict[str, str]:
    """Request id → the adapter addresses nginx tried for it, in order ("ip:port, ip:port"), from its access log
    (read until it names every one of `rids`)."""
    logs = logged(lambda: fleet.compose("logs", "--no-log-prefix", "gateway").stdout, *rids)
    entries = (json.loads(line) for line in logs.splitlines() if line.startswith('{"time"'))
    return {e["request_id"]: e["upstream"] for e in entries}


def served_by(fleet: FleetStack, *rids: str) -> dict[str, str]:
    """Request id → the address of the adapter that answered it (the last one nginx tried)."""
    return {rid: up.split(",")[-1].strip().rsplit(":", 1)[0] for rid, up in tried(fleet, *rids).items()}


def usage_requests(http: httpx.Client) -> int:
    resp = http.get("/v1/usage", params={"group_by": "none"}, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return sum(row["requests"] for row in resp.json()["data"])


def test_one_adapter_killed_under_load(fleet: FleetStack) -> None:
    adapters = fleet.containers("adapter-vllm")
    assert len(adapters) == 2
    ip = {c: address(c) for c in adapters}
    with httpx.Client(base_url=fleet.url, timeout=300) as http:
        # Chains begun through both adapters (the gateway takes them in turn).
        chains = []
        for i in range(CHAINS):
            rid = f"fleet-chain-{i}-{time.time_ns()}"
            body = {"model": fleet.model, "input": f"Remember the number {i}.", "max_output_tokens": 4}
            resp = http.post("/v1/responses", json=body, headers={"x-request-id": rid})
            assert resp.status_code == 200, resp.text
            chains.append((rid, resp.json()["id"]))
        # Usage recorded by both adapters lands in the shared store: either one reports all of it.
        wait_until(lambda: usage_requests(http) >= CHAINS, 60, "usage of both adapters in the store", 1)
        assert usage_requests(http) == CHAINS
        by = served_by(fleet, *(f'"request_id":"{rid}"' for rid, _ in chains))
        homes = {by[rid] for rid, _ in chains}
        assert homes == set(ip.values()), (homes, ip)
        victim = next(c for c in adapters if ip[c] == by[chains[0][0]])
        survivor = next(c for c in adapters if c != victim)
        on_victim = [resp_id for rid, resp_id in chains if by[rid] == ip[victim]]

        # The clients retry a request whose connection closed before any response, as the OpenAI SDKs do:
        # nginx's reload after the kill closes each old worker's connections once their request is done.
        with Load(fleet.url, fleet.model, timeout=300, retries=2) as load:
            load.wait_for(16)
            subprocess.run(["docker", "update", "--restart=no", victim], check=True, capture_output=True)
            kill_sent = time.monotonic()
            subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
            killed = time.monotonic()
            load.wait_for(load.count() + 24)
        # Every chain continues through the survivor, those begun on the killed adapter included.
        continued = []
        for i, (_, resp_id) in enumerate(chains):
            rid = f"fleet-chain-next-{i}-{time.time_ns()}"
            body = {"model": fleet.model, "input": "And the next?", "max_output_tokens": 4,
                    "previous_response_id": resp_id}  # fmt: skip
            resp = http.post("/v1/responses", json=body, headers={"x-request-id": rid})
            assert resp.status_code == 200 and resp.json()["previous_response_id"] == resp_id, resp.text
            continued.append(rid)
        usage_after = usage_requests(http)

    outcomes = load.outcomes
    wanted = [f'"request_id":"{rid}"' for rid in continued]
    by, paths = served_by(fleet, *wanted), tried(fleet, *wanted)
    assert all(by.get(rid) == ip[survivor] for rid in continued)
    failed = [o for o in outcomes if o.final != "ok"]
    # No hang, and only what the gateway had sent to the killed adapter before the kill may fail.
    assert not [o for o in outcomes if o.final == "hang"], failed[:3]
    # (A request the gateway's log does not name, because nginx's worker that had it went in the reload
    # that followed the kill, is counted apart.)
    assert all(o.sent < killed and ip[victim] in paths.get(o.request_id, ip[victim]) for o in failed), [
        (o, paths.get(o.request_id)) for o in failed
    ][:3]
    unlogged = [o for o in failed if o.request_id not in paths]
    after = [o for o in outcomes if o.sent > killed]
    assert after and all(o.final == "ok" and by.get(o.request_id) == ip[survivor] for o in after), [
        (o, paths.get(o.request_id)) for o in after if o.final != "ok" or by.get(o.request_id) != ip[survivor]
    ][:3]
    # A retried attempt never reached an adapter: nginx did not even log it (it logs every request it read).
    dropped = [(o, rid) for o in outcomes for rid in o.dropped]
    assert not [rid for _, rid in dropped if rid in paths], [(o, paths.get(rid)) for o, rid in dropped][:3]
    in_flight = [o for o in outcomes if o.sent < kill_sent < o.done and ip[victim] in paths.get(o.request_id, "")]
    ok_survivor = sum(o.final == "ok" and by.get(o.request_id) == ip[survivor] for o in outcomes)
    assert usage_after > ok_survivor  # the killed adapter's usage (flushed before it died) is still there
    moved = [o for o in after if ip[victim] in paths.get(o.request_id, "")]
    print(
        f"\nadapter killed under load: {len(outcomes)} requests ({len(after)} sent after the kill, all answered by "
        f"the survivor; {len(moved)} of them tried the dead address first); in flight on the killed adapter: "
        f"{len(in_flight)}, failed: {len(failed)} {sorted({o.kind for o in failed})} "
        f"({sorted({o.detail[:60] for o in failed})}; {len(unlogged)} not in the gateway log); "
        f"dropped before any response and retried: {len(dropped)} "
        f"(sent {sorted(round(o.sent - killed, 1) for o, _ in dropped)} s after the kill); "
        f"chains continued through the survivor: {len(continued)} "
        f"({len(on_victim)} begun on the killed one); usage rows' requests after: {usage_after}; "
        f"stack up in {fleet.started_in:.0f} s"
    )
