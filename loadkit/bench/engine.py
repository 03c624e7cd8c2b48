"""scripts/bench's end-to-end phase on the real vLLM CPU engine: tokens/s direct (chat), through the stack
(modelyard's Responses bridged to chat) and through the engine's own /v1/responses, alternating; time to
first token at the same concurrency for both Responses paths; and whether both give the same text."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request

from loadkit import client
from loadkit.bench.lab import BenchLab, say
from loadkit.stack import free_port, sh, wait_http
from loadkit.stats import pct

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def engine_start(lab: BenchLab) -> None:
    """Start the vLLM CPU engine while LiteLLM's open-streams phase runs, so its minute or more of
    start-up overlaps work instead of adding to the run."""
    lab.engine_port = free_port()
    say("vLLM CPU engine: starting in the background (ready in ~1-3 min)")
    lab.container("vllm", lab.images.vllm, options=("--shm-size", "1g"), env={"VLLM_PORT": str(lab.engine_port)})


def engine_ready(lab: BenchLab, timeout: float = 600) -> None:  # a busy machine: minutes
    full = lab.name("vllm")
    end = time.time() + timeout
    while time.time() < end:
        if subprocess.run(["docker", "exec", full, "test", "-f", "/tmp/modelyard-engine-ready"]).returncode == 0:
            return
        if sh("docker", "inspect", "-f", "{{.State.Running}}", full) != "true":
            raise RuntimeError("the vLLM engine exited: " + sh("docker", "logs", "--tail", "20", full))
        time.sleep(2)
    raise RuntimeError(f"the vLLM engine was not ready within {timeout:.0f} s of the wait")


def output_text(reply: dict) -> str:
    """A Responses reply's generated text (every output_text part, in order)."""
    return "".join(
        part.get("text", "")
        for item in reply.get("output") or ()
        for part in item.get("content") or ()
        if part.get("type") == "output_text"
    )


def engine(lab: BenchLab, plan) -> dict:  # noqa: ANN001 - phases.Plan (no import cycle)
    vport, aport, gport = lab.engine_port, free_port(), free_port()
    say("vLLM CPU engine: waiting for it to be ready")
    engine_ready(lab)
    env = {"MODELYARD_UPSTREAM_URL": f"http://127.0.0.1:{vport}/v1", "MODELYARD_HOST": "127.0.0.1",
           "MODELYARD_LOG_LEVEL": "warning"}  # fmt: skip
    lab.adapter("adapter-engine", lab.images.adapter, aport, env, pin=False)
    lab.gateway("gateway-engine", gport, aport, pin=False)
    wait_http(f"http://127.0.0.1:{aport}/readyz")
    wait_http(f"http://127.0.0.1:{gport}/healthz")
    with urllib.request.urlopen(f"http://127.0.0.1:{vport}/v1/models", timeout=10) as resp:
        model = json.loads(resp.read())["data"][0]["id"]
    mt = plan.engine_tokens
    chat = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": mt, "temperature": 0}
    resp = {"model": model, "input": PROMPT, "max_output_tokens": mt, "temperature": 0}
    cases = {
        "direct": (vport, "/v1/chat/completions", json.dumps(chat).encode(), "completion_tokens"),
        "stack": (gport, "/v1/responses", json.dumps(resp).encode(), "output_tokens"),
        "native": (vport, "/v1/responses", json.dumps(resp).encode(), "output_tokens"),
    }
    n = plan.engine_clients
    say(f"vLLM CPU engine ({model}) ready: {n} clients, {mt} tokens a request, {plan.engine_seconds} s windows, "
        "direct, stack and the engine's own /v1/responses alternating")  # fmt: skip
    for case in cases.values():  # warm every path
        asyncio.run(client.closed_loop("127.0.0.1", *case, 1, 3))
    out: dict = {"model": model, **throughput(cases, n, plan)}
    out["ratio"] = out["stack"]["tokens_per_s"] / out["direct"]["tokens_per_s"]
    out["native_ratio"] = out["stack"]["tokens_per_s"] / out["native"]["tokens_per_s"]
    for key in ("stack", "native"):
        port, path, body, _ = cases[key]
        sbody = body[:-1] + b',"stream":true}'
        ttft = sorted(asyncio.run(client.stream_loop("127.0.0.1", port, path, sbody, n, plan.engine_seconds)))
        out[key].update(ttft_p50_ms=pct(ttft, 50) * 1000, ttft_p99_ms=pct(ttft, 99) * 1000, streams=len(ttft))
    out["same_text"] = same_text(cases)
    say(f"  direct {out['direct']['tokens_per_s']:.1f} tokens/s, stack {out['stack']['tokens_per_s']:.1f}, "
        f"native /v1/responses {out['native']['tokens_per_s']:.1f}: stack/direct {out['ratio']:.3f}; TTFT p50 "
        f"stack {out['stack']['ttft_p50_ms']:.0f} ms, native {out['native']['ttft_p50_ms']:.0f} ms; same text: "
        f"{out['same_text']['equal']}")  # fmt: skip
    lab.remove("vllm", "adapter-engine", "gateway-engine")
    return out


def throughput(cases: dict, clients: int, plan) -> dict:  # noqa: ANN001
    totals = {k: [0, 0.0, 0] for k in cases}  # tokens, seconds, requests
    for _ in range(plan.engine_rounds):
        for key, case in cases.items():
            r = asyncio.run(client.closed_loop("127.0.0.1", *case, clients, plan.engine_seconds))
            t = totals[key]
            t[0] += r.tokens
            t[1] += r.seconds
            t[2] += r.requests
    return {k: {"tokens_per_s": t / s, "requests_per_s": n / s, "requests": n} for k, (t, s, n) in totals.items()}


def same_text(cases: dict) -> dict:
    """One temperature-0 request through the stack and one to the engine's own /v1/responses: the same
    text or not (reported, never a failure: a CPU engine's batching may break greedy ties differently)."""
    texts = {}
    for key in ("stack", "native"):
        port, path, body, _ = cases[key]
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers={"content-type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=120) as reply:
            texts[key] = output_text(json.loads(reply.read()))
    return {"equal": texts["stack"] == texts["native"], **{f"{k}_text": v[:200] for k, v in texts.items()}}
