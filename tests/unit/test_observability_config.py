"""The observability profile's files, checked without Docker: the Grafana dashboard imports cleanly and
queries only metrics the adapters define, Prometheus discovers every backend's adapter, and the compose
services are locked down like the rest (the scrape itself: tests/integration/test_observability.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import modelyard.metrics
import modelyard.usage  # noqa: F401 - registers the per-key metrics
from modelyard.backends import NAMES

ROOT = Path(__file__).resolve().parents[2]
BOARD = json.loads((ROOT / "deploy/grafana/modelyard-dashboard.json").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "images/prometheus/prometheus.yml").read_text())
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def targets() -> list[dict]:
    return [t for p in BOARD["panels"] for t in p.get("targets", [])]


def test_dashboard_imports_with_a_prometheus_datasource_input() -> None:
    assert [i["name"] for i in BOARD["__inputs"]] == ["DS_PROMETHEUS"]
    assert BOARD["uid"] == "modelyard" and BOARD["schemaVersion"] >= 36
    ids = [p["id"] for p in BOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in BOARD["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == DS and panel["targets"], panel["title"]
    assert all(t["datasource"] == DS for t in targets())
    variables = {v["name"]: v for v in BOARD["templating"]["list"]}
    assert set(variables) == {"backend", "key"}
    assert all(v["includeAll"] and v["allValue"] == ".*" and v["datasource"] == DS for v in variables.values())


def test_dashboard_queries_name_only_metrics_the_adapters_define() -> None:
    defined = set(REGISTRY._names_to_collectors)  # with their _total, _bucket, ... sample names
    used = {m for t in targets() for m in re.findall(r"\bmodelyard_\w+", t["expr"])}
    assert used and used <= defined, used - defined
    for t in targets():
        expr = t["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        if "modelyard_" in expr:
            assert 'backend=~"$backend"' in expr, expr  # every adapter panel follows the backend picker


def test_dashboard_covers_what_the_issue_asks_for() -> None:
    exprs = " ".join(t["expr"] for t in targets())
    for metric in (
        "modelyard_requests_total",
        "modelyard_request_seconds_bucket",
        "modelyard_time_to_first_token_seconds_bucket",
        "modelyard_key_tokens_total",
        "modelyard_key_errors_total",
        "modelyard_key_requests_total",
        "modelyard_upstream_in_flight_requests",
        "modelyard_upstream_queue_depth",
        "modelyard_replica_healthy",
        "nginx_http_requests_total",
    ):
        assert metric in exprs, metric
    assert exprs.count('key=~"$key"') >= 4  # per-key panels


def test_prometheus_finds_every_backends_adapter_by_dns() -> None:
    jobs = {j["job_name"]: j for j in PROMETHEUS["scrape_configs"]}
    (sd,) = jobs["adapter"]["dns_sd_configs"]
    assert sd["names"] == [f"adapter-{name}" for name in NAMES] and sd["type"] == "A" and sd["port"] == 8000
    assert jobs["gateway"]["static_configs"][0]["targets"] == ["nginx-exporter:9113"]
    # `backend` is the adapters' own label: a target label of that name would rename theirs.
    assert all(r["target_label"] != "backend" for r in jobs["adapter"]["relabel_configs"])


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI (with Compose v2) is not installed")
def test_observability_profile_adds_prometheus_and_the_exporter(tmp_path: Path) -> None:
    env = tmp_path / "empty.env"
    env.write_text("")
    cmd = ["docker", "compose", "--env-file", str(env), "--profile", "cpu", "--profile", "observability"]
    out = subprocess.run([*cmd, "config", "--format", "json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    assert {"prometheus", "nginx-exporter"} <= set(services)
    for name in ("prometheus", "nginx-exporter"):
        svc = services[name]
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"] and "healthcheck" in svc, name
    (port,) = services["prometheus"]["ports"]
    assert port["host_ip"] == "127.0.0.1" and port["published"] == "9090" and port["target"] == 9090
    assert "ports" not in services["nginx-exporter"]
    assert "ports" not in services["gateway"] or all(p["target"] == 8080 for p in services["gateway"]["ports"])
