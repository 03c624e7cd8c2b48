"""scripts/render-env (tools.render_env): env.yaml -> the .env that compose.yaml reads."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from tools import render_env as envfile
from tools.render_env import ConfigError, resolve

ROOT = Path(__file__).resolve().parents[2]
HAVE_DOCKER = shutil.which("docker") is not None
# Rendered variables compose.yaml need not read (none left: the NeMo Gym settings are wired in).
EXTRAS: set[str] = set()


def render(text: str, environ: dict[str, str] | None = None, **kw) -> envfile.Rendered:
    return resolve(yaml.safe_load(text) or {}, environ or {}, **kw)


def problems(text: str, environ: dict[str, str] | None = None, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        render(text, environ, **kw)
    return str(info.value)


def cli(tmp_path: Path, text: str | None, *args: str, monkeypatch=None) -> tuple[int, Path]:
    env_yaml = tmp_path / "env.yaml"
    if text is not None:
        env_yaml.write_text(text)
    out = tmp_path / ".env"
    return envfile.main(["--env-file", str(env_yaml), "--out", str(out), *args]), out


def source_with_bash(path: Path) -> dict[str, str]:
    """What scripts/up sees: `set -a; . ./.env`."""
    script = 'set -a; . "$1"; python3 -c "import json, os; print(json.dumps(dict(os.environ)))"'
    out = subprocess.run(["bash", "-c", script, "bash", str(path)], capture_output=True, text=True, env={})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# ---------------------------------------------------------------- defaults and profile mappings


def test_without_env_yaml_the_cpu_profile_is_rendered_and_said_so(tmp_path, capsys) -> None:
    rc, out = cli(tmp_path, None)
    assert rc == 0
    err = capsys.readouterr().err
    assert "not found" in err and "profile cpu" in err
    env = source_with_bash(out)
    assert env["COMPOSE_PROFILES"] == "cpu"
    assert env["POLICY_BACKEND"] == "vllm"
    # compose's own defaults cover the rest: nothing else is written
    assert [line.split("=")[0] for line in out.read_text().splitlines() if not line.startswith("#")] == [
        "COMPOSE_PROFILES",
        "POLICY_BACKEND",
    ]


def test_an_empty_env_yaml_is_the_cpu_default_too() -> None:
    assert render("").variables == {"COMPOSE_PROFILES": "cpu", "POLICY_BACKEND": "vllm"}


PROFILES = {
    "cpu": (
        "policy_model_name: pol\ncpu: {kvcache_space_gb: 2, max_model_len: 4096, extra_args: [--seed, 7]}",
        {
            "COMPOSE_PROFILES": "cpu",
            "POLICY_BACKEND": "vllm",
            "POLICY_MODEL_NAME": "pol",
            "VLLM_SERVED_MODEL_NAME": "pol",  # the embedded model answers to the pinned name
            "VLLM_CPU_KVCACHE_SPACE": "2",
            "VLLM_MAX_MODEL_LEN": "4096",
            "VLLM_EXTRA_ARGS": "--seed 7",
        },
    ),
    "vllm": (
        """
policy_backend: vllm
policy_model_name: qwen
vllm:
  model: Qwen/Qwen3-8B
  tool_call_parser: hermes
  reasoning_parser: qwen3
  tensor_parallel_size: 2
  max_model_len: 32k
  gpu_memory_utilization: 0.85
  extra_args: "--enable-prefix-caching --max-num-seqs 64"
  gpu_count: 2
  hf_token: hf_secret
""",
        {
            "COMPOSE_PROFILES": "vllm",
            "POLICY_BACKEND": "vllm",
            "POLICY_MODEL_NAME": "qwen",
            "VLLM_MODEL": "Qwen/Qwen3-8B",
            "VLLM_SERVED_MODEL_NAME": "qwen",
            "VLLM_TOOL_CALL_PARSER": "hermes",
            "VLLM_REASONING_PARSER": "qwen3",
            "VLLM_TENSOR_PARALLEL_SIZE": "2",
            "VLLM_MAX_MODEL_LEN": "32k",
            "VLLM_GPU_MEMORY_UTILIZATION": "0.85",
            "VLLM_EXTRA_ARGS": "--enable-prefix-caching --max-num-seqs 64",
            "VLLM_GPU_COUNT": "2",
            "HF_TOKEN": "hf_secret",
        },
    ),
    "nim": (
        "policy_backend: nim\nnim: {ngc_api_key: nvapi-ngc, image: 'nvcr.io/nim/x/y:1', gpu_count: 1}",
        {
            "COMPOSE_PROFILES": "nim",
            "POLICY_BACKEND": "nim",
            "NGC_API_KEY": "nvapi-ngc",
            "NIM_IMAGE": "nvcr.io/nim/x/y:1",
            "NIM_GPU_COUNT": "1",
        },
    ),
    "nim-hosted": (
        "policy_backend: nim-hosted\npolicy_api_key: nvapi-key\npolicy_model_name: meta/llama-3.1-8b",
        {
            "COMPOSE_PROFILES": "nim-hosted",
            "POLICY_BACKEND": "nim",
            "NIM_BASE_URL": "https://integrate.api.nvidia.com/v1",
            "NVIDIA_API_KEY": "nvapi-key",
            "POLICY_MODEL_NAME": "meta/llama-3.1-8b",
        },
    ),
    "openai": (
        "policy_backend: openai\npolicy_api_key: sk-key\npolicy_model_name: gpt-4.1\n"
        "openai: {organization: org-1, project: proj_1}",
        {
            "COMPOSE_PROFILES": "openai",
            "POLICY_BACKEND": "openai",
            "OPENAI_API_KEY": "sk-key",
            "POLICY_MODEL_NAME": "gpt-4.1",
            "OPENAI_ORGANIZATION": "org-1",
            "OPENAI_PROJECT": "proj_1",
        },
    ),
    "azure": (
        """
policy_backend: azure
policy_base_url: https://res.openai.azure.com
policy_api_key: az-key
azure: {url_style: dated, api_version: 2024-10-21, deployment: dep, deployment_map: {gpt-4.1: dep},
        reasoning_deployments: [o-dep, r-dep], responses_mode: translate, ad_token_file: /run/tok}
""",
        {
            "COMPOSE_PROFILES": "azure",
            "POLICY_BACKEND": "azure",
            "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com",
            "AZURE_OPENAI_API_KEY": "az-key",
            "AZURE_OPENAI_URL_STYLE": "dated",
            "AZURE_OPENAI_API_VERSION": "2024-10-21",  # YAML reads this as a date: written back as written
            "AZURE_OPENAI_DEPLOYMENT": "dep",
            "AZURE_OPENAI_DEPLOYMENT_MAP": '{"gpt-4.1":"dep"}',
            "AZURE_OPENAI_REASONING_DEPLOYMENTS": "o-dep,r-dep",
            "AZURE_OPENAI_RESPONSES_MODE": "translate",
            "AZURE_OPENAI_AD_TOKEN_FILE": "/run/tok",
        },
    ),
    "openrouter": (
        "policy_backend: openrouter\npolicy_api_key: sk-or\npolicy_base_url: https://or.example/api/v1\n"
        "openrouter: {http_referer: 'https://me.example', x_title: My Pipeline, responses_mode: native}",
        {
            "COMPOSE_PROFILES": "openrouter",
            "POLICY_BACKEND": "openrouter",
            "OPENROUTER_API_KEY": "sk-or",
            "OPENROUTER_BASE_URL": "https://or.example/api/v1",
            "OPENROUTER_HTTP_REFERER": "https://me.example",
            "OPENROUTER_X_TITLE": "My Pipeline",
            "OPENROUTER_RESPONSES_MODE": "native",
        },
    ),
}


@pytest.mark.parametrize("profile", list(PROFILES))
def test_each_profile_maps_onto_its_variables_and_only_those(profile: str) -> None:
    text, expected = PROFILES[profile]
    rendered = render(text)
    assert rendered.profile == profile
    assert rendered.variables == expected


def test_gateway_adapter_and_image_settings_apply_to_every_profile() -> None:
    text = """
image_tag: v1
gateway: {port: 9090, bind: 0.0.0.0, max_body_size: 64m, read_timeout: 600, base_image: nginx:1.27}
adapter: {workers: 4, log_level: debug, base_image: python:3.11-slim}
vllm: {base_image: vllm/vllm-openai:v0.31.0}
cpu: {base_image: python:3.11}
"""
    variables = render(text).variables
    assert variables == {
        "COMPOSE_PROFILES": "cpu",
        "POLICY_BACKEND": "vllm",
        "MODELYARD_TAG": "v1",
        "GATEWAY_PORT": "9090",
        "GATEWAY_BIND": "0.0.0.0",
        "GATEWAY_MAX_BODY_SIZE": "64m",
        "GATEWAY_READ_TIMEOUT": "600s",  # a bare number is seconds
        "GATEWAY_BASE_IMAGE": "nginx:1.27",
        "MODELYARD_WORKERS": "4",
        "MODELYARD_LOG_LEVEL": "debug",
        "ADAPTER_BASE_IMAGE": "python:3.11-slim",
        "VLLM_BASE_IMAGE": "vllm/vllm-openai:v0.31.0",
        "VLLM_CPU_BASE_IMAGE": "python:3.11",
    }


def test_gateway_keys_and_limits_render_and_the_keys_stay_secret(tmp_path, capsys) -> None:
    text = """
gateway:
  api_keys: [sk-team-alpha-1, "sk.beta+2/=="]
  rate_per_key: 50
  rate_global: 600r/m
  burst: 20
  max_conns_per_key: 8
  max_conns: 100
  client_body_timeout: 15
"""
    variables = render(text).variables
    assert variables["GATEWAY_API_KEYS"] == "sk-team-alpha-1,sk.beta+2/=="
    assert (variables["GATEWAY_RATE_PER_KEY"], variables["GATEWAY_RATE_GLOBAL"]) == ("50", "600r/m")
    assert (variables["GATEWAY_BURST"], variables["GATEWAY_MAX_CONNS"]) == ("20", "100")
    assert variables["GATEWAY_CLIENT_BODY_TIMEOUT"] == "15s"
    rc, _ = cli(tmp_path, text, "--check")
    printed = "".join(capsys.readouterr())
    assert rc == 0 and "GATEWAY_API_KEYS=***" in printed and "sk-team-alpha-1" not in printed


@pytest.mark.parametrize(
    "text", ["gateway: {api_keys: [short]}", "gateway: {api_keys: ['has space in it']}", "gateway: {rate_global: 5/s}"]
)
def test_bad_gateway_keys_or_rates_are_refused(text: str) -> None:
    assert "gateway." in problems(text)


def test_an_ipv6_bind_address_is_bracketed_for_the_port_mapping() -> None:
    assert render("gateway: {bind: '::'}").variables["GATEWAY_BIND"] == "[::]"


def test_sections_of_other_profiles_are_left_out_with_a_note() -> None:
    rendered = render(
        "policy_backend: openai\npolicy_api_key: k\nvllm: {model: m, hf_token: hf}\nnim: {ngc_api_key: n}"
    )
    assert not {"VLLM_MODEL", "HF_TOKEN", "NGC_API_KEY"} & set(rendered.variables)
    assert any("vllm.model is ignored: profile 'openai'" in note for note in rendered.notes)


def test_an_external_vllm_replaces_the_engine_and_the_note_says_so() -> None:
    rendered = render("policy_base_url: http://gpu-box:8000/v1\npolicy_api_key: tok\npolicy_model_name: m")
    assert rendered.variables["VLLM_BASE_URL"] == "http://gpu-box:8000/v1"
    assert rendered.variables["VLLM_API_KEY"] == "tok"
    assert "VLLM_SERVED_MODEL_NAME" not in rendered.variables  # the local engine is not the one asked
    assert any("still starts but is not used" in note for note in rendered.notes)


def test_vllm_served_model_name_wins_when_it_agrees_and_errors_when_it_does_not() -> None:
    ok = render("policy_backend: vllm\nvllm: {model: Qwen/Qwen3-8B, served_model_name: qwen}")
    assert ok.variables["VLLM_SERVED_MODEL_NAME"] == "qwen"
    message = problems("policy_backend: vllm\npolicy_model_name: x\nvllm: {model: m, served_model_name: y}")
    assert "vllm.served_model_name" in message and "policy_model_name" in message


def test_every_rendered_variable_is_one_compose_reads_or_a_listed_extra() -> None:
    """A misspelt variable would be silently useless: compose.yaml must read each one (or it is one of
    the NeMo Gym settings still to be wired in)."""
    compose = (ROOT / "compose.yaml").read_text()
    read = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", compose)) | {"COMPOSE_PROFILES"}
    names = set()
    for text, _ in PROFILES.values():
        names |= set(render(text).variables)
    nemo = render(
        "policy_model_name: m",
        nemo_gym_config=ROOT / "configs" / "nemo_gym_vllm_model.yaml",
    )
    names |= set(nemo.variables)
    names |= set(render(Path(ROOT / "env.yaml.example").read_text()).variables)
    assert names - read <= EXTRAS, f"compose.yaml does not read {sorted(names - read - EXTRAS)}"


# ---------------------------------------------------------------- secrets and the file itself

SECRETS = {
    "policy_api_key": "sk-very-secret-1",
    "vllm.hf_token": "hf_very_secret_2",
    "nim.ngc_api_key": "nvapi-very-secret-3",
    "azure.ad_token": "eyJ-very-secret-4",
}


@pytest.mark.parametrize(
    "text",
    [
        f"policy_backend: openai\npolicy_api_key: {SECRETS['policy_api_key']}",
        f"policy_backend: vllm\nvllm: {{model: m, hf_token: {SECRETS['vllm.hf_token']}}}",
        f"policy_backend: nim\nnim: {{ngc_api_key: {SECRETS['nim.ngc_api_key']}}}",
        "policy_backend: azure\npolicy_base_url: https://r.openai.azure.com\n"
        f"azure: {{ad_token: {SECRETS['azure.ad_token']}}}",
    ],
)
def test_check_prints_settings_but_never_a_secret(tmp_path, capsys, text: str) -> None:
    rc, out = cli(tmp_path, text, "--check")
    assert rc == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert not any(secret in printed for secret in SECRETS.values())
    assert "=***" in printed
    assert "COMPOSE_PROFILES=" in printed
    assert not out.exists()  # --check writes nothing


def test_writing_prints_no_secret_either(tmp_path, capsys) -> None:
    rc, out = cli(tmp_path, f"policy_backend: openai\npolicy_api_key: {SECRETS['policy_api_key']}")
    assert rc == 0
    captured = capsys.readouterr()
    assert SECRETS["policy_api_key"] not in captured.out + captured.err
    assert source_with_bash(out)["OPENAI_API_KEY"] == SECRETS["policy_api_key"]


@pytest.mark.parametrize(
    "text",
    [
        "policy_backend: openai\npolicy_api_key: [sk-very-secret-1]",
        "policy_backend: vllm\nvllm: {model: m, hf_token: 1.5}\npolicy_api_key: sk-very-secret-1\nbogus: 1",
    ],
)
def test_errors_name_a_secret_key_without_its_value(tmp_path, capsys, text: str) -> None:
    rc, _ = cli(tmp_path, text)
    assert rc == 2
    err = capsys.readouterr().err
    assert "sk-very-secret-1" not in err and "1.5" not in err
    assert "policy_api_key must be" in err or "vllm.hf_token must be" in err


def test_env_file_is_mode_0600_even_over_a_readable_one_and_a_lax_umask(tmp_path) -> None:
    out = tmp_path / ".env"
    out.write_text("OLD=1\n")
    out.chmod(0o644)
    old = os.umask(0)
    try:
        rc, out = cli(tmp_path, "policy_backend: openai\npolicy_api_key: sk-x")
    finally:
        os.umask(old)
    assert rc == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "OLD=1" not in out.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".env.")]  # no temp file left behind


def test_a_failed_render_leaves_the_previous_env_alone(tmp_path) -> None:
    out = tmp_path / ".env"
    out.write_text("COMPOSE_PROFILES=openai\n")
    rc, _ = cli(tmp_path, "policy_backend: openai")  # no key
    assert rc == 2
    assert out.read_text() == "COMPOSE_PROFILES=openai\n"


# Values that need quoting: spaces, comment marks, $ and ${...}, both quote kinds, backslashes, =, unicode.
TRICKY = {
    "OPENROUTER_X_TITLE": "My Pipeline #1 (rl) costs $5, ${HOME} and `cmd` \\n",
    "OPENROUTER_HTTP_REFERER": "https://x.example/?a=b&c=d#frag",
    "OPENROUTER_API_KEY": 'it\'s a "quoted" $key \\ with é',
    "POLICY_MODEL_NAME": "it's $$ and ${X:-y} \\\\ done",
}
TRICKY_YAML = (
    "policy_backend: openrouter\n"
    f"policy_api_key: {json.dumps(TRICKY['OPENROUTER_API_KEY'])}\n"
    f"policy_model_name: {json.dumps(TRICKY['POLICY_MODEL_NAME'])}\n"
    f"openrouter: {{x_title: {json.dumps(TRICKY['OPENROUTER_X_TITLE'])}, "
    f"http_referer: {json.dumps(TRICKY['OPENROUTER_HTTP_REFERER'])}}}\n"
).replace("${", "$${")  # a literal ${ in env.yaml
EXPECTED_TRICKY = TRICKY


def test_tricky_values_read_back_unchanged_by_the_shell(tmp_path) -> None:
    rc, out = cli(tmp_path, TRICKY_YAML)
    assert rc == 0
    env = source_with_bash(out)
    assert {k: env[k] for k in EXPECTED_TRICKY} == EXPECTED_TRICKY


@pytest.mark.skipif(not HAVE_DOCKER, reason="the docker CLI (with Compose v2) is not installed")
def test_tricky_values_read_back_unchanged_by_docker_compose(tmp_path) -> None:
    rc, out = cli(tmp_path, TRICKY_YAML)
    assert rc == 0
    probe = tmp_path / "compose.yaml"
    service = {"image": "busybox", "environment": {k: f"${{{k}}}" for k in TRICKY}}
    probe.write_text(yaml.safe_dump({"services": {"probe": service}}))
    result = subprocess.run(
        ["docker", "compose", "-f", str(probe), "--env-file", str(out), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    environment = json.loads(result.stdout)["services"]["probe"]["environment"]
    # `config` writes a compose file back, where a literal $ is spelt $$
    assert environment == {k: v.replace("$", "$$") for k, v in EXPECTED_TRICKY.items()}


def test_multiline_values_read_back_unchanged(tmp_path) -> None:
    value = "line one\nline two # not a comment $X"
    out = tmp_path / ".env"
    envfile.write_env(out, envfile.env_text(envfile.Rendered("cpu", {"A": value, "B": "after"}), "env.yaml"))
    env = source_with_bash(out)
    assert (env["A"], env["B"]) == (value, "after")


def test_a_value_that_no_quoting_keeps_intact_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        envfile.quote("OPENAI_API_KEY", "it's `x`")


REAL_COMPOSE_CASES = {
    "cpu": ("policy_model_name: tiny\ngateway: {port: 9090}", {"gateway", "vllm-cpu", "adapter-vllm"}),
    "vllm": ("policy_backend: vllm\nvllm: {model: m, gpu_count: 2}", {"gateway", "vllm", "adapter-vllm"}),
    "nim-hosted": ("policy_backend: nim-hosted\npolicy_api_key: nvapi-k", {"gateway", "adapter-nim"}),
    "azure": (
        "policy_backend: azure\npolicy_base_url: https://r.openai.azure.com\npolicy_api_key: 'a#b $c'",
        {"gateway", "adapter-azure"},
    ),
}


@pytest.mark.skipif(not HAVE_DOCKER, reason="the docker CLI (with Compose v2) is not installed")
@pytest.mark.parametrize("profile", list(REAL_COMPOSE_CASES))
def test_plain_docker_compose_picks_the_profile_and_settings_from_the_rendered_env(tmp_path, profile) -> None:
    text, services = REAL_COMPOSE_CASES[profile]
    rc, out = cli(tmp_path, text)
    assert rc == 0
    result = subprocess.run(  # no --profile: COMPOSE_PROFILES in the .env picks it
        ["docker", "compose", "--env-file", str(out), "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")},
    )
    assert result.returncode == 0, result.stderr
    cfg = json.loads(result.stdout)
    assert set(cfg["services"]) == services
    if profile == "cpu":
        assert cfg["services"]["gateway"]["ports"][0]["published"] == "9090"
        assert cfg["services"]["adapter-vllm"]["environment"]["MODELYARD_MODEL"] == "tiny"
        assert cfg["services"]["vllm-cpu"]["environment"]["VLLM_SERVED_MODEL_NAME"] == "tiny"
    if profile == "vllm":
        devices = cfg["services"]["vllm"]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["count"] == 2
    if profile == "nim-hosted":
        env = cfg["services"]["adapter-nim"]["environment"]
        assert env["MODELYARD_UPSTREAM_URL"] == "https://integrate.api.nvidia.com/v1"
        assert env["MODELYARD_UPSTREAM_API_KEY"] == "nvapi-k"
    if profile == "azure":
        env = cfg["services"]["adapter-azure"]["environment"]
        assert env["MODELYARD_UPSTREAM_API_KEY"] == "a#b $$c"  # literal $ spelt $$ by `config`
        assert cfg["services"]["gateway"]["environment"]["POLICY_BACKEND"] == "azure"


# ---------------------------------------------------------------- errors


def test_unknown_top_level_key_is_named_with_a_suggestion(tmp_path, capsys) -> None:
    rc, _ = cli(tmp_path, "polcy_backend: openai")
    assert rc == 2
    assert "unknown key 'polcy_backend' (did you mean 'policy_backend'?)" in capsys.readouterr().err


def test_unknown_section_key_is_named_with_its_section_and_a_suggestion() -> None:
    message = problems("gateway: {prot: 8080}\nvllm: {tensor_paralel_size: 2}")
    assert "gateway: unknown key 'prot' (did you mean 'port'?)" in message
    assert "vllm: unknown key 'tensor_paralel_size' (did you mean 'tensor_parallel_size'?)" in message


def test_a_key_nothing_resembles_lists_what_is_known() -> None:
    assert "unknown key 'zzz' (known: " in problems("openai: {zzz: 1}")


def test_a_section_that_is_not_a_mapping_is_named() -> None:
    assert "gateway must be a mapping" in problems("gateway: 8080")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("policy_backend: openai", "policy_api_key is required by profile 'openai'"),
        ("policy_backend: openrouter", "policy_api_key is required by profile 'openrouter'"),
        ("policy_backend: nim-hosted", "policy_api_key is required by profile 'nim-hosted'"),
        ("policy_backend: nim", "nim.ngc_api_key is required by profile 'nim'"),
        ("policy_backend: vllm", "vllm.model is required by profile 'vllm'"),
        ("policy_backend: azure\npolicy_api_key: k", "policy_base_url is required by profile 'azure'"),
        (
            "policy_backend: azure\npolicy_base_url: https://r.openai.azure.com",
            "policy_api_key (or azure.ad_token/ad_token_file) is required by profile 'azure'",
        ),
        (
            "policy_backend: azure\npolicy_base_url: https://r.openai.azure.com\npolicy_api_key: k\n"
            "azure: {url_style: dated}",
            "azure.api_version is required by profile 'azure'",
        ),
    ],
)
def test_missing_required_keys_name_the_key_and_the_profile(text: str, needle: str) -> None:
    assert needle in problems(text)


def test_azure_takes_an_entra_token_file_instead_of_a_key_and_nemo_gyms_api_version() -> None:
    rendered = render(
        "policy_backend: azure\npolicy_base_url: https://r.openai.azure.com\npolicy_api_version: '2025-04'\n"
        "azure: {url_style: dated, ad_token_file: /run/secrets/tok}"
    )
    assert rendered.variables["AZURE_OPENAI_API_VERSION"] == "2025-04"
    assert "AZURE_OPENAI_API_KEY" not in rendered.variables


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("policy_backend: gpu", "policy_backend must be one of cpu, vllm"),
        ("gateway: {port: http}", "gateway.port must be an integer 1-65535, got 'http'"),
        ("gateway: {port: 70000}", "gateway.port must be an integer 1-65535, got 70000"),
        ("gateway: {port: true}", "gateway.port must be an integer"),
        ("gateway: {bind: localhost}", "gateway.bind must be an IP address"),
        ("gateway: {max_body_size: 32 MB}", "gateway.max_body_size must be an nginx size"),
        ("gateway: {read_timeout: soon}", "gateway.read_timeout must be an nginx time"),
        ("adapter: {workers: 0}", "adapter.workers must be an integer >= 1"),
        ("adapter: {log_level: loud}", "adapter.log_level must be one of debug"),
        ("policy_backend: vllm\nvllm: {model: m, tensor_parallel_size: two}", "vllm.tensor_parallel_size"),
        ("policy_backend: vllm\nvllm: {model: m, gpu_memory_utilization: 90}", "vllm.gpu_memory_utilization"),
        ("policy_backend: vllm\nvllm: {model: m, max_model_len: long}", "vllm.max_model_len"),
        ("policy_backend: vllm\nvllm: {model: m, gpu_count: many}", "vllm.gpu_count"),
        ('policy_backend: vllm\nvllm: {model: m, extra_args: "--x \'open"}', "vllm.extra_args"),
        ("policy_base_url: api.openai.com", "policy_base_url must be an http:// or https:// URL"),
        ("image_tag: 1.10", "image_tag must be a string (quote it in YAML)"),
        ("azure: {url_style: old}", "azure.url_style must be one of v1, dated"),
        ("azure: {deployment_map: [a, b]}", "azure.deployment_map must be a mapping"),
        ("cpu: {kvcache_space_gb: 1.5}", "cpu.kvcache_space_gb must be an integer >= 1"),
    ],
)
def test_wrong_types_name_the_key(text: str, needle: str) -> None:
    assert needle in problems(text)


def test_every_problem_is_reported_at_once() -> None:
    message = problems("polcy_backend: vllm\ngateway: {port: x}\nadapter: {workers: 0}")
    assert len(message.splitlines()) == 3


# ---------------------------------------------------------------- ${VAR} references


def test_references_read_the_environment_so_keys_stay_out_of_env_yaml() -> None:
    text = (
        "policy_backend: openai\npolicy_api_key: ${OPENAI_KEY}\npolicy_model_name: ${MODEL:-gpt-4.1}\n"
        "openai: {organization: 'org-${ORG-none}', project: '${PROJECT:-p}'}\ngateway: {port: '${PORT}'}"
    )
    variables = render(text, {"OPENAI_KEY": "sk-env", "PROJECT": "", "PORT": "9000"}).variables
    assert variables["OPENAI_API_KEY"] == "sk-env"
    assert variables["POLICY_MODEL_NAME"] == "gpt-4.1"  # unset: default
    assert variables["OPENAI_ORGANIZATION"] == "org-none"
    assert variables["OPENAI_PROJECT"] == "p"  # :- also covers an empty variable
    assert variables["GATEWAY_PORT"] == "9000"  # a number from the environment is still a number


def test_an_unset_reference_without_default_is_an_error_naming_the_variable_and_key(tmp_path, capsys) -> None:
    rc, _ = cli(tmp_path, "policy_backend: openai\npolicy_api_key: ${MISSING_KEY_VAR}")
    assert rc == 2
    err = capsys.readouterr().err
    assert "policy_api_key" in err and "${MISSING_KEY_VAR} is not set" in err


def test_a_referenced_value_is_still_type_checked() -> None:
    assert "gateway.port must be an integer" in problems("gateway: {port: '${PORT}'}", {"PORT": "eighty"})


def test_dollar_dollar_brace_is_a_literal_and_a_lone_dollar_stays() -> None:
    variables = render("openai: {project: 'a$${B}c$d'}\npolicy_backend: openai\npolicy_api_key: k").variables
    assert variables["OPENAI_PROJECT"] == "a${B}c$d"


def test_omegaconf_env_references_work_in_env_yaml_too() -> None:
    text = "policy_backend: openai\npolicy_api_key: ${oc.env:K}\npolicy_model_name: ${oc.env:M,gpt-x}"
    assert render(text, {"K": "sk"}).variables["POLICY_MODEL_NAME"] == "gpt-x"


# ---------------------------------------------------------------- NeMo Gym model configs

VLLM_CONFIG = ROOT / "configs" / "nemo_gym_vllm_model.yaml"
OPENAI_CONFIG = ROOT / "configs" / "nemo_gym_openai_model.yaml"


def test_nemo_gym_vllm_model_config_runs_on_the_embedded_engine_by_default() -> None:
    rendered = render("policy_model_name: policy", nemo_gym_config=VLLM_CONFIG)
    assert rendered.variables == {
        "COMPOSE_PROFILES": "cpu",
        "POLICY_BACKEND": "vllm",
        "POLICY_MODEL_NAME": "policy",
        "VLLM_SERVED_MODEL_NAME": "policy",
        "MODELYARD_RETURN_TOKEN_IDS": "false",
        "MODELYARD_USES_REASONING_PARSER": "true",
        "MODELYARD_DEVELOPER_ROLE": "developer",
    }


def test_nemo_gym_vllm_model_config_goes_to_gpus_when_env_yaml_names_a_model() -> None:
    rendered = render("vllm: {model: Qwen/Qwen3-8B}\npolicy_model_name: qwen", nemo_gym_config=VLLM_CONFIG)
    assert rendered.profile == "vllm"
    assert rendered.variables["VLLM_MODEL"] == "Qwen/Qwen3-8B"
    assert rendered.variables["VLLM_SERVED_MODEL_NAME"] == "qwen"


def test_nemo_gym_openai_model_config_maps_onto_openai_and_needs_its_key() -> None:
    rendered = render("policy_api_key: sk-1\npolicy_model_name: gpt-4.1", nemo_gym_config=OPENAI_CONFIG)
    assert rendered.profile == "openai"
    assert rendered.variables["OPENAI_API_KEY"] == "sk-1"
    assert rendered.variables["POLICY_MODEL_NAME"] == "gpt-4.1"
    assert "OPENAI_BASE_URL" not in rendered.variables  # ${policy_base_url} unset: compose's default
    assert "policy_api_key is required by profile 'openai'" in problems("", nemo_gym_config=OPENAI_CONFIG)


TRAINING_CONFIG = ROOT / "configs" / "nemo_gym_vllm_model_for_training.yaml"


def test_the_nemo_gym_training_config_points_nemo_gym_at_the_gateway_and_the_stack_at_its_engine() -> None:
    rendered = render("", nemo_gym_config=TRAINING_CONFIG)
    assert rendered.profile == "cpu"
    assert rendered.variables["MODELYARD_RETURN_TOKEN_IDS"] == "true"
    assert rendered.variables["VLLM_SERVED_MODEL_NAME"] == "SmolLM2-135M-Instruct"
    assert "VLLM_BASE_URL" not in rendered.variables  # the gateway is NeMo Gym's address, not an engine
    assert any("is this stack's gateway" in note for note in rendered.notes)
    on_gpus = render("vllm: {model: Qwen/Qwen3-8B}\npolicy_model_name: qwen", nemo_gym_config=TRAINING_CONFIG)
    assert on_gpus.profile == "vllm" and "VLLM_BASE_URL" not in on_gpus.variables


@pytest.mark.parametrize(
    ("url", "port", "own"),
    [
        ("http://127.0.0.1:8080/v1", None, True),
        ("http://localhost:8080", None, True),
        ("http://127.0.0.1:9000/vllm/v1", 9000, True),
        ("http://127.0.0.1:9000/v1", None, False),  # another port: an engine of its own
        ("http://10.0.0.5:8080/v1", None, False),
        ("http://127.0.0.1:8000/v1", None, False),
    ],
)
def test_a_policy_base_url_at_the_stacks_own_gateway_is_not_an_engine(url: str, port: int | None, own: bool) -> None:
    text = f"policy_base_url: {url}\n" + (f"gateway: {{port: {port}}}\n" if port else "")
    rendered = render(text)
    assert ("VLLM_BASE_URL" not in rendered.variables) is own


def test_env_yaml_can_name_the_nemo_gym_config_relative_to_itself(tmp_path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "m.yaml").write_text(OPENAI_CONFIG.read_text())
    rc, out = cli(tmp_path, "nemo_gym_config: configs/m.yaml\npolicy_api_key: sk-2")
    assert rc == 0
    assert source_with_bash(out)["COMPOSE_PROFILES"] == "openai"


def test_the_command_line_config_wins_over_the_env_yaml_key(tmp_path) -> None:
    text = f"nemo_gym_config: {OPENAI_CONFIG}\npolicy_api_key: k"
    rc, out = cli(tmp_path, text, "--nemo-gym-config", str(VLLM_CONFIG))
    assert rc == 0
    assert source_with_bash(out)["COMPOSE_PROFILES"] == "cpu"


def write(tmp_path: Path, kind: str, body: dict) -> Path:
    path = tmp_path / "gym.yaml"
    path.write_text(yaml.safe_dump({"policy_model": {"responses_api_models": {kind: body}}}))
    return path


def test_nemo_gym_settings_interpolate_like_omegaconf_and_render_as_json(tmp_path) -> None:
    config = write(
        tmp_path,
        "vllm_model",
        {
            "entrypoint": "app.py",
            "base_url": ["${policy_base_url}"],  # NeMo Gym's list of servers, with one
            "api_key": "${oc.env:GYM_KEY,dummy}",
            "model": "${policy_model_name}",
            "replace_developer_role_with_system": True,
            "chat_template_kwargs": {"enable_thinking": False},
            "extra_body": {"temperature": 1.0, "top_p": "${sampling.top_p}"},
            "uses_interleaved_reasoning": True,
            "sampling_overrides": {"temperature": 1.0},
            "sequential_reasoning_allowed": True,
        },
    )
    text = "policy_base_url: http://vllm.internal:8000/v1\npolicy_model_name: q\nsampling: {top_p: 0.9}"
    data = yaml.safe_load(text)
    sampling = data.pop("sampling")  # not an env.yaml key: reachable as the config's own key
    raw = yaml.safe_load(config.read_text())
    raw["sampling"] = sampling
    config.write_text(yaml.safe_dump(raw))
    rendered = resolve(data, {"GYM_KEY": "gym-secret"}, nemo_gym_config=config)
    v = rendered.variables
    assert v["VLLM_BASE_URL"] == "http://vllm.internal:8000/v1"
    assert v["VLLM_API_KEY"] == "gym-secret"
    assert v["MODELYARD_DEVELOPER_ROLE"] == "system"
    assert json.loads(v["MODELYARD_CHAT_TEMPLATE_KWARGS"]) == {"enable_thinking": False}
    assert json.loads(v["MODELYARD_EXTRA_BODY"]) == {"temperature": 1.0, "top_p": 0.9}  # typed as OmegaConf
    assert v["MODELYARD_REASONING_HISTORY"] == "send"
    assert json.loads(v["MODELYARD_SAMPLING_OVERRIDES"]) == {"temperature": 1.0}
    assert any("sequential_reasoning_allowed is ignored" in note for note in rendered.notes)
    assert not any("entrypoint" in note for note in rendered.notes)


def test_a_value_written_in_the_nemo_gym_config_wins_over_env_yaml(tmp_path) -> None:
    config = write(tmp_path, "openai_model", {"openai_api_key": "${policy_api_key}", "openai_model": "gpt-5"})
    rendered = render("policy_api_key: k\npolicy_model_name: gpt-4.1", nemo_gym_config=config)
    assert rendered.variables["POLICY_MODEL_NAME"] == "gpt-5"


def test_azure_openai_model_config_maps_onto_azure_with_its_api_version(tmp_path) -> None:
    body = {
        "openai_base_url": "${policy_base_url}",
        "openai_api_key": "${policy_api_key}",
        "openai_model": "${policy_model_name}",
        "default_query": {"api-version": "${policy_api_version}"},
    }
    text = "policy_base_url: https://r.openai.azure.com\npolicy_api_key: k\npolicy_api_version: v-preview"
    rendered = render(text, nemo_gym_config=write(tmp_path, "azure_openai_model", body))
    assert rendered.profile == "azure"
    assert rendered.variables["AZURE_OPENAI_ENDPOINT"] == "https://r.openai.azure.com"
    assert rendered.variables["AZURE_OPENAI_API_VERSION"] == "v-preview"


def test_an_unsupported_nemo_gym_type_is_refused_listing_the_supported_ones(tmp_path) -> None:
    message = problems("", nemo_gym_config=write(tmp_path, "anthropic_model", {"model": "claude"}))
    assert "'anthropic_model' is not one modelyard serves" in message
    assert "vllm_model, openai_model, azure_openai_model" in message


def test_a_policy_backend_that_does_not_fit_the_nemo_gym_type_is_an_error() -> None:
    message = problems("policy_backend: openai\npolicy_api_key: k", nemo_gym_config=VLLM_CONFIG)
    assert "policy_backend 'openai' does not serve NeMo Gym model type 'vllm_model'" in message


def test_nemo_gym_config_problems_name_the_file_and_key(tmp_path) -> None:
    config = write(tmp_path, "vllm_model", {"model": "${no_such_key}"})
    assert "refers to a key that neither env.yaml nor the config has" in problems("", nemo_gym_config=config)
    config = write(tmp_path, "vllm_model", {"chat_template_kwargs": "{", "base_url": ["a", "b"]})
    message = problems("", nemo_gym_config=config)
    key = "policy_model.responses_api_models.vllm_model.chat_template_kwargs"
    assert f"{config}: {key} must be a mapping" in message
    assert "vllm_model.base_url must be an http:// or https:// URL" in message
    assert "cannot read" in problems("", nemo_gym_config=tmp_path / "absent.yaml")


def test_a_base_url_list_is_engine_replicas(tmp_path) -> None:
    text = "policy_backend: vllm\npolicy_base_url: [http://gpu-a:8000/v1, http://gpu-b:8000/v1]"
    assert render(text).variables["VLLM_BASE_URL"] == "http://gpu-a:8000/v1,http://gpu-b:8000/v1"
    config = write(tmp_path, "vllm_model", {"base_url": ["http://a:8000/v1", "http://b:8000/v1"], "model": "m"})
    assert render("", nemo_gym_config=config).variables["VLLM_BASE_URL"] == "http://a:8000/v1,http://b:8000/v1"
    message = problems("policy_backend: openai\npolicy_api_key: k\npolicy_base_url: [https://a/v1, https://b/v1]")
    assert "policy_base_url lists several URLs (engine replicas)" in message


# ---------------------------------------------------------------- env.yaml.example


def _uncommented_example() -> str:
    """env.yaml.example with every commented `key: value` line turned on."""
    lines = []
    for line in (ROOT / "env.yaml.example").read_text().splitlines():
        m = re.match(r"^(\s*)# ([a-z_]+: .*?)(\s{2,}#.*)?$", line)
        lines.append(m.group(1) + m.group(2) if m else line)
    return "\n".join(lines)


def test_the_example_as_shipped_renders_the_cpu_default_without_notes() -> None:
    rendered = render((ROOT / "env.yaml.example").read_text())
    assert rendered.variables == {"COMPOSE_PROFILES": "cpu", "POLICY_BACKEND": "vllm"}
    assert rendered.notes == []


@pytest.mark.parametrize("profile", ["cpu", "vllm", "nim", "nim-hosted", "openai", "azure", "openrouter"])
def test_every_value_shown_in_the_example_is_valid(profile: str) -> None:
    data = yaml.safe_load(_uncommented_example())
    data["policy_backend"] = profile
    configs = {"cpu": VLLM_CONFIG, "vllm": VLLM_CONFIG, "openai": OPENAI_CONFIG}
    data["nemo_gym_config"] = str(configs[profile]) if profile in configs else None
    data["vllm"]["served_model_name"] = data["policy_model_name"]
    environ = {"OPENAI_API_KEY": "sk", "HF_TOKEN": "hf", "NGC_API_KEY": "ngc", "AZURE_OPENAI_AD_TOKEN": "t"}
    rendered = resolve(data, environ, base_dir=ROOT)
    assert rendered.profile == profile


def test_the_example_documents_every_key() -> None:
    example = _uncommented_example()
    data = yaml.safe_load(example)
    assert set(envfile.TOP) <= set(data)
    for section, keys in envfile.SECTIONS.items():
        assert set(keys) == set(data[section] or {}), section


# ---------------------------------------------------------------- the generation section (vLLM and NIM adapters)


def test_generation_settings_render_for_the_vllm_and_nim_adapters() -> None:
    text = """generation:
  return_token_id_information: true
  uses_reasoning_parser: false
  think_tags: ["<reasoning>", "</reasoning>"]
  reasoning_history: send
  chat_template_kwargs: {enable_thinking: false}
  extra_body: {top_k: 20}
  sampling_overrides: {temperature: 1.0, top_p: 1.0}
  replace_developer_role_with_system: false
"""
    v = render(text).variables
    assert v["MODELYARD_RETURN_TOKEN_IDS"] == "true"
    assert v["MODELYARD_USES_REASONING_PARSER"] == "false"
    assert json.loads(v["MODELYARD_THINK_TAGS"]) == ["<reasoning>", "</reasoning>"]
    assert v["MODELYARD_REASONING_HISTORY"] == "send"
    assert json.loads(v["MODELYARD_SAMPLING_OVERRIDES"]) == {"temperature": 1.0, "top_p": 1.0}
    assert json.loads(v["MODELYARD_EXTRA_BODY"]) == {"top_k": 20}
    assert v["MODELYARD_DEVELOPER_ROLE"] == "developer"
    # NIM takes all but the token data, which only vLLM returns; other backends take none of it.
    nim = render("policy_backend: nim-hosted\npolicy_api_key: k\n" + text)
    assert "MODELYARD_RETURN_TOKEN_IDS" not in nim.variables
    assert nim.variables["MODELYARD_REASONING_HISTORY"] == "send"
    assert any("generation.return_token_id_information is ignored" in n for n in nim.notes)
    openai = render("policy_backend: openai\npolicy_api_key: k\n" + text)
    assert not any(k.startswith("MODELYARD_") for k in openai.variables)


def test_a_nemo_gym_config_wins_over_the_generation_section() -> None:
    rendered = render("generation: {return_token_id_information: true}", nemo_gym_config=VLLM_CONFIG)
    assert rendered.variables["MODELYARD_RETURN_TOKEN_IDS"] == "false"  # as the config says


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("generation: {think_tags: [only-one]}", "generation.think_tags"),
        ("generation: {reasoning_history: sometimes}", "generation.reasoning_history"),
        ("generation: {sampling_overrides: 1.0}", "generation.sampling_overrides"),
        ("generation: {return_token_id_information: maybe}", "generation.return_token_id_information"),
    ],
)
def test_generation_settings_of_the_wrong_form_name_the_key(text: str, needle: str) -> None:
    assert needle in problems(text)


def test_compose_passes_the_generation_settings_to_the_vllm_and_nim_adapters() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    variables = {key.var for key in envfile.SECTIONS["generation"].values()}
    vllm = compose["services"]["adapter-vllm"]["environment"]
    nim = compose["services"]["adapter-nim"]["environment"]
    for name in variables:
        assert vllm[name] == f"${{{name}:-}}", name
        if name != "MODELYARD_RETURN_TOKEN_IDS":
            assert nim[name] == f"${{{name}:-}}", name
    assert "MODELYARD_RETURN_TOKEN_IDS" not in nim
