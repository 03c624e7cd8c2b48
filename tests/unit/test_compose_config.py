"""`docker compose config` is valid for every profile, and each profile runs what it should."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from modelyard.config import Settings

ROOT = Path(__file__).resolve().parents[2]

if not shutil.which("docker"):
    pytest.skip("the docker CLI (with Compose v2) is not installed", allow_module_level=True)

EXPECTED = {
    "cpu": {"gateway", "vllm-cpu", "adapter-vllm"},
    "vllm": {"gateway", "vllm", "adapter-vllm"},
    "nim": {"gateway", "nim", "adapter-nim"},
    "nim-hosted": {"gateway", "adapter-nim"},
    "openai": {"gateway", "adapter-openai"},
    "azure": {"gateway", "adapter-azure"},
    "openrouter": {"gateway", "adapter-openrouter"},
}


def config(profile: str, tmp_path: Path, env: str = "") -> dict:
    env_file = tmp_path / "empty.env"
    env_file.write_text(env)
    out = subprocess.run(
        [
            "docker",
            "compose",
            "--env-file",
            str(env_file),
            "--profile",
            profile,
            "config",
            "--format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_profile_config_is_valid(profile: str, tmp_path: Path) -> None:
    cfg = config(profile, tmp_path)
    assert set(cfg["services"]) == EXPECTED[profile]
    for name, svc in cfg["services"].items():
        assert "healthcheck" in svc or name == "nim", f"{name} has no health check"
    gateway = cfg["services"]["gateway"]
    assert gateway["ports"][0]["target"] == 8080 and gateway["ports"][0]["published"] == "8080"


@pytest.mark.parametrize("profile", ["vllm", "nim"])
def test_gpu_profiles_reserve_nvidia_gpus(profile: str, tmp_path: Path) -> None:
    engine = config(profile, tmp_path)["services"][profile]
    devices = engine["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]


def test_services_start_in_health_order(tmp_path: Path) -> None:
    svc = config("cpu", tmp_path)["services"]
    assert svc["adapter-vllm"]["depends_on"]["vllm-cpu"]["condition"] == "service_healthy"
    assert svc["gateway"]["depends_on"]["adapter-vllm"]["condition"] == "service_healthy"


def test_adapters_run_unprivileged_and_read_only(tmp_path: Path) -> None:
    for name, svc in config("openai", tmp_path)["services"].items():
        assert svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"], name


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_every_service_is_locked_down_and_adapters_drain_before_compose_kills(profile: str, tmp_path: Path) -> None:
    # The engines (vLLM, NIM: their vendors' images, GPU runtimes) keep Docker's default capabilities.
    ours = {
        n: s for n, s in config(profile, tmp_path)["services"].items() if n == "gateway" or n.startswith("adapter-")
    }
    assert ours
    for name, svc in ours.items():
        assert svc.get("cap_drop") == ["ALL"] and svc["read_only"] is True, name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert svc.get("privileged") is not True and "user" not in svc, name  # the images' own non-root users
        if name.startswith("adapter-"):
            # Empty (compose repeats no default): the adapter's own default.
            grace = float(svc["environment"]["MODELYARD_SHUTDOWN_GRACE"] or Settings.shutdown_grace)
            assert float(svc["stop_grace_period"].rstrip("s")) > grace, name


def test_no_script_prints_the_rendered_compose_config() -> None:
    # `docker compose config` prints every environment value, keys included: scripts may only run it quiet.
    for script in (ROOT / "scripts").iterdir():
        text = script.read_text(errors="replace") if script.is_file() else ""
        for line in text.splitlines():
            if "compose" in line and " config" in line and not line.lstrip().startswith("#"):
                assert " -q" in line or "--quiet" in line or ">/dev/null" in line, f"{script.name}: {line}"


def test_keys_come_from_the_environment_not_the_image(tmp_path: Path) -> None:
    cfg = config("openai", tmp_path, "OPENAI_API_KEY=sk-test-123\nGATEWAY_PORT=9999\n")
    adapter = cfg["services"]["adapter-openai"]
    assert adapter["environment"]["MODELYARD_UPSTREAM_API_KEY"] == "sk-test-123"
    assert cfg["services"]["gateway"]["ports"][0]["published"] == "9999"
