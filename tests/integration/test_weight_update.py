"""A weight update under load, on two real vLLM CPU engines behind one adapter (docs/fleet.md "Weight
updates"): compose.yaml + compose.replicas.yaml, its own stack. Four clients send Responses and chat
completions, plain and streamed, back to back. Twice: `POST /admin/pause` (first waiting for what is in
flight, then with `abort`), the new weights loaded, then `POST /admin/resume` with the next policy
version. The first time both engine containers are restarted (the "new weights") and ready again; the
second time the gate stays shut a while with the engines up (weights loaded in place): one restart
of two engines is what a run can afford on a small machine, and the abort mode needs none.

Checked: every request got exactly one final answer (a success, or in abort mode the `policy_update`
error); every success names the policy version that produced it (header, and Responses metadata):
the old one for answers before the resume, the new one after; requests sent while paused waited
(nothing was answered while the gate was shut) and were served with the new version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from .fleet import ADMIN, FleetStack, Load, Outcome, replicas_healthy, send, wait_until

pytestmark = pytest.mark.integration

FILES = ["compose.yaml", "tests/integration/compose.replicas.yaml"]
ENGINES = ("vllm-cpu", "vllm-cpu-2")
HOLD_S = 15  # the gate shut without a restart: long enough for every client to queue a request at it


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetStack]:
    # Requests queued at the shut gate wait out a whole engine restart: their total timeout must cover it.
    stack = FleetStack(FILES, ["cpu"], {"MODELYARD_TOTAL_TIMEOUT": "900"})
    stack.up(tmp_path_factory.mktemp("weights"))
    try:
        yield stack
    finally:
        stack.down()


@dataclass
class Update:
    """One pause → restart → resume, with the client-side times of each step."""

    abort: bool
    version: str
    pause_sent: float = 0.0
    paused: float = 0.0
    resume_sent: float = 0.0
    resumed: float = 0.0
    pause_reply: dict | None = None
    long: list[Outcome] | None = None  # requests surely in flight when the pause came
    restart: bool = True  # restart both engines while paused; else keep the gate shut HOLD_S, engines up
    restart_s: float = 0.0


def admin(http: httpx.Client, action: str, body: dict) -> dict:
    resp = http.post(f"/vllm/admin/{action}", json=body, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return resp.json()


def long_requests(fleet: FleetStack, into: list[Outcome]) -> list[threading.Thread]:
    """A long streamed Response and a long chat stream, started so they are running when the pause comes."""

    def one(kind: str) -> None:
        with httpx.Client(base_url=fleet.url, timeout=900) as http:
            into.append(send(http, fleet.model, kind, f"long-{kind}", 200, "Count from 1 to 300, one number a line."))

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in ("responses-stream", "chat-stream")]
    for t in threads:
        t.start()
    return threads


def update_weights(fleet: FleetStack, http: httpx.Client, load: Load, up: Update) -> None:
    up.long = []
    threads = long_requests(fleet, up.long)
    time.sleep(3)  # the long ones have reached an engine
    up.pause_sent = time.monotonic()
    up.pause_reply = admin(http, "pause", {"abort": up.abort, "timeout": 600})
    up.paused = time.monotonic()
    for t in threads:
        t.join(timeout=120)
    if up.restart:
        restart = fleet.compose("restart", *ENGINES, timeout=300)
        assert restart.returncode == 0, restart.stderr
        wait_until(lambda: all(fleet.healthy(e) for e in ENGINES), 900, "both engines warm again", 2)
        wait_until(lambda: replicas_healthy(http) == {"0": 1.0, "1": 1.0}, 120, "both replicas put back")
    else:
        time.sleep(max(0.0, HOLD_S - (time.monotonic() - up.paused)))
    up.restart_s = time.monotonic() - up.paused
    up.resume_sent = time.monotonic()
    assert admin(http, "resume", {"policy_version": up.version}) == {"paused": False, "policy_version": up.version}
    up.resumed = time.monotonic()


def version_of(o: Outcome) -> str | None:
    if o.kind.startswith("responses"):
        assert o.metadata_version == o.header_version, o  # the header and the Response's metadata agree
    return o.header_version


def test_pause_update_resume_under_load(fleet: FleetStack) -> None:
    wait, abort = Update(False, "v2"), Update(True, "v3", restart=False)
    with httpx.Client(base_url=fleet.url, timeout=900) as http:
        admin(http, "resume", {"policy_version": "v1"})
        with Load(fleet.url, fleet.model) as load:
            load.wait_for(12)
            update_weights(fleet, http, load, wait)
            load.wait_for(load.count() + 12)
            update_weights(fleet, http, load, abort)
            load.wait_for(load.count() + 12)
    outcomes = load.outcomes
    everything = outcomes + (wait.long or []) + (abort.long or [])

    # Nothing lost: one final answer each, a success or (abort mode) the documented error.
    assert all(o.finals == 1 for o in everything), [o for o in everything if o.finals != 1][:3]
    assert all(o.final in ("ok", "policy_update") for o in everything), [o for o in everything if o.final not in (
        "ok", "policy_update")][:3]  # fmt: skip
    aborted = [o for o in everything if o.final == "policy_update"]
    assert all(abort.pause_sent <= o.done and o.sent <= abort.paused for o in aborted), aborted[:3]

    # Waiting mode: what ran when the pause came finished, under v1.
    assert wait.pause_reply and wait.pause_reply["drained"] and wait.pause_reply["in_flight"] == 0
    assert all(o.final == "ok" and version_of(o) == "v1" for o in wait.long or []), wait.long
    # Abort mode: the long ones were ended with the policy_update error (unless the model stopped first).
    assert abort.pause_reply and abort.pause_reply["drained"]
    assert all(o.final == "policy_update" or o.done < abort.pause_sent for o in abort.long or []), abort.long
    assert aborted, "nothing was in flight when the abort came"

    # Nothing was answered while a gate was shut; what was sent then waited and got the new version.
    for up in (wait, abort):
        # (An aborted stream's own policy_update may land just after the pause's reply: it is the abort.)
        assert not [o for o in outcomes if up.paused < o.done < up.resume_sent and o.final == "ok"], up
        # Queued: sent once the pause was asked for, answered after the resume (the clients' next requests
        # reach the gate while it drains, so they are usually sent before the pause returns).
        queued = [o for o in outcomes if up.pause_sent < o.sent < up.resume_sent < o.done]
        assert queued and all(o.final == "ok" and version_of(o) == up.version for o in queued), queued[:3]

    # Every success names the version in force when it was produced.
    for o in (o for o in outcomes if o.final == "ok"):
        want = "v1" if o.done < wait.resume_sent else "v2" if o.done < abort.resume_sent else "v3"
        assert version_of(o) == want, (want, o)

    kinds = {k: sum(o.kind == k for o in outcomes) for k in ("responses", "responses-stream", "chat", "chat-stream")}
    waits = [
        o.done - o.sent for up in (wait, abort) for o in outcomes if up.pause_sent < o.sent < up.resume_sent < o.done
    ]
    print(
        f"\nweight update under load: {len(everything)} requests {kinds}, {len(aborted)} ended with policy_update "
        f"(abort mode), 0 lost; queued while paused: {len(waits)} (longest wait {max(waits):.0f} s); "
        f"pause (wait mode) returned in {wait.paused - wait.pause_sent:.1f} s, (abort) "
        f"{abort.paused - abort.pause_sent:.1f} s; gate shut {wait.restart_s:.0f} s (both engines restarted and "
        f"ready) / {abort.restart_s:.0f} s (no restart); stack up in {fleet.started_in:.0f} s"
    )
