"""One whole scripts/bench run: bring-up, the phases in order, the results file, the doc's figures.
Whatever happens, everything started is taken down and the results so far are written."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from loadkit.bench import costs, engine, phases, report
from loadkit.bench.lab import LOAD_CPU, STREAM_CADENCE_MS, STREAM_CHUNKS, BenchLab, Images, say
from loadkit.bench.phases import Plan
from loadkit.procs import cpu_times, loadavg, steal_share


def prepare() -> None:
    """The load generator on its own core, every file descriptor it may open, uvloop when installed."""
    os.sched_setaffinity(0, {LOAD_CPU})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass


def run(images: Images, venv: Path, portkey: Path, plan: Plan, with_engine: bool, out: Path, command: str) -> dict:
    lab = BenchLab(images, venv, portkey=portkey)
    t0 = time.time()
    r: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "command": command}
    r["loadavg_start"], cpu_start = loadavg(), cpu_times()
    try:
        lab.up()
        r["versions"] = lab.versions()
        r["ceiling"] = phases.ceiling(lab)
        r["one_in_flight"] = phases.one_in_flight(lab, plan)
        r["fixed_rate"] = phases.fixed_rate(lab, plan)
        r["sweep"] = phases.sweep(lab, plan)
        try:
            r["costs"] = costs.costs(lab, plan.sweep_seconds)
        except Exception as exc:  # a variant that does not come up must not cost the rest of the run
            r["costs_error"] = str(exc)
            say(f"cost phases failed: {exc}")
        r["streaming"] = phases.streaming(lab, plan, STREAM_CHUNKS, STREAM_CADENCE_MS)
        r["open_streams"] = phases.open_streams(lab, plan, start_engine=with_engine)
        r["loadavg_mid"], cpu_mid = loadavg(), cpu_times()
        r["steal_proxy_phases"] = steal_share(cpu_start, cpu_mid)
        if with_engine:
            try:
                r["engine"] = engine.engine(lab, plan)
            except Exception as exc:  # the proxy figures stand on their own: report them anyway
                r["engine_error"] = str(exc)
                say(f"vLLM CPU engine phase failed: {exc}")
    finally:
        r["skipped"] = lab.skipped
        r["seconds"] = time.time() - t0
        r["loadavg_end"] = loadavg()
        r["steal_run"] = steal_share(cpu_start, cpu_times())
        r["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=1))
        say(f"results in {out} ({r['seconds']:.0f} s); bringing everything down")
        lab.down()
    return r


def write_doc(r: dict, doc: Path, venv: Path, results: Path) -> None:
    report.write(r, doc, venv / "bin" / "python", results)


def command_line() -> str:
    return "scripts/bench " + " ".join(sys.argv[1:])
