#!/usr/bin/env python3
"""VLLM_* environment -> a vLLM OpenAI-compatible server command line, then exec it.

Used as is by the GPU image (`vllm serve MODEL ...`) and by the CPU image, which sets
VLLM_COMMAND="python -m vllm.entrypoints.openai.api_server" (that module takes the model only as
`--model`; `vllm serve` wants it positional and deprecates `--model`). Standard library only: it runs
before anything else in the container. Empty variables mean "not set", so compose can pass
`${VAR:-}` through untouched. `--print` shows the command instead of running it.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence

DEFAULT_COMMAND = "vllm serve"
DEFAULT_PORT = "8000"
# vLLM's --max-model-len: a plain integer, 1k/25.6k (decimal) or 1K (binary) suffixes, or -1/auto.
_MODEL_LEN = re.compile(r"\d+(\.\d+)?[kmgt]|\d+[KMGT]?|-1")
# Flags whose value must not reach the logs.
_SECRET_FLAGS = ("--api-key",)


class EnvError(ValueError):
    """A VLLM_* variable is missing or malformed; the message names it."""


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _int(env: Mapping[str, str], name: str, low: int, high: int | None = None) -> str | None:
    value = _get(env, name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise EnvError(f"{name} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise EnvError(f"{name} must be {bounds}, got {value!r}")
    return str(number)


def _fraction(env: Mapping[str, str], name: str) -> str | None:
    value = _get(env, name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise EnvError(f"{name} must be a number, got {value!r}") from None
    if not 0 < number <= 1:
        raise EnvError(f"{name} must be a fraction of GPU memory in (0, 1], got {value!r}")
    return value


def _model_len(env: Mapping[str, str], name: str) -> str | None:
    value = _get(env, name)
    if value is None:
        return None
    if value.lower() == "auto":
        return value
    if not _MODEL_LEN.fullmatch(value) or not re.search(r"[1-9]", value):
        raise EnvError(f"{name} must be a token count such as 8192, 32k or 32K (or auto), got {value!r}")
    return value


def build_args(env: Mapping[str, str]) -> list[str]:
    """The full argv to exec, VLLM_EXTRA_ARGS last so they override what the variables set."""
    try:
        command = shlex.split(_get(env, "VLLM_COMMAND") or DEFAULT_COMMAND)
    except ValueError as exc:
        raise EnvError(f"VLLM_COMMAND cannot be split like a shell command line: {exc}") from None
    model = _get(env, "VLLM_MODEL")
    if model is None:
        raise EnvError("VLLM_MODEL is not set: give a Hugging Face model id or a local path")
    args = [*command, model] if command[-1] == "serve" else [*command, "--model", model]

    if name := _get(env, "VLLM_SERVED_MODEL_NAME"):
        args += ["--served-model-name", name]
    if parser := _get(env, "VLLM_TOOL_CALL_PARSER"):
        # Without --enable-auto-tool-choice vLLM refuses tool_choice "auto", which agents send by default.
        args += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
    if parser := _get(env, "VLLM_REASONING_PARSER"):
        args += ["--reasoning-parser", parser]
    if size := _int(env, "VLLM_TENSOR_PARALLEL_SIZE", 1):
        args += ["--tensor-parallel-size", size]
    if length := _model_len(env, "VLLM_MAX_MODEL_LEN"):
        args += ["--max-model-len", length]
    if share := _fraction(env, "VLLM_GPU_MEMORY_UTILIZATION"):
        args += ["--gpu-memory-utilization", share]
    args += ["--host", "0.0.0.0", "--port", _int(env, "VLLM_PORT", 1, 65535) or DEFAULT_PORT]

    try:
        args += shlex.split(env.get("VLLM_EXTRA_ARGS", ""))
    except ValueError as exc:
        raise EnvError(f"VLLM_EXTRA_ARGS cannot be split like a shell command line: {exc}") from None
    return args


def shown(args: Sequence[str]) -> str:
    """The command line for logs: secret flag values (an --api-key in VLLM_EXTRA_ARGS) become ***."""
    out = list(args)
    for i, arg in enumerate(out):
        flag = arg.split("=", 1)[0]
        if flag in _SECRET_FLAGS and "=" in arg:
            out[i] = f"{flag}=***"
        elif arg in _SECRET_FLAGS and i + 1 < len(out):
            out[i + 1] = "***"
    return shlex.join(out)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    env = os.environ if env is None else env
    if argv not in ([], ["--print"]):
        print("usage: modelyard-vllm-entrypoint [--print]", file=sys.stderr)
        return 2
    try:
        args = build_args(env)
    except EnvError as exc:
        print(f"modelyard-vllm-entrypoint: error: {exc}", file=sys.stderr)
        return 2
    if argv == ["--print"]:
        print(shown(args))
        return 0
    print(f"modelyard-vllm-entrypoint: exec {shown(args)}", file=sys.stderr, flush=True)
    os.execvp(args[0], args)  # replaces this process, so signals reach vLLM directly
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
