"""A soak run: its own compose stack (or one already up), the fault script, the paced load, then the
engine's log and the adapter's metrics read back into one summary table."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadkit import client
from loadkit.soak import stateful
from loadkit.soak.faults import fault_name, fault_script
from loadkit.soak.outcome import KINDS, STATEFUL, one
from loadkit.stack import Compose, free_port, http_json

ROOT = Path(__file__).resolve().parents[2]
FILES = ["compose.yaml", "tests/integration/compose.faults.yaml", "tests/integration/compose.soak.yaml"]


@dataclass
class Options:
    rate: float = 200.0  # requests per second, open loop
    duration: float = 600.0  # seconds of load
    timeout: float = 60.0  # client timeout per request: past it, a hang
    max_in_flight: int = 4000
    seed: int = 1
    mix: str = "full"  # stateless (the four kinds), stateful (chains, background, sessions) or full (both)


MIXES = ("full", "stateless", "stateful")
FLOW_SHARE = 0.2  # of the slots in a full mix: a stateful flow (several requests) instead of one request


@dataclass
class Target:
    url: str  # the gateway
    control: str  # the faults stand-in's control API
    api_key: str


def start_stack(workdir: Path) -> tuple[Compose, Target]:
    """compose.yaml + the faults and soak overrides as a project of its own, a gateway API key set."""
    port, api_key, project = free_port(), "sk-soak-" + secrets.token_hex(8), f"modelyard-soak-{os.getpid()}"
    env_file = workdir / "soak.env"
    env_file.write_text(
        f"COMPOSE_PROJECT_NAME={project}\nCOMPOSE_PROFILES=faults\nPOLICY_BACKEND=vllm\n"
        f"GATEWAY_PORT={port}\nGATEWAY_API_KEYS={api_key}\nMODELYARD_TAG={os.environ.get('MODELYARD_TAG', 'latest')}\n"
    )
    env_file.chmod(0o600)
    print(f"soak: starting compose project {project} (gateway on :{port})", flush=True)
    compose = Compose(ROOT, FILES, env_file, who="soak")
    compose.up(wait_timeout=180)
    control = compose.port("faults", 9000)
    return compose, Target(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{control}", api_key)


async def load(target: Target, opts: Options) -> dict[str, Any]:
    """Mixed kinds at `rate`, each request tagged; a request the client has no room for is counted, not queued.
    In a stateful or full mix a slot may start a stateful flow instead: its turns get tags of their own."""
    host, port = target.url.split("//", 1)[1].rsplit(":", 1)
    rng = random.Random(opts.seed)
    outcomes: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in KINDS + STATEFUL}
    tags: dict[str, str] = {}
    tasks: set[asyncio.Task[None]] = set()
    skipped = peak = 0
    start = time.monotonic()

    def new_tag(kind: str) -> str:
        tag = f"s{len(tags):07d}-{rng.getrandbits(32):08x}"
        tags[tag] = kind
        return tag

    flow = stateful.Flow(host, int(port), target.api_key, opts.timeout, new_tag,
                         lambda kind, outcome: outcomes[kind].update([outcome]))  # fmt: skip
    share = {"stateless": 0.0, "stateful": 1.0}.get(opts.mix, FLOW_SHARE)

    async def run(kind: str, tag: str) -> None:
        outcomes[kind][await one(host, int(port), kind, tag, opts.timeout, target.api_key)] += 1

    async for i, _, _ in client.paced(opts.rate, int(opts.rate * opts.duration)):
        if len(tasks) >= opts.max_in_flight:  # the client is the bottleneck: count it, don't queue forever
            skipped += 1
            continue
        if share and rng.random() < share:
            task = asyncio.create_task(stateful.flow_for(rng, flow))
        else:
            kind = KINDS[rng.randrange(len(KINDS))]
            tag = f"{i:07d}-{rng.getrandbits(32):08x}"
            tags[tag] = kind
            task = asyncio.create_task(run(kind, tag))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        peak = max(peak, len(tasks))
        if i % int(opts.rate * 30) == 0 and i:
            done = sum(sum(c.values()) for c in outcomes.values())
            print(
                f"soak: {time.monotonic() - start:5.0f} s  sent {len(tags)}  answered {done}  in flight {len(tasks)}",
                flush=True,
            )
    sent_time = time.monotonic() - start
    if tasks:
        await asyncio.wait(tasks)
    return {"outcomes": outcomes, "tags": tags, "skipped": skipped, "peak": peak, "sent_time": sent_time,
            "elapsed": time.monotonic() - start}  # fmt: skip


def soak(target: Target, opts: Options) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """Script the faults, run the load, read back the engine's log and the adapter's metrics."""
    rng = random.Random(opts.seed)
    attempts = int(opts.rate * opts.duration * 1.5) + 1000  # retries draw too
    steps, drawn = fault_script(attempts, rng)
    http_json("POST", f"{target.control}/reset", {})
    http_json("POST", f"{target.control}/script", steps)
    print(f"soak: {opts.rate:g} requests/s for {opts.duration:g} s; {sum(drawn.values())} faults scripted over "
          f"{attempts} upstream attempts", flush=True)  # fmt: skip
    res = asyncio.run(load(target, opts))
    try:  # the outcomes are counted already: a stack gone by now must not lose them
        metrics = http_json("GET", f"{target.url}/vllm/metrics", headers={"authorization": f"Bearer {target.api_key}"})
        log = http_json("GET", f"{target.control}/log")
    except OSError as exc:
        print(f"soak: could not read the adapter's metrics or the engine's log ({exc}): no duplicate check")
        metrics, log = "", []
    return res, log, metrics


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def bad_count(res: dict[str, Any]) -> int:
    return sum(n for c in res["outcomes"].values() for o, n in c.items() if o.startswith("bad:"))


def report(opts: Options, res: dict[str, Any], log: list[dict[str, Any]], metrics: str) -> str:
    outcomes: dict[str, collections.Counter[str]] = res["outcomes"]
    sent = len(res["tags"])
    answered = sum(sum(c.values()) for c in outcomes.values())
    everything: collections.Counter[str] = sum(outcomes.values(), collections.Counter())
    bad = bad_count(res)
    ok = sum(n for o, n in everything.items() if o.startswith("ok"))
    # The engine's log: attempts per tag, and how many of them it answered in full (a generation).
    attempts: collections.Counter[str] = collections.Counter()
    generations: collections.Counter[str] = collections.Counter()
    faults_served: collections.Counter[str] = collections.Counter()
    for entry in log:
        tag = entry.get("tag")
        if tag not in res["tags"]:
            continue
        attempts[tag] += 1
        step = entry.get("step") or {}
        faults_served[fault_name(step) if step else "none"] += 1
        if entry.get("completed"):
            generations[tag] += 1
    duplicated = sorted(t for t, n in generations.items() if n > 1)
    unknown = sum(1 for e in log if e.get("tag") and e["tag"] not in res["tags"])
    retries = metric_sum(metrics, "modelyard_upstream_retries_total")
    by_reason = sorted(set(re.findall(r'modelyard_upstream_retries_total\{[^}]*reason="([^"]+)"', metrics)))
    reasons = ", ".join(
        f"{r} {metric_sum(metrics, 'modelyard_upstream_retries_total', reason=r):.0f}" for r in by_reason
    )
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| target rate | {opts.rate:g} requests/s for {opts.duration:g} s |",
        f"| requests sent | {sent} in {res['sent_time']:.1f} s = **{sent / res['sent_time']:.1f} requests/s** |",
        f"| not sent (client at its in-flight cap {opts.max_in_flight}) | {res['skipped']} |",
        f"| answered (exactly one outcome each) | {answered} of {sent} |",
        f"| success | {ok} |",
        f"| well-formed errors / failed streams | {answered - ok - bad} |",
        f"| **malformed, hung (client timeout {opts.timeout:g} s) or lost** | **{bad + sent - answered}** |",
        f"| tags generated in full more than once (duplicates) | {len(duplicated)} |",
        f"| upstream attempts the engine logged | {sum(attempts.values())} (requests reaching it: {len(attempts)}) |",
        f"| adapter retries (modelyard_upstream_retries_total) | {retries:.0f} ({reasons}) |",
        f"| retries denied by the budget | {metric_sum(metrics, 'modelyard_upstream_retries_denied_total'):.0f} |",
        f"| circuit opened | {metric_sum(metrics, 'modelyard_upstream_circuit_opened_total'):.0f} times |",
        f"| peak requests in flight at the client | {res['peak']} |",
        f"| log entries with an unknown tag | {unknown} |",
        "",
        "Faults the engine served (per upstream attempt): "
        + ", ".join(f"{k} {v}" for k, v in sorted(faults_served.items()) if k != "none")
        + f" ({faults_served['none']} normal).",
        "",
    ]
    lines += table(outcomes, KINDS)
    if any(outcomes.get(k) for k in STATEFUL):
        lines += ["", *table(outcomes, STATEFUL)]
    if duplicated:
        lines += ["", f"Duplicated tags (first 10): {', '.join(duplicated[:10])}"]
    return "\n".join(lines)


def table(outcomes: dict[str, collections.Counter[str]], kinds: tuple[str, ...]) -> list[str]:
    """Outcomes (rows) by kind (columns), ok first, and each kind's total."""
    seen: set[str] = {o for k in kinds for o in outcomes.get(k, {})}
    lines = ["| kind | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for outcome in sorted(seen, key=lambda o: (not o.startswith("ok"), o)):
        lines.append(f"| {outcome} | " + " | ".join(str(outcomes.get(k, {}).get(outcome, 0)) for k in kinds) + " |")
    lines.append("| **total** | " + " | ".join(str(sum(outcomes.get(k, {}).values())) for k in kinds) + " |")
    return lines


def doc(command: str, started: str, summary: str) -> str:
    """docs/soak.md: what the run did and its summary."""
    return (
        "# Soak run\n\n"
        f"Command: `{command.strip()}` (started {started}, {os.cpu_count()} CPU cores, shared machine).\n\n"
        "Mixed Responses and Chat Completions requests, streamed and not, each with a unique tag, through the\n"
        "gateway (with an API key) to the vllm adapter in front of the fault-injecting engine\n"
        "(tests/standins/faults.py; adapter settings in tests/integration/compose.soak.yaml). Every request\n"
        "must end in exactly one outcome: a success (the reply carries its own tag back) or a well-formed\n"
        "OpenAI error (an error body, a `response.failed` event, a final error chunk). `error:429:...` at the\n"
        "client is the adapter passing the engine's 429 on once its retries are spent or Retry-After is\n"
        "longer than it waits; `failed:...` is a stream the engine dropped midway (not retried: bytes\n"
        "were sent). Duplicates are counted from the engine's own log: a tag answered in full twice would\n"
        "be a request generated twice. Adapter retries can exceed the extra attempts the engine logged: a\n"
        "retry after a connection error may be of a request the engine never read.\n\n"
        "The stateful mix (`--mix full`, the default; a share of the slots starts a flow of several requests,\n"
        "each with a tag of its own): `chain` turns (3-5 by `previous_response_id`, `store: true`; a turn ends\n"
        "`ok` only once it was read back afterwards by GET, linked to the turn it continued, completed with\n"
        "its tag and holding its one input item), `background` responses polled with GET until they end\n"
        "(`background-cancel`: cancelled mid-run; `ok:cancelled`), `ws` turns (`response.create` messages on\n"
        "one WebSocket session on `GET /v1/responses`, each continuing the last: exactly one terminal event,\n"
        "of its own response, linked to the one before; nothing more after the last). A background response\n"
        "left `queued`/`in_progress` past the client timeout is `bad:stuck-...`.\n\n" + summary + "\n"
    )
