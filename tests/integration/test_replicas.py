"""Two real engine replicas behind one adapter (docs/replicas.md): compose.yaml + compose.replicas.yaml, its
own stack (two vLLM CPU engines). Sessions spread over both and stick; one replica is stopped with
`docker compose stop` while requests for many sessions keep flowing: the sessions of the replica that
stays up lose no request, those of the stopped one move to the other; started again, it is put back and
new sessions reach it. The figures (requests sent/failed, take-out and put-back times) are printed.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from testcontainers.compose import DockerCompose

from .conftest import ROOT, free_port

pytestmark = pytest.mark.integration

FILES = ["compose.yaml", "tests/integration/compose.replicas.yaml"]
SESSIONS = [f"rollout-{i}" for i in range(12)]
WORKERS = 4


@dataclass
class ReplicaStack:
    compose: DockerCompose
    port: int
    project: str
    env_file: Path
    model: str = ""
    started_in: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def compose_args(self, *args: str) -> list[str]:
        files = [a for f in FILES for a in ("-f", f)]
        return ["docker", "compose", *files, "--env-file", str(self.env_file), "--profile", "cpu", *args]

    def healthy(self, http: httpx.Client) -> dict[str, float]:
        """modelyard_replica_healthy per replica index, from the adapter's metrics."""
        text = http.get("/vllm/metrics").text
        found = re.findall(r'modelyard_replica_healthy\{[^}]*replica="(\d+)"[^}]*\} ([\d.]+)', text)
        return {index: float(value) for index, value in found}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaStack]:
    port = free_port()
    project = f"modelyard-replicas-{uuid.uuid4().hex[:8]}"
    env_file = tmp_path_factory.mktemp("replicas") / "replicas.env"
    env_file.write_text(
        f"COMPOSE_PROJECT_NAME={project}\nCOMPOSE_PROFILES=cpu\nPOLICY_BACKEND=vllm\nGATEWAY_PORT={port}\n"
    )
    compose = DockerCompose(ROOT, compose_file_name=FILES, env_file=str(env_file), profiles=["cpu"])
    start = time.monotonic()
    try:
        compose.start()
    except Exception:
        out, err = compose.get_logs()
        print(out[-6000:], err[-2000:])
        compose.stop()
        raise
    stack = ReplicaStack(compose, port, project, env_file, started_in=time.monotonic() - start)
    print(f"\nreplica stack up in {stack.started_in:.0f} s")
    try:
        with httpx.Client(base_url=stack.url, timeout=60) as http:
            stack.model = http.get("/v1/models").json()["data"][0]["id"]
        yield stack
    finally:
        compose.stop()


@dataclass
class Outcome:
    session: str
    at: float
    status: int
    replica: str | None
    error: str = ""


@dataclass
class Load:
    """Worker threads sending one short non-streamed Responses request after another, sessions in turn."""

    stack: ReplicaStack
    sessions: list[str]
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def worker(self, offset: int) -> None:
        i = offset
        with httpx.Client(base_url=self.stack.url, timeout=300) as http:
            while not self.stop.is_set():
                sid = self.sessions[i % len(self.sessions)]
                i += WORKERS
                body = {"model": self.stack.model, "input": f"Say hi to {sid}.", "max_output_tokens": 4}
                try:
                    resp = http.post("/v1/responses", json=body, headers={"x-session-id": sid})
                    out = Outcome(sid, time.monotonic(), resp.status_code, resp.headers.get("x-modelyard-replica"))
                    if resp.status_code != 200 or resp.json().get("status") not in ("completed", "incomplete"):
                        out.error = resp.text[:300]
                except httpx.HTTPError as exc:
                    out = Outcome(sid, time.monotonic(), 0, None, repr(exc))
                with self.lock:
                    self.outcomes.append(out)

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(WORKERS)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=300)

    def count(self) -> int:
        with self.lock:
            return len(self.outcomes)

    def wait_for(self, n: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < n:
            assert time.monotonic() < deadline, f"load stalled at {self.count()} requests"
            time.sleep(0.2)


def wait_until(check, timeout: float, what: str, step: float = 0.2) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic()
        time.sleep(step)
    raise AssertionError(f"{what} not within {timeout} s")


def test_failover_loses_no_request_of_the_replica_that_stays_up(replicas: ReplicaStack) -> None:
    with httpx.Client(base_url=replicas.url, timeout=300) as http:
        # Sessions spread over both replicas and stick to theirs.
        home: dict[str, str] = {}
        for sid in SESSIONS:
            resp = http.post(
                "/v1/responses",
                json={"model": replicas.model, "input": "Hi", "max_output_tokens": 2},
                headers={"x-session-id": sid},
            )
            assert resp.status_code == 200, resp.text
            home[sid] = resp.headers["x-modelyard-replica"]
        assert set(home.values()) == {"0", "1"}, home
        for sid in SESSIONS[:4]:
            resp = http.post("/v1/chat/completions", json={"model": replicas.model, "messages": [
                {"role": "user", "content": "Hi"}], "max_tokens": 2}, headers={"x-session-id": sid})  # fmt: skip
            assert resp.status_code == 200 and resp.headers["x-modelyard-replica"] == home[sid]
        assert http.get("/vllm/readyz").json()["upstream"].startswith("2/2 replicas up")

        stays = [s for s in SESSIONS if home[s] == "0"]
        moves = [s for s in SESSIONS if home[s] == "1"]
        with Load(replicas, SESSIONS) as load:
            load.wait_for(12)
            # Stop replica 1 (vllm-cpu-2) mid-run.
            stop_at = time.monotonic()
            stopper = subprocess.Popen(replicas.compose_args("stop", "vllm-cpu-2"), cwd=ROOT, stdout=subprocess.DEVNULL)
            out_at = wait_until(lambda: replicas.healthy(http).get("1") == 0.0, 60, "replica 1 taken out")
            assert stopper.wait(timeout=120) == 0
            stopped_at = time.monotonic()
            load.wait_for(load.count() + 16)
            # Started again: put back once its probe passes (vLLM's /health), while the load goes on.
            start_at = time.monotonic()
            started = subprocess.run(
                replicas.compose_args("start", "vllm-cpu-2"), cwd=ROOT, capture_output=True, text=True
            )
            assert started.returncode == 0, started.stderr
            try:
                back_at = wait_until(lambda: replicas.healthy(http).get("1") == 1.0, 480, "replica 1 put back", 0.5)
            except AssertionError:
                logs = subprocess.run(replicas.compose_args("logs", "--tail", "40", "vllm-cpu-2", "adapter-vllm"),
                                      cwd=ROOT, capture_output=True, text=True)  # fmt: skip
                print(http.get("/vllm/readyz").text, logs.stdout[-8000:], logs.stderr[-2000:])
                raise
            load.wait_for(load.count() + 4)
        assert http.get("/vllm/readyz").json()["upstream"].startswith("2/2 replicas up")
        # New sessions reach the replica that was put back (the least loaded one).
        fresh = set()
        for i in range(4):
            resp = http.post(
                "/v1/responses",
                json={"model": replicas.model, "input": "Hi", "max_output_tokens": 2},
                headers={"x-session-id": f"late-{i}"},
            )
            assert resp.status_code == 200, resp.text
            fresh.add(resp.headers["x-modelyard-replica"])
        assert "1" in fresh
        metrics = http.get("/vllm/metrics").text

    outcomes = load.outcomes
    stayed = [o for o in outcomes if o.session in stays]
    moved = [o for o in outcomes if o.session in moves]
    failed_stayed = [o for o in stayed if o.error or o.status != 200]
    failed_moved = [o for o in moved if o.error or o.status != 200]
    after_out = [o for o in moved if o.at > out_at + 1]
    print(
        f"\nreplica failover: {len(outcomes)} requests ({len(stayed)} of sessions on the replica that stayed up, "
        f"{len(failed_stayed)} failed; {len(moved)} of sessions on the stopped replica, {len(failed_moved)} failed); "
        f"taken out {out_at - stop_at:.2f} s after `docker compose stop` was issued (stop took "
        f"{stopped_at - stop_at:.1f} s); put back {back_at - start_at:.1f} s after `docker compose start`; "
        f"stack up in {replicas.started_in:.0f} s"
    )
    # The sessions whose replica stayed up lost nothing and never left it.
    assert stayed and not failed_stayed, failed_stayed[:3]
    assert {o.replica for o in stayed} == {"0"}
    # The stopped replica's sessions were answered by the other one once it was out.
    assert after_out and all(o.status == 200 and not o.error and o.replica == "0" for o in after_out), after_out[:3]
    assert not failed_moved, failed_moved[:3]
    assert re.search(r'modelyard_replica_transitions_total\{backend="vllm",replica="1",to="down"\} [1-9]', metrics)
    assert re.search(r'modelyard_replica_transitions_total\{backend="vllm",replica="1",to="up"\} [1-9]', metrics)
