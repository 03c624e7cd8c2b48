"""scripts/swarm-config: for every profile, a stack file that `docker stack deploy` accepts (docs/swarm.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {  # the services each profile runs (as in test_compose_config.py)
    "cpu": {"gateway", "vllm-cpu", "adapter-vllm"},
    "vllm": {"gateway", "vllm", "adapter-vllm"},
    "nim": {"gateway", "nim", "adapter-nim"},
    "nim-hosted": {"gateway", "adapter-nim"},
    "openai": {"gateway", "adapter-openai"},
    "azure": {"gateway", "adapter-azure"},
    "openrouter": {"gateway", "adapter-openrouter"},
}

if not shutil.which("docker"):
    pytest.skip("the docker CLI (with Compose v2) is not installed", allow_module_level=True)


def render(profile: str, tmp_path: Path, *files: str) -> dict:
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    out = tmp_path / "stack.json"
    cmd = [str(ROOT / "scripts/swarm-config"), "--env-file", str(env_file), "--profile", profile, "-o", str(out)]
    for f in files:
        cmd += ["-f", str(ROOT / f)]
    run = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
    assert run.stdout == ""  # the values (keys included) go to the file alone
    assert out.stat().st_mode & 0o777 == 0o600
    return json.loads(out.read_text())


def stack_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "stack", "config", "-c", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_every_profile_renders_a_valid_stack(profile: str, tmp_path: Path) -> None:
    stack = render(profile, tmp_path)
    assert set(stack["services"]) == EXPECTED[profile]
    assert "name" not in stack and not [k for k in stack if k.startswith("x-")]
    for name, svc in stack["services"].items():
        assert not {"profiles", "depends_on", "build", "tmpfs"} & set(svc), name
        assert svc["deploy"]["endpoint_mode"] == "dnsrr", name
        assert "devices" not in svc.get("deploy", {}).get("resources", {}).get("reservations", {}), name
    gateway = stack["services"]["gateway"]
    assert gateway["ports"] == [{"target": 8080, "published": 8080, "protocol": "tcp", "mode": "host"}]
    assert {"type": "tmpfs", "target": "/tmp"} in gateway["volumes"]  # the read-only gateway writes its config there
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(stack))
    check = stack_config(path)
    if "unknown command" in check.stderr or "is not a docker command" in check.stderr:
        pytest.skip("this docker CLI has no `docker stack config`")
    assert check.returncode == 0, check.stderr


def test_engines_are_found_by_dns_and_spread(tmp_path: Path) -> None:
    stack = render("cpu", tmp_path)
    env = stack["services"]["adapter-vllm"]["environment"]
    assert env["MODELYARD_UPSTREAM_URL"] == "" and env["MODELYARD_UPSTREAM_DNS"] == "http://tasks.vllm-engine:8000/v1"
    placement = stack["services"]["vllm-cpu"]["deploy"]["placement"]
    assert placement["max_replicas_per_node"] == 1
    assert placement["constraints"] == ["node.labels.modelyard.engine == true"]


def test_gpu_devices_become_generic_resources(tmp_path: Path) -> None:
    for profile, engine in (("vllm", "vllm"), ("nim", "nim")):
        res = render(profile, tmp_path)["services"][engine]["deploy"]["resources"]["reservations"]
        assert res["generic_resources"] == [{"discrete_resource_spec": {"kind": "NVIDIA-GPU", "value": 1}}]


def test_the_lab_override_renders(tmp_path: Path) -> None:
    stack = render("cpu", tmp_path, "tests/integration/compose.swarm-lab.yaml")
    engine = stack["services"]["vllm-cpu"]
    assert engine["entrypoint"] == ["python", "-m", "standins.faults"]
    assert engine["volumes"][0]["source"] == str(ROOT / "tests/standins")
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(stack))
    assert stack_config(path).returncode == 0
