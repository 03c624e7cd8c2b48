"""Placeholder until the real entrypoint lands: env -> vLLM command line."""

import os
import shlex
import sys


def build_args(env):
    cmd = shlex.split(env.get("VLLM_COMMAND") or "vllm serve")
    model = env["VLLM_MODEL"]
    args = [*cmd, model] if cmd[-1] == "serve" else [*cmd, "--model", model]
    for var, flag in (
        ("VLLM_SERVED_MODEL_NAME", "--served-model-name"),
        ("VLLM_MAX_MODEL_LEN", "--max-model-len"),
    ):
        if env.get(var):
            args += [flag, env[var]]
    args += ["--host", "0.0.0.0", "--port", env.get("VLLM_PORT") or "8000"]
    return args + shlex.split(env.get("VLLM_EXTRA_ARGS", ""))


if __name__ == "__main__":
    os.execvp(build_args(os.environ)[0], build_args(os.environ))
    sys.exit(1)
