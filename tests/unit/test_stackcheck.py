"""scripts/stackcheck.py and scripts/doctor: the port check, each verdict, and the doctor on a healthy and on a
broken stack (docker and the gateway faked: every fact comes from a table)."""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import stackcheck as sc  # noqa: E402

_loader = importlib.machinery.SourceFileLoader("doctor", str(ROOT / "scripts" / "doctor"))
_spec = importlib.util.spec_from_loader("doctor", _loader)
doctor = importlib.util.module_from_spec(_spec)
_loader.exec_module(doctor)


# -- the port -------------------------------------------------------------------------------------------
def test_a_port_someone_listens_on_is_not_free_and_its_holder_is_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not sc.port_is_free("127.0.0.1", port)
        assert not sc.port_is_free("0.0.0.0", port)  # a wildcard bind collides with it too
        holder = sc.port_holder(port)
        assert holder and f"(pid {__import__('os').getpid()})" in holder
    assert sc.port_is_free("127.0.0.1", port)
    assert sc.port_holder(port) is None


def test_listening_inodes_reads_proc_net_tcp() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n"
        "   1: 0100007F:1F90 0100007F:D3C2 01 00000000:00000000 00:00000000 00000000     0        0 4343 1\n"
        "   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1\n"
    )
    assert sc.listening_inodes(table, 8080) == {"4242"}  # listening only, not the established one
    assert sc.listening_inodes(table, 8081) == {"4444"}


def test_port_verdicts() -> None:
    busy = sc.port_verdict(
        "127.0.0.1", 8080, False, "python3 (pid 7): python3 -m http.server 8080", None, "modelyard", 8081
    )
    assert busy.failed and "127.0.0.1:8080" in busy.detail and "python3 (pid 7)" in busy.detail
    assert any("gateway.port" in n and "8081" in n for n in busy.notes)
    theirs = sc.port_verdict("127.0.0.1", 8080, False, None, ("web-1", "other", "web"), "modelyard", None)
    assert theirs.failed and "container web-1 (compose project other)" in theirs.detail
    ours = sc.port_verdict(
        "127.0.0.1", 8080, False, None, ("modelyard-gateway-1", "modelyard", "gateway"), "modelyard", None
    )
    assert ours.level == "ok"  # up again on a running stack
    assert sc.port_verdict("127.0.0.1", 8080, True, None, None, "modelyard", None).level == "ok"
    unseen = sc.port_verdict("127.0.0.1", 8080, False, None, None, "modelyard", None)
    assert unseen.failed and "another program" in unseen.detail and "8081" in unseen.notes[0]


def test_check_port_with_a_listener_and_a_docker_publisher() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        verdict = sc.check_port({"GATEWAY_PORT": str(port)}, "modelyard", lambda cmd: (0, ""))
        assert verdict.failed and f":{port} is already in use by python" in verdict.detail
    # Docker may publish without a proxy process: the container is found all the same.
    published = sc.check_port({"GATEWAY_PORT": str(port)}, "modelyard", lambda cmd: (0, "x-web-1\tx\tweb\n"))
    assert published.failed and "container x-web-1" in published.detail


# -- services, logs ---------------------------------------------------------------------------------------
def test_parse_ps_takes_an_array_or_lines() -> None:
    row = {"Service": "gateway", "State": "running", "Health": "healthy"}
    assert sc.parse_ps(json.dumps([row])) == [row] == sc.parse_ps(json.dumps(row) + "\n")
    assert sc.parse_ps("") == []


@pytest.mark.parametrize(
    ("row", "level", "text"),
    [
        (None, "FAIL", "not created"),
        ({"State": "running", "Health": "healthy"}, "ok", "running, healthy"),
        ({"State": "running", "Health": ""}, "ok", "no health check"),
        ({"State": "running", "Health": "starting"}, "warn", "starting"),
        ({"State": "running", "Health": "unhealthy"}, "FAIL", "unhealthy"),
        ({"State": "exited", "ExitCode": 2}, "FAIL", "exited (exit status 2)"),
        ({"State": "created"}, "FAIL", "created"),
        ({"State": "restarting"}, "FAIL", "restarting"),
    ],
)
def test_service_verdicts(row: dict | None, level: str, text: str) -> None:
    verdict = sc.service_verdict("adapter-openai", row)
    assert verdict.level == level and text in verdict.detail and verdict.item == "service adapter-openai"


def test_a_service_that_could_not_start_carries_dockers_error() -> None:
    error = "driver failed programming external connectivity: bind 127.0.0.1:8080: address already in use"
    verdict = sc.service_verdict("gateway", {"State": "created"}, error)
    assert verdict.failed and error in verdict.render()


def test_relevant_log_lines_pick_warnings_errors_and_5xx() -> None:
    logs = "\n".join([
        'adapter-openai-1  | {"time":"t","level":"info","logger":"x","message":"started"}',
        'adapter-openai-1  | {"level":"warning","logger":"x","message":"upstream failing","error":"ConnectError"}',
        "adapter-openai-1  | INFO:     127.0.0.1:1 - GET /readyz 503",
        "adapter-openai-1  | httpx.ConnectError: [Errno 101] Network is unreachable",
        'gateway-1  | {"time":"t","method":"GET","uri":"/v1/models","status":502}',
        'gateway-1  | {"time":"t","method":"GET","uri":"/v1/models","status":200}',
        "gateway-1  | 2026/12/01 [error] 30#30: *1 connect() failed (111: Connection refused)",
    ])  # fmt: skip
    lines = sc.relevant_log_lines(logs)
    assert lines == [
        'warning: upstream failing {"error": "ConnectError"}',
        "httpx.ConnectError: [Errno 101] Network is unreachable",
        "GET /v1/models -> 502",
        "2026/12/01 [error] 30#30: *1 connect() failed (111: Connection refused)",
    ]
    assert len(sc.relevant_log_lines("\n".join(["error"] * 20), n=3)) == 3


# -- backends, gateway, model -------------------------------------------------------------------------------
def test_readiness_verdicts_carry_the_reason() -> None:
    ready = sc.readiness_verdict("vllm", 200, '{"status":"ready","backend":"vllm","upstream":"ok"}')
    assert ready.level == "ok" and ready.detail == "ready: ok" and ready.item == "backend vllm"
    down = '{"status":"not_ready","backend":"openai","upstream":"Upstream is failing: ConnectError: unreachable"}'
    verdict = sc.readiness_verdict("openai", 503, down)
    assert verdict.failed and "readyz 503" in verdict.detail and "ConnectError: unreachable" in verdict.detail
    assert sc.readiness_verdict("nim", None, "container is restarting").failed
    assert "{" in sc.readiness_verdict("nim", 503, '{"upstream": {"replicas": 0}}').detail


def test_gateway_verdicts_only_trust_modelyards_healthz() -> None:
    ours = '{"status":"ok","service":"modelyard-gateway"}'
    assert sc.gateway_verdict("127.0.0.1", 8080, (200, ours), []).level == "ok"
    assert "2 client keys" in sc.gateway_verdict("127.0.0.1", 8080, (200, ours), ["a", "b"]).detail
    assert "open" in sc.gateway_verdict("127.0.0.1", 8080, (200, ours), []).detail
    assert sc.gateway_verdict("0.0.0.0", 8080, (200, ours), []).level == "warn"  # open to the network
    html = "<html><body><h1>404 Not Found</h1></body></html>"
    other = sc.gateway_verdict("127.0.0.1", 8080, (404, html), [])
    assert other.failed and "not modelyard's gateway" in other.detail and "gateway.port" in other.notes[0]
    assert sc.gateway_verdict("127.0.0.1", 8080, (200, '{"status":"ok"}'), []).failed
    assert sc.gateway_verdict("127.0.0.1", 8080, None, []).failed
    assert sc.gateway_identity(ours) and not sc.gateway_identity("[]") and not sc.gateway_identity(None)


def test_model_verdicts() -> None:
    vllm = json.dumps({"data": [{"id": "SmolLM2-135M-Instruct", "max_model_len": 2048}]})
    assert sc.model_verdict("cpu", (200, vllm)).detail == "SmolLM2-135M-Instruct, max length 2048 tokens"
    hosted = json.dumps({"data": [{"id": "gpt-4.1"}, {"id": "o4-mini"}]})
    assert sc.model_verdict("openai", (200, hosted)).level == "ok"
    assert sc.model_verdict("vllm", (200, hosted)).level == "warn"
    assert sc.model_verdict("cpu", (401, '{"error":{}}')).failed
    assert sc.model_verdict("cpu", (200, '{"data": []}')).failed
    assert sc.model_verdict("cpu", None).failed


# -- versions, images, disk ---------------------------------------------------------------------------------
def test_versions_verdicts() -> None:
    assert sc.versions_verdict("20.10.24+dfsg1", "2.40.3").level == "ok"
    assert sc.versions_verdict("20.10.24", "v2.19.1").failed  # depends_on required: false needs 2.20
    assert sc.versions_verdict("19.03.1", "2.29.0").level == "warn"
    assert sc.versions_verdict(None, None).failed and sc.versions_verdict("24.0.7", None).failed


def test_image_verdicts_against_their_source() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    built = now - timedelta(hours=3)
    fresh = sc.image_verdict(
        "modelyard/gateway:latest", built, (built.timestamp() - 60, "images/gateway/x"), now, False
    )
    assert fresh.level == "ok" and "built 3 h ago" in fresh.detail
    stale = sc.image_verdict(
        "modelyard/adapter:latest", built, (now.timestamp() - 600, "services/modelyard/app.py"), now, False
    )
    assert stale.level == "warn" and "services/modelyard/app.py changed 2 h after the build" in stale.detail
    assert sc.image_verdict("modelyard/adapter:latest", built, None, now, True).level == "warn"
    assert sc.image_verdict("modelyard/vllm-cpu:latest", None, None, now, False).failed
    assert sc.parse_time("2026-12-01T09:41:02.123456789Z") == datetime(2026, 12, 1, 9, 41, 2, tzinfo=UTC)
    assert sc.parse_time("2026-12-01T10:41:02+01:00") == datetime(2026, 12, 1, 9, 41, 2, tzinfo=UTC)


def test_newest_source_skips_caches(tmp_path: Path) -> None:
    (tmp_path / "src" / "__pycache__").mkdir(parents=True)
    (tmp_path / "src" / "a.py").write_text("")
    (tmp_path / "src" / "__pycache__" / "a.cpython-311.pyc").write_text("")
    assert sc.newest_source(["src", "missing"], tmp_path)[1] == "src/a.py"


def test_disk_verdicts() -> None:
    gib = 2**30
    assert sc.disk_verdict("/var/lib/docker", 50 * gib, 100 * gib).level == "ok"
    assert sc.disk_verdict("/var/lib/docker", 5 * gib, 100 * gib).level == "warn"
    assert sc.disk_verdict("/var/lib/docker", gib, 100 * gib).failed
    assert sc.disk_verdict("/x", None, None).level == "warn"


def test_last_health_output() -> None:
    log = [{"Output": "ok"}, {"Output": "not ready: HTTP Error 503:\n Service Unavailable\n"}]
    assert sc.last_health_output(json.dumps(log)) == "not ready: HTTP Error 503: Service Unavailable"
    assert sc.last_health_output("null") == "" == sc.last_health_output("")


def test_read_env(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# comment\nGATEWAY_PORT=8090\nGATEWAY_API_KEYS='k1,k2'\nEMPTY=\n")
    assert sc.read_env(env) == {"GATEWAY_PORT": "8090", "GATEWAY_API_KEYS": "k1,k2", "EMPTY": ""}
    assert sc.read_env(tmp_path / "none") == {}


# -- the doctor on a whole stack ------------------------------------------------------------------------------
NOW = datetime.now(UTC)
SERVICES = "gateway\nadapter-openai\n"
IMAGES = "modelyard/gateway:latest\nmodelyard/adapter:latest\n"


def fake_docker(rows: list[dict], readyz: tuple[int, str], logs: str = "") -> sc.Runner:
    def runner(cmd: list[str]) -> tuple[int, str]:
        text = " ".join(cmd)
        if "version --format" in text:
            return 0, "20.10.24\n"
        if "compose version" in text:
            return 0, "2.40.3\n"
        if text.endswith("config --services"):
            return 0, SERVICES
        if text.endswith("config --images"):
            return 0, IMAGES
        if "ps -a --format json" in text:
            return 0, "\n".join(json.dumps(r) for r in rows)
        if " exec -T " in text:
            return 0, f"{readyz[0]}\n{readyz[1]}"
        if " logs " in text:
            return 0, logs
        if "image inspect" in text:
            return 0, f"sha256:img {(NOW + timedelta(days=3650)).isoformat()}"  # newer than any source file
        if "{{.Image}}" in text:
            return 0, "sha256:img\n"
        if "{{json .State.Health.Log}}" in text:
            return 0, json.dumps([{"ExitCode": 1, "Output": "not ready: HTTP Error 503: Service Unavailable\n"}])
        if "{{.State.Error}}" in text:
            return 0, "\n"
        if "docker ps --filter" in text:
            return 0, ""
        if "DockerRootDir" in text:
            return 0, "/var/lib/docker\n"
        raise AssertionError(f"unexpected command {text}")

    return runner


def run_doctor(monkeypatch, tmp_path: Path, runner: sc.Runner, answers: dict) -> list[sc.Verdict]:
    env = tmp_path / ".env"
    env.write_text("COMPOSE_PROFILES=openai\nGATEWAY_PORT=8080\n")
    monkeypatch.setattr(sc, "http_get", lambda url, key=None, timeout=10: answers.get(url.rsplit("/", 1)[1]))
    monkeypatch.setattr(sc, "disk_usage", lambda path: (80 * 2**30, 200 * 2**30))
    monkeypatch.setattr(sc, "port_is_free", lambda bind, port: True)
    args = argparse.Namespace(env_file=str(env), file=None, profile=None, port=False)
    return doctor.doctor(args, runner)


def test_the_doctor_on_a_healthy_stack(monkeypatch, tmp_path: Path) -> None:
    rows = [
        {
            "Service": "gateway",
            "Name": "modelyard-gateway-1",
            "State": "running",
            "Health": "healthy",
            "Image": "modelyard/gateway:latest",
        },
        {
            "Service": "adapter-openai",
            "Name": "modelyard-adapter-openai-1",
            "State": "running",
            "Health": "healthy",
            "Image": "modelyard/adapter:latest",
        },
    ]
    runner = fake_docker(rows, (200, '{"status":"ready","backend":"openai","upstream":"ok"}'))
    answers = {
        "healthz": (200, '{"status":"ok","service":"modelyard-gateway"}'),
        "models": (200, '{"data":[{"id":"gpt-4.1"}]}'),
    }
    verdicts = run_doctor(monkeypatch, tmp_path, runner, answers)
    assert [v.item for v in verdicts] == [
        "docker", "service adapter-openai", "service gateway", "backend openai", "gateway http", "model",
        "image adapter", "image gateway", "disk",
    ]  # fmt: skip
    assert all(v.level == "ok" for v in verdicts), [v.render() for v in verdicts]


def test_the_doctor_on_a_broken_stack(monkeypatch, tmp_path: Path) -> None:
    # The openai adapter cannot reach its upstream: unhealthy, so compose never started the gateway.
    rows = [
        {"Service": "gateway", "Name": "modelyard-gateway-1", "State": "created", "Health": ""},
        {"Service": "adapter-openai", "Name": "modelyard-adapter-openai-1", "State": "running", "Health": "unhealthy"},
    ]
    reason = "Upstream is failing: ConnectError: [Errno 101] Network is unreachable"
    logs = f'adapter-openai-1  | {{"level":"warning","message":"{reason}"}}\n'
    runner = fake_docker(rows, (503, json.dumps({"status": "not_ready", "upstream": reason})), logs)
    verdicts = {v.item: v for v in run_doctor(monkeypatch, tmp_path, runner, {})}
    assert verdicts["service adapter-openai"].failed
    assert verdicts["service adapter-openai"].notes == (
        "health check: not ready: HTTP Error 503: Service Unavailable",
        "last log lines that matter:",
        f"warning: {reason}",
    )
    assert verdicts["backend openai"].failed and reason in verdicts["backend openai"].detail
    assert verdicts["service gateway"].failed and verdicts["service gateway"].detail == "created"
    assert verdicts["gateway port"].level == "ok"  # the gateway is down: the port is checked too
    assert verdicts["gateway http"].failed and verdicts["model"].level == "warn"
    assert verdicts["docker"].level == "ok" and verdicts["disk"].level == "ok"
