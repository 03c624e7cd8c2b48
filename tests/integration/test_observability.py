"""The `observability` profile: Prometheus scrapes every adapter (found by DNS, two vllm adapters and an
openai one) and the gateway (nginx-exporter), and every query of deploy/grafana/modelyard-dashboard.json
returns series once traffic went through the gateway.

The stack is the fault-injecting engine of compose.faults.yaml (no model to load) with
compose.observability.yaml on top; two client keys at the gateway give the per-key panels two keys.
Needs modelyard/prometheus (scripts/build-images prometheus; scripts/test builds it).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from testcontainers.compose import DockerCompose

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FILES = ["compose.yaml", "tests/integration/compose.faults.yaml", "tests/integration/compose.observability.yaml"]
PROFILES = ["faults", "observability"]
DASHBOARD = ROOT / "deploy/grafana/modelyard-dashboard.json"
KEYS = ("obs-key-alpha", "obs-key-bravo")
MODEL = "faulty-model"
TAG = os.environ.get("MODELYARD_TAG", "latest")
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


class Stack:
    def __init__(self, gateway_port: int, prometheus_port: int, control_port: int) -> None:
        self.gateway = httpx.Client(base_url=f"http://127.0.0.1:{gateway_port}", timeout=30)
        self.prometheus = httpx.Client(base_url=f"http://127.0.0.1:{prometheus_port}", timeout=30)
        self.ctl = httpx.Client(base_url=f"http://127.0.0.1:{control_port}", timeout=10)

    def chat(self, prefix: str, key: str, **body: Any) -> httpx.Response:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], **body}
        headers = {"authorization": f"Bearer {key}"}
        return self.gateway.post(f"{prefix}/v1/chat/completions", json=body, headers=headers)

    def targets(self) -> list[dict[str, Any]]:
        return self.prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        reply = self.prometheus.get("/api/v1/query", params={"query": expr})
        assert reply.status_code == 200, (expr, reply.text)
        return reply.json()["data"]["result"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    image = f"modelyard/prometheus:{TAG}"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        pytest.fail(f"{image} is not built: scripts/build-images prometheus")
    gateway_port, prometheus_port = free_port(), free_port()
    env_file = tmp_path_factory.mktemp("observability") / "observability.env"
    env_file.write_text(
        f"COMPOSE_PROJECT_NAME=modelyard-obs-{uuid.uuid4().hex[:8]}\nCOMPOSE_PROFILES={','.join(PROFILES)}\n"
        f"POLICY_BACKEND=vllm\nGATEWAY_PORT={gateway_port}\nPROMETHEUS_PORT={prometheus_port}\n"
        f"GATEWAY_API_KEYS={','.join(KEYS)}\nMODELYARD_TAG={TAG}\n"
    )
    compose = DockerCompose(ROOT, compose_file_name=FILES, env_file=str(env_file), profiles=PROFILES)
    try:
        compose.start()
    except Exception:
        cmd = ["docker", "compose", *sum((["-f", f] for f in FILES), []), "--env-file", str(env_file)]
        logs = subprocess.run([*cmd, "logs", "--tail", "60"], cwd=ROOT, capture_output=True, text=True)
        print(logs.stdout[-8000:], logs.stderr[-2000:])
        compose.stop()
        raise
    try:
        yield Stack(gateway_port, prometheus_port, int(compose.get_service_port("faults", 9000)))
    finally:
        compose.stop()


def wait_for(what: str, check: Any, show: Any = None, timeout: float = 60) -> None:
    """Poll check() until it is true; fail naming what, and show()'s answer when given."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            detail = f": {show()!r}" if show else ""
            pytest.fail(f"no {what} within {timeout:.0f} s{detail}")
        time.sleep(1)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, template variables as Grafana sends them for "All"."""
    board = json.loads(DASHBOARD.read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m")
            expr = expr.replace("$backend", ".*").replace("$key", ".*")
            out.append((panel["title"], expr))
    return out


def traffic(stack: Stack) -> None:
    """What lights every panel: plain and streamed replies on both backends and keys, a bad request, a
    retried 503, and a burst past the vllm adapters' 4 slots + 2 queued (queue_full)."""
    stack.ctl.post("/reset").raise_for_status()
    for key in KEYS:
        for prefix in ("/vllm", "/openai", ""):
            assert stack.chat(prefix, key).status_code == 200
            with stack.gateway.stream(
                "POST",
                f"{prefix}/v1/chat/completions",
                json={"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {key}"},
            ) as reply:
                assert reply.status_code == 200
                reply.read()
        assert stack.chat("/vllm", key, messages="not a list").status_code == 400
    stack.ctl.post("/script", json=[{"status": 503}]).raise_for_status()
    assert stack.chat("/vllm", KEYS[0]).status_code == 200  # the adapter retried the 503
    stack.ctl.post("/script", json=[{"delay": 1.0, "times": 24}]).raise_for_status()
    with ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(lambda _: stack.chat("/vllm", KEYS[1]).status_code, range(24)))
    assert 503 in statuses or 429 in statuses, statuses  # some were refused: the queue was full
    stack.ctl.post("/reset").raise_for_status()


SERVICES = ["adapter-openai", "adapter-vllm", "adapter-vllm", "gateway", "prometheus"]


def test_prometheus_scrapes_every_adapter_and_the_gateway(stack: Stack) -> None:
    def up() -> list[tuple[str, str]]:
        return sorted((t["labels"]["service"], t["health"]) for t in stack.targets())

    wait_for("every target scraped and up", lambda: up() == [(s, "up") for s in SERVICES], up)
    adapters = stack.query('up{job="adapter"} == 1')
    assert sorted(r["metric"]["service"] for r in adapters) == SERVICES[:3]
    assert stack.query('nginx_up{job="gateway"} == 1')  # the exporter reached the gateway's stub_status


def test_every_dashboard_query_returns_series(stack: Stack) -> None:
    wait_for("every target up", lambda: sum(t["health"] == "up" for t in stack.targets()) == len(SERVICES))
    traffic(stack)
    queries = dashboard_queries()
    assert len(queries) >= 20

    def empty() -> list[str]:
        return [f"{title}: {expr}" for title, expr in queries if not stack.query(expr)]

    start = time.monotonic()
    wait_for("a series for every dashboard query", lambda: not empty(), empty)
    print(f"every dashboard query has series {time.monotonic() - start:.1f} s after the traffic")
    # The template variables list both backends and both keys, as the panels split them.
    for label, match in (("backend", "modelyard_requests_total"), ("key", "modelyard_key_requests_total")):
        values = stack.prometheus.get(f"/api/v1/label/{label}/values", params={"match[]": match}).json()["data"]
        assert len(values) == 2, (label, values)
    keys = {r["metric"]["key"] for r in stack.query("sum by (key) (modelyard_key_requests_total)")}
    assert all(k.startswith("key-") for k in keys), keys  # key ids, never the keys
    backends = {r["metric"]["backend"] for r in stack.query("sum by (backend) (modelyard_requests_total)")}
    assert backends == {"vllm", "openai"}, backends
    reasons = {r["metric"]["reason"] for r in stack.query("modelyard_upstream_rejected_total")}
    assert "queue_full" in reasons, reasons
