"""Turn scripts/bench's results into the figures block of docs/benchmarks.md and its plot."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any

from loadkit.bench import targets as tg
from loadkit.bench.targets import P99_BUDGET_MS, max_rps

__all__ = ["P99_BUDGET_MS", "block", "figures", "max_rps", "write"]

BEGIN, END = "<!-- bench:begin (written by scripts/bench) -->", "<!-- bench:end -->"
LABELS = {
    "direct": "direct (the floor)",
    "nginx": "nginx alone",
    "modelyard": "**modelyard** (gateway + adapter)",
    "litellm": "LiteLLM proxy",
    "adapter": "adapter alone (no gateway)",
    "keepalive": "modelyard, gateway keep-alive to the adapter",
    "before": "adapter alone, before this work",
    "modelyard_chat": "**modelyard**, chat passthrough",
    "litellm_chat": "LiteLLM proxy, chat passthrough",
    "portkey": "Portkey gateway, chat passthrough",
    "plain": "plain (/v1/responses, store off)",
    "messages": "/v1/messages, same adapter",
    "store_sqlite": "store on, SQLite (`store: true`)",
    "store_pg": "store on, PostgreSQL (`store: true`)",
    "capture": "capture on (`x-rollout-id`, `store: false`)",
}


def steal_line(r: dict) -> str:
    """Steal time (/proc/stat): what other guests of the host took from this virtual machine's cores."""
    if "steal_run" not in r:
        return "not recorded"
    mid = r.get("steal_proxy_phases")
    during = f"{mid:.1%} during the proxy phases, " if mid is not None else ""
    return f"{during}{r['steal_run']:.1%} over the whole run (/proc/stat; 0 on a quiet host)"


def f(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def cpu_at(r: dict[str, Any], key: str, c: str = "16") -> dict[str, float]:
    return r["sweep"][key][c]["cpu_ms_per_req"]


def figures(r: dict[str, Any]) -> dict[str, Any]:
    one, rate = r["one_in_flight"]["paths"], r["fixed_rate"]["paths"]
    d1, dr = one["direct"], rate["direct"]
    out: dict[str, Any] = {}
    for key in one:
        cpu = cpu_at(r, key)
        out[key] = {
            "p50_1": one[key]["p50_ms"] - d1["p50_ms"],
            "p99_1": one[key]["p99_ms"] - d1["p99_ms"],
            "p50_r": rate[key]["p50_ms"] - dr["p50_ms"] if key in rate else None,
            "p99_r": rate[key]["p99_ms"] - dr["p99_ms"] if key in rate else None,
            "max_rps": max_rps(r, key),
            "cpu": cpu,
            "cpu_total": sum(cpu.values()),
        }
    return out


def block(r: dict[str, Any], plot_name: str) -> str:
    v = r["versions"]
    fig = figures(r)
    ceiling = r["ceiling"]["direct_c64"]["requests"] / (r["ceiling"]["direct_c64"]["duration_us"] / 1e6)
    lines = [BEGIN, ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| run | {r['started']} to {r['finished']} ({r['seconds'] / 60:.1f} min) |",
        f"| command | `{r['command']}` |",
        f"| machine | {v['machine']}, kernel {v['kernel']}, Docker {v['docker']} |",
        f"| load average (1/5/15 min) | start {r['loadavg_start']}, after the proxy phases {r.get('loadavg_mid')}, "
        f"end {r['loadavg_end']} |",
        f"| CPU stolen by the hypervisor | {steal_line(r)} |",
        f"| modelyard | commit {v['commit']}, image `{v['adapter_image']}`: Python {v['python']}, {v['adapter']} |",
        f"| gateway, nginx alone | {v['nginx']} (the modelyard/gateway image) |",
        f"| LiteLLM | litellm[proxy] {v['litellm']} from PyPI, one worker, no database, no callbacks |",
        f"| Portkey | {portkey_line(r)} |",
        f"| load generator | {v['wrk']}; an asyncio client (loadkit/client.py) for fixed rate and streams |",
        f"| stand-in ceiling | {ceiling:,.0f} requests/s (wrk -c64 straight at it, sharing core 0 with wrk) |",
        "",
        "**Non-streaming**: added = the path's figure minus direct's in the same phase; one request in flight "
        "(wrk -c1), then an open-loop 100 requests/s; CPU per request from /proc of the path's processes at 16 "
        "connections (ms per request = CPU seconds per 1,000 requests).",
        "",
        "| path | added p50, 1 in flight | added p99, 1 in flight | added p50 @100/s | added p99 @100/s "
        "| max requests/s with p99 added ≤ 10 ms | CPU ms per request (= s per 1,000) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, x in fig.items():
        rps, at = x["max_rps"]
        cpu = " + ".join(f"{n} {c:.3f}" for n, c in x["cpu"].items())
        cpu = cpu if len(x["cpu"]) == 1 else f"{cpu} = {x['cpu_total']:.3f}"
        rps_s = f"{rps:,.0f} (c={at})" if rps else "none: over budget at every concurrency"
        lines.append(
            f"| {LABELS.get(key, key)} | {f(x['p50_1'], 3)} ms | {f(x['p99_1'], 3)} ms | {f(x['p50_r'], 3)} "
            f"| {f(x['p99_r'], 3)} | {rps_s} | {cpu} |"
        )
    one = r["one_in_flight"]["paths"]
    lines += [
        "",
        "Absolute latency at 1 in flight (ms, p50 / p99): "
        + "; ".join(f"{k} {one[k]['p50_ms']:.3f} / {one[k]['p99_ms']:.3f}" for k in one)
        + ".",
        "",
        "Throughput sweep (wrk, closed loop; requests/s and p99 ms at each number of connections):",
        "",
    ]
    levels = list(r["sweep"]["direct"])
    lines += ["| path | " + " | ".join(f"c={c}" for c in levels) + " |", "|---|" + "---:|" * len(levels)]
    for key, byc in r["sweep"].items():
        cells = [f"{byc[c]['rps']:,.0f}/s, p99 {byc[c]['p99_ms']:.1f}" for c in levels]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")

    s = r["streaming"]
    ds = s["direct"]
    lines += [
        "",
        f"**Streaming** ({s['direct']['streams']} streams a path, one at a time; the stand-in sends the first token "
        "at once and one every 10 ms after it, 20 in all). TTFT = time from the send to the first generated "
        "text; token transit = for every later token, from the stand-in's write (a CLOCK_MONOTONIC stamp in "
        "the token's text) to its arrival at the client.",
        "",
        "| path | TTFT p50 | TTFT p99 | added TTFT p50 | added TTFT p99 | added per-token delay p50 "
        "| added per-token delay p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, x in s.items():
        lines.append(
            f"| {LABELS.get(key, key)} | {x['ttft_p50_ms']:.2f} ms | {x['ttft_p99_ms']:.2f} ms "
            f"| {x['ttft_p50_ms'] - ds['ttft_p50_ms']:.2f} ms | {x['ttft_p99_ms'] - ds['ttft_p99_ms']:.2f} ms "
            f"| {x['lag_p50_ms'] - ds['lag_p50_ms']:.3f} ms | {x['lag_p99_ms'] - ds['lag_p99_ms']:.3f} ms |"
        )

    o = r.get("open_streams", {})
    if o:
        counts = [k for k in next(iter(o.values())) if k != "idle"]
        lines += [
            "",
            "**Concurrent open streams** (each delivering a token a second; RSS of the path's processes from "
            "/proc once every stream has delivered its first token):",
            "",
            "| path | idle RSS | "
            + " | ".join(f"{c} asked: open / failed, seconds to open, RSS" for c in counts)
            + " |",
            "|---|---|" + "---|" * len(counts),
        ]
        for key, x in o.items():
            idle = ", ".join(f"{n} {m:.0f} MB" for n, m in x["idle"].items())
            cells = []
            for c in counts:
                y = x.get(c)
                if not y:
                    cells.append("not tried (could not hold the smaller count)")
                    continue
                rss = ", ".join(f"{n} {m:.0f} MB" for n, m in y["rss_mb"].items())
                why = "; ".join(f"{n:,} {w}" for w, n in sorted((y.get("why") or {}).items(), key=lambda i: -i[1]))
                why = f" ({why})" if why else ""
                cells.append(f"{y['open']:,} / {y['errors']:,}{why}, {y['seconds']:.1f} s, {rss}")
            lines.append(f"| {LABELS.get(key, key)} | {idle} | " + " | ".join(cells) + " |")

    lines += engine_lines(r) + cost_lines(r) + before_after(r)
    for what, why in (r.get("skipped") or {}).items():
        lines += ["", f"**Left out of this run: {what}** — {why}."]
    if r.get("engine_error"):
        lines += ["", f"**vLLM CPU engine**: the phase did not complete in this run ({r['engine_error']})."]
    lines += ["", targets(r, fig), "", f"![latency distribution per path]({plot_name})", "", END]
    return "\n".join(lines)


def targets(r: dict[str, Any], fig: dict[str, Any]) -> str:
    head = ["**Targets** (modelyard = gateway + one adapter process, pinned to one core; computed from this run):",
            "", "| target | wanted | measured | |", "|---|---|---|---|"]  # fmt: skip
    rows = []
    for row in tg.rows(r):
        verdict = "not measured" if row.ok is None else ("met" if row.ok else "**missed**")
        shown = f"{f(row.value, row.digits)} {row.unit}".strip() if row.value is not None else "—"
        note = f" ({row.note})" if row.note else ""
        rows.append(f"| {row.what} | {row.wanted} | {shown} | {verdict}{note} |")
    n, lite = fig["nginx"], fig["litellm"]
    ref = (
        f"For reference, against the issue's orientation figures: nginx alone added {n['p50_1']:.3f} / "
        f"{n['p99_1']:.3f} ms (p50 / p99, 1 in flight; 0.04 / 0.09 expected) at {n['cpu_total'] * 1000:.0f} µs CPU "
        f"a request (20–50 expected); LiteLLM added {lite['p50_1']:.1f} / {lite['p99_1']:.1f} ms (12.6 / 18.5) at "
        f"{lite['cpu_total']:.1f} ms CPU a request (12.5), {max(v['rps'] for v in r['sweep']['litellm'].values()):.0f} "
        "requests/s at most (about 80)."
    )
    return "\n".join(head + rows + ["", ref])


def portkey_line(r: dict[str, Any]) -> str:
    v, skipped = r["versions"], r.get("skipped") or {}
    if skipped.get("portkey"):
        return f"left out: {skipped['portkey']}"
    return (f"@portkey-ai/gateway {v.get('portkey')} from npm on Node {v.get('node')}, one process, provider "
            "`openai` with `x-portkey-custom-host` at the stand-in; chat only (its `/v1/responses` passes through "
            "to the upstream's, it does not bridge to chat)")  # fmt: skip


def engine_lines(r: dict[str, Any]) -> list[str]:
    e = r.get("engine")
    if not e:
        return []
    st, na, same = e["stack"], e.get("native"), e.get("same_text") or {}
    out = [
        "",
        f"**vLLM CPU engine** ({e['model']}, 4 clients in a closed loop, 64 tokens a request, temperature 0, "
        "the paths alternating): "
        f"direct chat {e['direct']['tokens_per_s']:.1f} tokens/s ({e['direct']['requests_per_s']:.2f} requests/s), "
        f"through the stack (Responses bridged to chat) {st['tokens_per_s']:.1f} tokens/s "
        f"({st['requests_per_s']:.2f} requests/s): **stack / direct = {e['ratio']:.3f}**.",
    ]
    if na:
        out += [
            "",
            "| `/v1/responses` on the engine | tokens/s | TTFT p50 | TTFT p99 | streams timed |",
            "|---|---:|---:|---:|---:|",
        ]
        for label, x in (("modelyard (gateway + adapter, bridged to chat)", st), ("the engine's own", na)):
            out.append(f"| {label} | {x['tokens_per_s']:.1f} | {f(x.get('ttft_p50_ms'), 0)} ms "
                       f"| {f(x.get('ttft_p99_ms'), 0)} ms | {x.get('streams', 0)} |")  # fmt: skip
        verdict = "the same text" if same.get("equal") else "different texts"
        out += ["", f"Stack over the engine's own `/v1/responses`: {e['native_ratio']:.3f} in tokens/s; one "
                f"temperature-0 request each gave **{verdict}** (reported, not asserted)."]  # fmt: skip
    return out


def cost_lines(r: dict[str, Any]) -> list[str]:
    c = r.get("costs")
    if not c:
        return ["", f"**Cost phases**: not run ({r['costs_error']})."] if r.get("costs_error") else []
    plain = c["plain"]
    out = [
        "",
        "**Cost of the stateful features** (adapter alone, no gateway: one extra adapter process a variant, "
        "pinned like the main one, PostgreSQL on the load core; wrk at 1 and 16 connections, every variant beside "
        "the plain adapter in the same rounds; CPU added = the variant's adapter CPU per request minus plain's):",
        "",
        "| variant | added p50 / p99, c=1 | requests/s c=1 / c=16 | max requests/s, p99 added ≤ 10 ms "
        "| adapter CPU ms per request (c=16) | added over plain |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    d1 = c["direct"]["1"]
    for key in ["plain", *(k for k in c if k not in ("plain", "direct"))]:
        byc = c[key]
        cpu = byc["16"]["cpu_ms_per_req"]
        extra = "".join(f" + {n} {v:.3f}" for n, v in cpu.items() if n != "adapter")
        rps, at = max_rps(r, key, c)
        added = "—" if key == "plain" else f"{cpu['adapter'] - plain['16']['cpu_ms_per_req']['adapter']:+.3f} ms"
        a50, a99 = byc["1"]["p50_ms"] - d1["p50_ms"], byc["1"]["p99_ms"] - d1["p99_ms"]
        out.append(
            f"| {LABELS.get(key, key)} | {a50:.3f} / {a99:.3f} ms | {byc['1']['rps']:,.0f} / {byc['16']['rps']:,.0f} | "
            f"{f'{rps:,.0f} (c={at})' if rps else 'none'} | {cpu['adapter']:.3f}{extra} | {added} |"
        )
    return out


def before_after(r: dict[str, Any]) -> list[str]:
    """Issue G's rule: adapter CPU per request and requests/s within the p99 budget, before vs after, same run."""
    if "before" not in r["sweep"]:
        return []
    cpu = {k: r["sweep"][k]["16"]["cpu_ms_per_req"].get("adapter") for k in ("before", "adapter")}
    rps = {k: max_rps(r, k)[0] for k in ("before", "adapter")}
    image = r["versions"].get("before_image", "--before-image")
    return ["", f"**Before / after** (adapter alone, same run; before = `{image}`): "
            f"CPU per request {f(cpu['before'], 3)} → {f(cpu['adapter'], 3)} ms; requests/s within the p99 budget "
            f"{f(rps['before'], 0)} → {f(rps['adapter'], 0)}."]  # fmt: skip


def write(r: dict[str, Any], doc: Path, python: Path, results: Path) -> None:
    plot = doc.with_name("benchmarks-latency.png")
    try:
        subprocess.run([str(python), str(Path(__file__).with_name("plot.py")), str(results), str(plot)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"[bench] no plot: {exc}")
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    new = block(r, plot.name)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + new + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + new + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    print(f"[bench] figures written to {doc}, plot to {plot}")
