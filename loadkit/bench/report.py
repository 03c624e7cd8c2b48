"""Turn scripts/bench's results into the figures block of docs/benchmarks.md and its plot."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin (written by scripts/bench) -->", "<!-- bench:end -->"
LABELS = {
    "direct": "direct (the floor)",
    "nginx": "nginx alone",
    "modelyard": "**modelyard** (gateway + adapter)",
    "litellm": "LiteLLM proxy",
    "adapter": "adapter alone (no gateway)",
    "keepalive": "modelyard, gateway keep-alive to the adapter",
    "before": "adapter alone, before this work",
}
P99_BUDGET_MS = 10.0


def f(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def max_rps(r: dict[str, Any], key: str) -> tuple[float | None, str]:
    """The most requests/s among the sweep's concurrencies whose p99 is within 10 ms of direct's."""
    sweep = r["sweep"]
    best, at = None, ""
    for c, v in sweep[key].items():
        added = v["p99_ms"] - sweep["direct"][c]["p99_ms"]
        if added <= P99_BUDGET_MS and v["errors"] == 0 and (best is None or v["rps"] > best):
            best, at = v["rps"], c
    return best, at


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
        f"| modelyard | commit {v['commit']}, image `{v['adapter_image']}`: Python {v['python']}, {v['adapter']} |",
        f"| gateway, nginx alone | {v['nginx']} (the modelyard/gateway image) |",
        f"| LiteLLM | litellm[proxy] {v['litellm']} from PyPI, one worker, no database, no callbacks |",
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
                cells.append(f"{y['open']:,} / {y['errors']:,}, {y['seconds']:.1f} s, {rss}")
            lines.append(f"| {LABELS.get(key, key)} | {idle} | " + " | ".join(cells) + " |")

    e = r.get("engine")
    if e:
        lines += [
            "",
            f"**vLLM CPU engine** ({e['model']}, 4 clients in a closed loop, 64 tokens a request, temperature 0, "
            "direct and through the stack alternating): "
            f"direct {e['direct']['tokens_per_s']:.1f} tokens/s ({e['direct']['requests_per_s']:.2f} requests/s), "
            f"through the stack {e['stack']['tokens_per_s']:.1f} tokens/s "
            f"({e['stack']['requests_per_s']:.2f} requests/s): **stack / direct = {e['ratio']:.3f}**.",
        ]

    if r.get("engine_error"):
        lines += ["", f"**vLLM CPU engine**: the phase did not complete in this run ({r['engine_error']})."]
    lines += ["", targets(r, fig), "", f"![latency distribution per path]({plot_name})", "", END]
    return "\n".join(lines)


def targets(r: dict[str, Any], fig: dict[str, Any]) -> str:
    m, lite = fig["modelyard"], fig["litellm"]
    rows = []

    def row(
        what: str, target: str, value: float | None, ok: bool | None, unit: str, note: str = "", digits: int = 3
    ) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "**missed**")
        shown = f(value, digits) if value is not None else "n/a"
        rows.append(f"| {what} | {target} | {shown} {unit} | {verdict} {note}|")

    row("added p50, 1 in flight", "≤ 0.6 ms", m["p50_1"], m["p50_1"] <= 0.6, "ms",
        f"(by {m['p50_1'] - 0.6:+.3f} ms) " if m["p50_1"] > 0.6 else "")  # fmt: skip
    row("added p99, 1 in flight", "≤ 2 ms", m["p99_1"], m["p99_1"] <= 2, "ms",
        f"(by {m['p99_1'] - 2:+.3f} ms) " if m["p99_1"] > 2 else "")  # fmt: skip
    acpu = m["cpu"].get("adapter", float("nan"))
    row("adapter CPU per request", "≤ 0.5 ms", acpu, acpu <= 0.5, "ms",
        f"(by {acpu - 0.5:+.3f} ms) " if acpu > 0.5 else "")  # fmt: skip
    rps = m["max_rps"][0] or 0.0
    row("max requests/s, p99 added ≤ 10 ms", "≥ 2,000", rps, rps >= 2000, "/s",
        f"({rps / 2000 - 1:+.0%}) " if rps < 2000 else "", digits=0)  # fmt: skip
    lrps = lite["max_rps"][0]
    best = max(v["rps"] for v in r["sweep"]["litellm"].values())
    ratio = rps / (lrps or best)
    note = f"(LiteLLM was never within the p99 budget: over its best, {best:,.0f}/s at any p99) " if not lrps else ""
    row("… over LiteLLM's, same run", "≥ 25×", ratio, ratio >= 25, "×", note, digits=1)
    o = r.get("open_streams", {}).get("modelyard", {})
    big = o.get("5000")
    if big:
        ok = big["open"] == 5000 and big["errors"] == 0
        note = "" if ok else f"({big['errors']} failed, {5000 - big['open'] - big['errors']} not open within the wait) "
        row("5,000 open streams, no error", "5,000 open", big["open"], ok, "open", note, digits=0)
        rss = big["rss_mb"].get("adapter")
        row("adapter RSS at 5,000 streams", "≤ 400 MB", rss, rss is not None and rss <= 400, "MB", digits=0)
    e = r.get("engine")
    if e:
        row("stack / direct throughput, vLLM CPU", "≥ 0.97", e["ratio"], e["ratio"] >= 0.97, "",
            f"(by {e['ratio'] - 0.97:+.3f}) " if e["ratio"] < 0.97 else "")  # fmt: skip
    n = fig["nginx"]
    ref = (
        f"For reference, against the issue's orientation figures: nginx alone added {n['p50_1']:.3f} / "
        f"{n['p99_1']:.3f} ms (p50 / p99, 1 in flight; 0.04 / 0.09 expected) at {n['cpu_total'] * 1000:.0f} µs CPU "
        f"a request (20–50 expected); LiteLLM added {lite['p50_1']:.1f} / {lite['p99_1']:.1f} ms (12.6 / 18.5) at "
        f"{lite['cpu_total']:.1f} ms CPU a request (12.5), {max(v['rps'] for v in r['sweep']['litellm'].values()):.0f} "
        "requests/s at most (about 80)."
    )
    head = ["**Targets** (modelyard = gateway + one adapter process, Responses bridged to chat):", "",
            "| target | wanted | measured | |", "|---|---|---|---|"]  # fmt: skip
    return "\n".join(head + rows + ["", ref])


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
