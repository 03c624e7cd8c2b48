"""scripts/bench's cost phases: what the stateful features add to the plain path, as CPU per request in
the adapter and requests/s within the p99 budget, measured with wrk at 1 and 16 connections beside the
plain adapter in the same rounds. One extra adapter process a variant, pinned like the main one: store on
with SQLite, store on with PostgreSQL (the modelyard/postgres image, on the load core), capture on (with
`x-rollout-id`); and `/v1/messages` against `/v1/responses` through the plain adapter itself."""

from __future__ import annotations

import secrets
import subprocess
import time

from loadkit.bench.lab import LOAD_CPU, RESP, BenchLab, Part, Target, ask, say
from loadkit.bench.phases import levels_of
from loadkit.stack import free_port, wait_http

LEVELS = (1, 16)
MESSAGES = b'{"model":"bench-model","max_tokens":16,"messages":[{"role":"user","content":"Say hello."}]}'
STORED = RESP[:-1] + b',"store":true}'
UNSTORED = RESP[:-1] + b',"store":false}'  # capture alone: the response itself is not stored


def costs(lab: BenchLab, seconds: float) -> dict:
    plain = lab.paths["adapter"]
    variants = [Target("messages", "/v1/messages, plain adapter", plain.port, "/v1/messages", MESSAGES, plain.parts)]
    variants += bring_up(lab)
    say(f"cost phases: {[v.key for v in variants]} against the plain adapter, wrk -c {list(LEVELS)}, {seconds} s")
    for v in variants:
        reply = ask(v, v.body)
        assert "Hello from the bench stand-in." in str(reply), (v.key, reply)
    paths = [lab.paths["direct"], plain, *variants]
    try:
        out = levels_of(lab, paths, list(LEVELS), seconds)
    finally:
        lab.remove("store-sqlite", "store-pg", "capture", "postgres")
    out["plain"] = out.pop("adapter")
    for key, byc in out.items():
        say(f"  {key:12s} " + "  ".join(
            f"c{c}: {v['rps']:6.0f}/s p99 {v['p99_ms']:6.2f} ms adapter {v['cpu_ms_per_req'].get('adapter', 0):.3f} ms"
            for c, v in byc.items()))  # fmt: skip
    return out


def bring_up(lab: BenchLab) -> list[Target]:
    ports = {k: free_port() for k in ("sqlite", "pg", "capture", "postgres")}
    sqlite = "sqlite:////tmp/bench-store.db"
    lab.adapter("store-sqlite", lab.images.adapter, ports["sqlite"], {**lab.adapter_env, "MODELYARD_STORE_URL": sqlite})
    lab.adapter("capture", lab.images.adapter, ports["capture"],
                {**lab.adapter_env, "MODELYARD_STORE_URL": sqlite, "MODELYARD_CAPTURE": "true"})  # fmt: skip
    out = [
        Target("store_sqlite", "store on, SQLite", ports["sqlite"], "/v1/responses", STORED,
               [Part("adapter", lab.name("store-sqlite"))]),
        Target("capture", "capture on", ports["capture"], "/v1/responses", UNSTORED,
               [Part("adapter", lab.name("capture"))], {"x-rollout-id": "bench-rollout"}),
    ]  # fmt: skip
    pg = postgres(lab, ports["postgres"])
    if pg:
        lab.adapter("store-pg", lab.images.adapter, ports["pg"], {**lab.adapter_env, "MODELYARD_STORE_URL": pg})
        parts = [Part("adapter", lab.name("store-pg")), Part("postgres", lab.name("postgres"))]
        out.append(Target("store_pg", "store on, PostgreSQL", ports["pg"], "/v1/responses", STORED, parts))
    for t in out:
        wait_http(f"http://127.0.0.1:{t.port}/readyz", timeout=60)
    return out


def postgres(lab: BenchLab, port: int) -> str:
    """PostgreSQL on the load core (the server core is the adapter's alone); its URL, or "" (and why,
    in lab.skipped) when the image is missing or it does not come up."""
    image = lab.images.postgres
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        lab.skipped["store_pg"] = f"{image} is not built (scripts/build-images postgres)"
        say(f"cost phases: PostgreSQL left out: {lab.skipped['store_pg']}")
        return ""
    pw = secrets.token_hex(12)
    # Host network, like everything measured; PGPORT moves the server (and its init's psql) off 5432.
    lab.container("postgres", image, options=("--no-healthcheck",), env={"POSTGRES_PASSWORD": pw, "PGPORT": str(port)},
                  cpus=LOAD_CPU)  # fmt: skip
    probe = ["docker", "exec", lab.name("postgres"), "pg_isready", "-h", "127.0.0.1", "-p", str(port), "-q"]
    for _ in range(120):
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return f"postgresql://modelyard:{pw}@127.0.0.1:{port}/modelyard"
        time.sleep(0.5)
    lab.skipped["store_pg"] = "PostgreSQL did not become ready within 60 s"
    return ""
