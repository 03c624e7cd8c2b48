"""images/vllm/entrypoint.py: VLLM_* environment -> the vLLM server command line."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATH = ROOT / "images" / "vllm" / "entrypoint.py"

_spec = importlib.util.spec_from_file_location("modelyard_vllm_entrypoint", PATH)
entry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(entry)

MODEL = "Qwen/Qwen3-8B"
BASE = ["vllm", "serve", MODEL]
TAIL = ["--host", "0.0.0.0", "--port", "8000"]


def build(**env: str) -> list[str]:
    return entry.build_args({"VLLM_MODEL": MODEL, **env})


def test_model_alone_serves_on_all_interfaces_port_8000() -> None:
    assert build() == [*BASE, *TAIL]


@pytest.mark.parametrize(
    ("var", "value", "flags"),
    [
        ("VLLM_SERVED_MODEL_NAME", "qwen3", ["--served-model-name", "qwen3"]),
        ("VLLM_TOOL_CALL_PARSER", "hermes", ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]),
        ("VLLM_REASONING_PARSER", "qwen3", ["--reasoning-parser", "qwen3"]),
        ("VLLM_TENSOR_PARALLEL_SIZE", "4", ["--tensor-parallel-size", "4"]),
        ("VLLM_MAX_MODEL_LEN", "32768", ["--max-model-len", "32768"]),
        ("VLLM_MAX_MODEL_LEN", "32k", ["--max-model-len", "32k"]),
        ("VLLM_MAX_MODEL_LEN", "25.6k", ["--max-model-len", "25.6k"]),
        ("VLLM_MAX_MODEL_LEN", "32K", ["--max-model-len", "32K"]),
        ("VLLM_MAX_MODEL_LEN", "auto", ["--max-model-len", "auto"]),
        ("VLLM_MAX_MODEL_LEN", "-1", ["--max-model-len", "-1"]),
        ("VLLM_GPU_MEMORY_UTILIZATION", "0.85", ["--gpu-memory-utilization", "0.85"]),
        ("VLLM_GPU_MEMORY_UTILIZATION", "1", ["--gpu-memory-utilization", "1"]),
    ],
)
def test_each_variable_becomes_its_flags(var: str, value: str, flags: list[str]) -> None:
    assert build(**{var: value}) == [*BASE, *flags, *TAIL]


def test_all_variables_together_in_a_stable_order() -> None:
    args = build(
        VLLM_SERVED_MODEL_NAME="policy",
        VLLM_TOOL_CALL_PARSER="hermes",
        VLLM_REASONING_PARSER="deepseek_r1",
        VLLM_TENSOR_PARALLEL_SIZE="2",
        VLLM_MAX_MODEL_LEN="8192",
        VLLM_GPU_MEMORY_UTILIZATION="0.9",
        VLLM_PORT="9000",
        VLLM_EXTRA_ARGS="--enable-prefix-caching",
    )
    expected = [
        "vllm serve Qwen/Qwen3-8B --served-model-name policy",
        "--enable-auto-tool-choice --tool-call-parser hermes --reasoning-parser deepseek_r1",
        "--tensor-parallel-size 2 --max-model-len 8192 --gpu-memory-utilization 0.9",
        "--host 0.0.0.0 --port 9000 --enable-prefix-caching",
    ]
    assert shlex.join(args) == " ".join(expected)


def test_empty_and_blank_values_mean_not_set() -> None:
    # compose passes ${VAR:-} through as an empty string
    names = [
        "VLLM_SERVED_MODEL_NAME",
        "VLLM_TOOL_CALL_PARSER",
        "VLLM_REASONING_PARSER",
        "VLLM_TENSOR_PARALLEL_SIZE",
        "VLLM_MAX_MODEL_LEN",
        "VLLM_GPU_MEMORY_UTILIZATION",
        "VLLM_EXTRA_ARGS",
        "VLLM_PORT",
        "VLLM_COMMAND",
    ]
    assert build(**dict.fromkeys(names, "")) == [*BASE, *TAIL]
    assert build(**dict.fromkeys(names, "  ")) == [*BASE, *TAIL]


def test_extra_args_are_shell_split_and_come_last_so_they_override() -> None:
    extra = "--max-model-len 2048 --chat-template '/t/my template.jinja'"
    assert build(VLLM_MAX_MODEL_LEN="4096", VLLM_EXTRA_ARGS=extra) == [
        *BASE,
        *["--max-model-len", "4096"],
        *TAIL,
        *["--max-model-len", "2048", "--chat-template", "/t/my template.jinja"],
    ]


def test_vllm_serve_under_a_path_still_takes_the_model_positionally() -> None:
    assert build(VLLM_COMMAND="/opt/venv/bin/vllm serve")[:3] == ["/opt/venv/bin/vllm", "serve", MODEL]


def test_api_server_module_takes_the_model_as_a_flag() -> None:
    # The CPU image: `python -m vllm.entrypoints.openai.api_server --model PATH`
    args = entry.build_args(
        {
            "VLLM_COMMAND": "python -m vllm.entrypoints.openai.api_server",
            "VLLM_MODEL": "/models/SmolLM2-135M-Instruct",
            "VLLM_SERVED_MODEL_NAME": "SmolLM2-135M-Instruct",
            "VLLM_MAX_MODEL_LEN": "2048",
            "VLLM_EXTRA_ARGS": "--dtype bfloat16 --enforce-eager",
        }
    )
    assert args == [
        "python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "/models/SmolLM2-135M-Instruct",
        "--served-model-name",
        "SmolLM2-135M-Instruct",
        "--max-model-len",
        "2048",
        *TAIL,
        "--dtype",
        "bfloat16",
        "--enforce-eager",
    ]


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"VLLM_MODEL": ""}, "VLLM_MODEL"),
        ({"VLLM_TENSOR_PARALLEL_SIZE": "two"}, "VLLM_TENSOR_PARALLEL_SIZE"),
        ({"VLLM_TENSOR_PARALLEL_SIZE": "0"}, "VLLM_TENSOR_PARALLEL_SIZE"),
        ({"VLLM_TENSOR_PARALLEL_SIZE": "1.5"}, "VLLM_TENSOR_PARALLEL_SIZE"),
        ({"VLLM_GPU_MEMORY_UTILIZATION": "90%"}, "VLLM_GPU_MEMORY_UTILIZATION"),
        ({"VLLM_GPU_MEMORY_UTILIZATION": "1.5"}, "VLLM_GPU_MEMORY_UTILIZATION"),
        ({"VLLM_GPU_MEMORY_UTILIZATION": "0"}, "VLLM_GPU_MEMORY_UTILIZATION"),
        ({"VLLM_MAX_MODEL_LEN": "big"}, "VLLM_MAX_MODEL_LEN"),
        ({"VLLM_MAX_MODEL_LEN": "0"}, "VLLM_MAX_MODEL_LEN"),
        ({"VLLM_MAX_MODEL_LEN": "25.6K"}, "VLLM_MAX_MODEL_LEN"),  # vLLM refuses decimals with binary suffixes
        ({"VLLM_PORT": "http"}, "VLLM_PORT"),
        ({"VLLM_PORT": "70000"}, "VLLM_PORT"),
        ({"VLLM_EXTRA_ARGS": "--chat-template 'unterminated"}, "VLLM_EXTRA_ARGS"),
        ({"VLLM_COMMAND": "vllm 'serve"}, "VLLM_COMMAND"),
    ],
)
def test_bad_values_are_errors_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(entry.EnvError, match=names):
        build(**env)


def test_missing_model_is_a_clear_error() -> None:
    with pytest.raises(entry.EnvError, match="VLLM_MODEL is not set"):
        entry.build_args({})


def test_print_shows_the_command_without_running_it(capsys, monkeypatch) -> None:
    monkeypatch.setattr(entry.os, "execvp", lambda *a: pytest.fail("--print must not exec"))
    rc = entry.main(["--print"], {"VLLM_MODEL": MODEL, "VLLM_TOOL_CALL_PARSER": "hermes"})
    out = capsys.readouterr().out.strip()
    assert rc == 0
    assert shlex.split(out) == [*BASE, "--enable-auto-tool-choice", "--tool-call-parser", "hermes", *TAIL]


def test_print_masks_an_api_key_given_in_extra_args(capsys) -> None:
    env = {"VLLM_MODEL": MODEL, "VLLM_EXTRA_ARGS": "--api-key sk-one --api-key=sk-two"}
    assert entry.main(["--print"], env) == 0
    out = capsys.readouterr().out
    assert "sk-one" not in out and "sk-two" not in out
    assert shlex.split(out)[-3:] == ["--api-key", "***", "--api-key=***"]


def test_without_print_it_execs_vllm_with_the_args(capsys, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(entry.os, "execvp", lambda file, args: calls.append((file, args)))
    entry.main([], {"VLLM_MODEL": MODEL})
    assert calls == [("vllm", [*BASE, *TAIL])]
    assert "exec vllm serve Qwen/Qwen3-8B" in capsys.readouterr().err


def test_errors_exit_2_with_the_message_and_do_not_exec(capsys, monkeypatch) -> None:
    monkeypatch.setattr(entry.os, "execvp", lambda *a: pytest.fail("must not exec on a bad environment"))
    assert entry.main([], {"VLLM_MODEL": MODEL, "VLLM_TENSOR_PARALLEL_SIZE": "x"}) == 2
    assert "VLLM_TENSOR_PARALLEL_SIZE must be an integer" in capsys.readouterr().err
    assert entry.main(["--bogus"], {"VLLM_MODEL": MODEL}) == 2


def test_dockerfile_runs_this_entrypoint_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "images" / "vllm" / "Dockerfile").read_text()
    target = re.search(r"^COPY entrypoint\.py (\S+)$", dockerfile, re.M).group(1)
    assert f'ENTRYPOINT ["python3", "{target}"]' in dockerfile
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users[-1] == "vllm"
    assert re.search(r"^ARG BASE_IMAGE=vllm/vllm-openai:v0\.32\.0$", dockerfile, re.M)
    assert "/home/vllm/.cache/huggingface" in dockerfile
