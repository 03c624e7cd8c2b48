"""Start the CPU vLLM engine, warm it up, then mark it ready for the health check.

torch compiles a CPU kernel on the first request even with --enforce-eager (~17 s here), so the
engine is only reported ready after one real request has gone through: the first user request is
then as fast as the rest. Signals are passed on so `docker compose stop` stops vLLM cleanly.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from importlib.machinery import SourceFileLoader

READY = "/tmp/modelyard-engine-ready"
ENTRYPOINT = "/usr/local/bin/modelyard-vllm-entrypoint"


def engine_argv() -> list[str]:
    loader = SourceFileLoader("modelyard_vllm_entrypoint", ENTRYPOINT)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    # The CPU engine's own flags come first, so VLLM_EXTRA_ARGS can still override them.
    env = dict(os.environ)
    env["VLLM_EXTRA_ARGS"] = f"{env.get('VLLM_CPU_ARGS', '')} {env.get('VLLM_EXTRA_ARGS', '')}".strip()
    try:
        return module.build_args(env)
    except module.EnvError as exc:  # a bad VLLM_* setting: one line that names it, not a traceback
        sys.exit(f"modelyard: {exc}")


def call(url: str, body: dict | None = None, timeout: float = 5) -> int:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()
        return resp.status


def main() -> int:
    if os.path.exists(READY):
        os.remove(READY)
    argv = engine_argv()
    print("modelyard: starting", " ".join(argv), flush=True)
    proc = subprocess.Popen(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))

    base = f"http://127.0.0.1:{os.environ.get('VLLM_PORT', '8000')}"
    while proc.poll() is None:
        try:
            if call(f"{base}/health", timeout=2) == 200:
                break
        except OSError:
            pass
        time.sleep(0.5)
    else:
        return proc.returncode

    started = time.monotonic()
    warm = {
        "model": os.environ.get("VLLM_SERVED_MODEL_NAME") or os.environ["VLLM_MODEL"],
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 4,
    }
    try:
        call(f"{base}/v1/chat/completions", warm, timeout=600)
    except OSError as exc:
        print(f"modelyard: warm-up request failed: {exc}", file=sys.stderr, flush=True)
        proc.terminate()
        return proc.wait() or 1
    print(f"modelyard: engine warm after {time.monotonic() - started:.1f} s; ready", flush=True)
    open(READY, "w").close()
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
