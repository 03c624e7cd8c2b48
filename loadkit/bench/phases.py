"""scripts/bench's measurements, one function a phase: each takes the lab that is up and the plan's
knobs, prints what it found and returns it as the results file keeps it."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass

from loadkit import client
from loadkit.bench.engine import engine_start
from loadkit.bench.lab import BenchLab, Target, say
from loadkit.procs import cpu_seconds, rss_mb
from loadkit.stack import sh
from loadkit.stats import PCTS, pct

# "before" is in the wrk phases only; the chat passthrough paths (Portkey's one) are in every phase.
MAIN = ("direct", "nginx", "modelyard", "litellm", "adapter", "modelyard_chat", "litellm_chat", "portkey")
STREAMED = ("direct", "nginx", "modelyard", "litellm", "modelyard_chat", "litellm_chat", "portkey")
HELD = ("nginx", "modelyard", "litellm", "portkey")
RATE = 100.0


@dataclass
class Plan:
    """How long and how often each phase measures."""

    rounds: int = 2
    flight_rounds: int = 5
    seconds: float = 3.0
    levels: tuple[int, ...] = (1, 2, 4, 8, 16, 64)
    sweep_seconds: float = 2
    streams: int = 30
    open_streams: tuple[int, ...] = (1000, 10000)
    open_timeout: float = 60.0
    engine_clients: int = 4
    engine_tokens: int = 64
    # ~50 requests a window: alternating often (4 x 15 s a path) evens out the engine's own drift.
    engine_seconds: float = 15.0
    engine_rounds: int = 4

    @classmethod
    def quick(cls) -> Plan:
        """Shorter phases, for trying the script out (not for publishing)."""
        return cls(flight_rounds=3, seconds=2.0, levels=(1, 4, 16, 64), streams=10, open_streams=(200, 1000),
                   open_timeout=30.0, engine_seconds=10.0, engine_rounds=1)  # fmt: skip


def streamable(lab: BenchLab, keys: tuple[str, ...]) -> list[Target]:
    """The paths of `keys` that are up and whose streams work here (lab.skipped says why not)."""
    return [lab.paths[k] for k in keys if k in lab.paths and f"{k} streams" not in lab.skipped]


def wrk(lab: BenchLab, p: Target, conns: int, seconds: float) -> dict:
    """One wrk run at `conns` connections: requests, errors, the PCTS latencies (µs) and the CPU
    seconds each of the path's parts used meanwhile."""
    script = lab.workdir / f"{p.key}.lua"
    if not script.exists():
        heads = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in p.headers.items())
        script.write_text(WRK_LUA.replace("@BODY@", p.body.decode()).replace("@HEADERS@", heads))
    parts = [(part, part.pids()) for part in p.parts]
    before = [cpu_seconds(pids) for _, pids in parts]
    out = sh("wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--timeout", "10s", "-s", str(script), p.url())
    after = [cpu_seconds(pids) for _, pids in parts]
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH "))
    res = json.loads(line[6:])
    res["cpu"] = {part.name: a - b for (part, _), a, b in zip(parts, after, before, strict=True)}
    return res


def ceiling(lab: BenchLab) -> dict:
    res = wrk(lab, lab.paths["direct"], 64, 3)
    say(f"stand-in ceiling (wrk -c64, same core as wrk): {res['requests'] / (res['duration_us'] / 1e6):.0f} requests/s")
    return {"direct_c64": res}


def one_in_flight(lab: BenchLab, plan: Plan) -> dict:
    secs, rounds = plan.seconds, plan.flight_rounds
    say(f"1 in flight: wrk -c1, {secs} s a path, {rounds} rounds interleaved, median of the rounds")
    runs: dict[str, list[dict]] = {k: [] for k in lab.paths}
    for _ in range(rounds):
        for p in lab.paths.values():
            runs[p.key].append(wrk(lab, p, 1, secs))
    out = {}
    for key, rs in runs.items():
        # Each quantile: the median over the rounds, so a burst of load from elsewhere that lands on
        # one round does not make a path's tail.
        qs = [statistics.median(r["p"][i] for r in rs) for i in range(len(rs[0]["p"]))]
        out[key] = {
            "quantiles": qs,
            "requests": sum(r["requests"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "p50_ms": qs[PCTS.index(50)] / 1000,
            "p99_ms": qs[PCTS.index(99)] / 1000,
        }
    show(out)
    return {"percentiles": PCTS, "paths": out}


def fixed_rate(lab: BenchLab, plan: Plan) -> dict:
    secs, main = plan.seconds, [p for p in lab.paths.values() if p.key in MAIN]
    say(f"fixed rate: {RATE:.0f} requests/s open loop, {secs} s a path, {plan.rounds} rounds interleaved")
    lat: dict[str, list[float]] = {p.key: [] for p in main}
    errors: dict[str, int] = {p.key: 0 for p in main}
    for _ in range(plan.rounds):
        for p in main:
            r = asyncio.run(client.fixed_rate("127.0.0.1", p.port, p.path, p.body, RATE, secs, p.headers))
            lat[p.key] += r.latencies
            errors[p.key] += r.errors
    out = {}
    for key, xs in lat.items():
        xs.sort()
        out[key] = {
            "p50_ms": pct(xs, 50) * 1000,
            "p99_ms": pct(xs, 99) * 1000,
            "requests": len(xs),
            "errors": errors[key],
            "quantiles": [pct(xs, q) * 1e6 for q in PCTS],
        }
    show(out)
    return {"rate": RATE, "paths": out}


def sweep(lab: BenchLab, plan: Plan) -> dict:
    levels, secs = list(plan.levels), plan.sweep_seconds
    say(f"throughput sweep: wrk -c {levels}, {secs} s each, twice (the better p99 kept), CPU from /proc")
    out = levels_of(lab, list(lab.paths.values()), levels, secs)
    for key, byc in out.items():
        say(f"  {key:14s} " + "  ".join(f"c{c}: {v['rps']:7.0f}/s p99 {v['p99_ms']:6.2f} ms" for c, v in byc.items()))
    return out


def levels_of(lab: BenchLab, paths: list[Target], levels: list[int], secs: float) -> dict[str, dict]:
    """wrk at each concurrency, every path twice, interleaved: the run with the lower p99 kept, CPU per
    request over both runs."""
    out: dict[str, dict] = {p.key: {} for p in paths}
    for c in levels:
        both: dict[str, list[dict]] = {p.key: [] for p in paths}
        for _ in range(2):
            for p in paths:
                both[p.key].append(wrk(lab, p, c, secs))
        for p in paths:
            a, b = both[p.key]
            r = min(a, b, key=lambda x: x["p"][PCTS.index(99)])
            # CPU per request over both runs: more requests, finer than one run's clock ticks.
            cpu = {n: a["cpu"][n] + b["cpu"][n] for n in a["cpu"]}
            n_req = a["requests"] + b["requests"]
            out[p.key][str(c)] = {
                "rps": r["requests"] / (r["duration_us"] / 1e6),
                "p50_ms": r["p"][PCTS.index(50)] / 1000,
                "p99_ms": r["p"][PCTS.index(99)] / 1000,
                "errors": r["errors"],
                "requests": r["requests"],
                "cpu_ms_per_req": {n: 1000 * v / max(1, n_req) for n, v in cpu.items()},
            }
    return out


def streaming(lab: BenchLab, plan: Plan, chunks: int, cadence_ms: float) -> dict:
    n = plan.streams
    say(f"streaming: {n} streams a path one at a time ({chunks} tokens, {cadence_ms:g} ms apart)")
    paths = streamable(lab, STREAMED)
    times: dict[str, list[tuple[list[float], list[float]]]] = {p.key: [] for p in paths}
    for _ in range(plan.rounds):
        for p in paths:
            for _ in range(n // plan.rounds):
                times[p.key].append(
                    asyncio.run(client.stream_once("127.0.0.1", p.port, p.path, p.stream_body, p.headers))
                )
    out = {}
    for key, streams in times.items():
        ttft = sorted(ts[0] for ts, _ in streams)
        # Each token after the first: from the stand-in's write (stamped in its text) to the client.
        gaps = sorted(x for _, transit in streams for x in transit[1:])
        out[key] = {
            "ttft_p50_ms": pct(ttft, 50) * 1000,
            "ttft_p99_ms": pct(ttft, 99) * 1000,
            "lag_p50_ms": pct(gaps, 50) * 1000,
            "lag_p99_ms": pct(gaps, 99) * 1000,
            "tokens": statistics.fmean(len(ts) for ts, _ in streams),
            "streams": len(streams),
        }
    for key, v in out.items():
        say(f"  {key:10s} ttft p50 {v['ttft_p50_ms']:.2f} ms p99 {v['ttft_p99_ms']:.2f}; token transit "
            f"p50 {v['lag_p50_ms']:.3f} ms p99 {v['lag_p99_ms']:.3f}; {v['tokens']:.0f} tokens")  # fmt: skip
    return out


def open_streams(lab: BenchLab, plan: Plan, start_engine: bool = False) -> dict:
    counts = plan.open_streams
    say(f"open streams: {list(counts)} held at once (a token a second), RSS from /proc")
    out: dict[str, dict] = {}
    for p in streamable(lab, HELD):
        key = p.key
        if key == "litellm" and start_engine:
            # The engine's start-up (a minute or more of CPU) overlaps LiteLLM's phase, which tops out
            # at 500 streams whatever the CPU (its connection pool), not modelyard's, where opening
            # 5,000 streams in time needs the core.
            engine_start(lab)
        res: dict = {"idle": {part.name: rss_mb(part.pids()) for part in p.parts}}
        asyncio.run(_hold(p, counts, plan.open_timeout, res))
        out[key] = res
        time.sleep(3)  # the streams wind down upstream before the next path
    return out


async def _hold(p: Target, counts: tuple[int, ...], timeout: float, res: dict) -> None:
    """Open streams up to each count in turn, noting how many opened and the path's RSS at each."""
    held = client.Held()
    done = 0
    try:
        for n in counts:
            took = await client.hold_streams(
                held, "127.0.0.1", p.port, p.path, p.hold_body, n - done, timeout=timeout, headers=p.headers
            )
            done = n
            res[str(n)] = {
                "open": held.opened,
                "errors": held.errors,
                "why": dict(held.why),
                "seconds": took,
                "rss_mb": {part.name: rss_mb(part.pids()) for part in p.parts},
            }
            say(f"  {p.key:10s} {n} asked: {held.opened} open, {held.errors} failed {held.why or ''} in {took:.1f} s; "
                f"RSS {res[str(n)]['rss_mb']}")  # fmt: skip
            if held.opened < n:
                break  # it could not hold this many: the larger count would only time out
    finally:
        held.close()


def show(out: dict) -> None:
    floor = out["direct"]
    for key, v in out.items():
        say(f"  {key:10s} p50 {v['p50_ms']:.3f} ms (+{v['p50_ms'] - floor['p50_ms']:.3f})  "
            f"p99 {v['p99_ms']:.3f} ms (+{v['p99_ms'] - floor['p99_ms']:.3f})  {v['requests']} requests, "
            f"{v['errors']} errors")  # fmt: skip


WRK_LUA = (
    """
wrk.method = "POST"
wrk.body = '@BODY@'
wrk.headers["Content-Type"] = "application/json"
@HEADERS@local pcts = {"""
    + ", ".join(str(p) for p in PCTS)
    + """}
done = function(summary, latency, requests)
  local ps = {}
  for i, p in ipairs(pcts) do ps[i] = latency:percentile(p) end
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"errors":%d,"p":[%s]}\\n', summary.requests,
    summary.duration, e.connect + e.read + e.write + e.status + e.timeout, table.concat(ps, ",")))
end
"""
)
