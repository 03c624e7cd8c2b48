"""The prefix-cache effect of session-sticky routing (scripts/prefix-cache, docs/fleet.md): the same
multi-turn workload on two engine replicas behind one adapter, in three modes, with each engine's
prefix-cache counters read before and after each:

  sticky        each session sends `x-session-id`: all its turns on one replica
  least-loaded  no session header, no cookie: each request goes to the least-loaded replica (ties in turn)
  round-robin   each turn names, with the replica cookie, the other replica than the turn before: what a
                router without session affinity does to a session (strict alternation over two replicas)

Each session opens with its own long document (the prefix its turns share) and grows turn by turn with
the model's replies, as a rollout does. The modes use different documents, so none profits from what
another left in the caches. Standard library only.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field

from .stats import pct

WORDS = (
    "river stone lamp orbit cedar pixel harbor violet ember canyon signal meadow copper lattice quartz willow "
    "beacon saddle tundra marble falcon velvet prism glacier thistle anchor comet basalt sparrow"
)
QUESTIONS = ["Summarise the list.", "Which word comes first?", "Name two words.", "Say one more.", "Continue."]
# vLLM V1's counters, in tokens (queried, and found in the cache); the names have `_total` on the wire.
QUERIES = re.compile(r"^vllm:prefix_cache_queries(?:_total)?(?:\{[^}]*\})? ([0-9.e+]+)$", re.M)
HITS = re.compile(r"^vllm:prefix_cache_hits(?:_total)?(?:\{[^}]*\})? ([0-9.e+]+)$", re.M)


MODES = ("sticky", "least-loaded", "round-robin")


@dataclass
class Workload:
    sessions: int = 8
    turns: int = 6
    clients: int = 4  # sessions running at once
    words: int = 300  # each session's opening document
    tokens: int = 16  # max_tokens of each turn


@dataclass
class Mode:
    name: str  # MODES
    latencies: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replicas: dict[str, int] = field(default_factory=dict)
    moves: int = 0  # turns answered by another replica than the session's previous turn
    errors: int = 0
    wall: float = 0.0
    hits: float = 0.0
    queries: float = 0.0
    per_engine: list[tuple[float, float]] = field(default_factory=list)  # (hits, queries) per engine

    def summary(self) -> dict[str, object]:
        lat = sorted(self.latencies)
        return {
            "mode": self.name, "requests": len(lat), "errors": self.errors, "wall_s": round(self.wall, 1),
            "hit_rate": round(self.hits / self.queries, 3) if self.queries else None,
            "per_engine_hit_rate": [round(h / q, 3) if q else None for h, q in self.per_engine],
            "cached_tokens": int(self.hits), "prompt_tokens_queried": int(self.queries),
            "latency_p50_s": round(pct(lat, 50), 3), "latency_p90_s": round(pct(lat, 90), 3),
            "latency_mean_s": round(sum(lat) / len(lat), 3) if lat else None,
            "prompt_tokens_per_s": round(self.prompt_tokens / self.wall, 1) if self.wall else None,
            "completion_tokens_per_s": round(self.completion_tokens / self.wall, 1) if self.wall else None,
            "replicas": self.replicas, "moved_turns": self.moves,
        }  # fmt: skip


def engine_counters(container: str) -> tuple[float, float]:
    """(hits, queries) from one engine's /metrics, read inside its container (the port is not published)."""
    code = "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:8000/metrics',timeout=10).read().decode())"
    text = subprocess.run(["docker", "exec", container, "python", "-c", code], capture_output=True, text=True).stdout
    hits, queries = HITS.findall(text), QUERIES.findall(text)
    if not queries:
        raise SystemExit(f"prefix-cache: no vllm:prefix_cache_queries in {container}'s /metrics (prefix caching off?)")
    return sum(map(float, hits)), sum(map(float, queries))


def document(seed: str, words: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS.split()) for _ in range(words))


def _post(url: str, body: dict, headers: dict[str, str]) -> tuple[dict, str]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.loads(resp.read()), resp.headers.get("x-modelyard-replica", "?")


def session(base: str, model: str, mode: Mode, sid: str, w: Workload, lock: threading.Lock) -> None:
    messages = [{"role": "system", "content": f"Document {sid}: {document(f'{mode.name}-{sid}', w.words)}"}]
    headers = {"x-session-id": f"{mode.name}-{sid}"} if mode.name == "sticky" else {}
    last = None
    for t in range(w.turns):
        if mode.name == "round-robin":  # the replica cookie names the other replica each turn
            headers = {"cookie": f"modelyard-replica={(t + int(sid[1:])) % 2}"}
        messages.append({"role": "user", "content": QUESTIONS[t % len(QUESTIONS)]})
        body = {"model": model, "messages": messages, "max_tokens": w.tokens, "temperature": 0}
        start = time.monotonic()
        try:
            reply, replica = _post(f"{base}/v1/chat/completions", body, headers)
        except OSError:
            with lock:
                mode.errors += 1
            return
        took = time.monotonic() - start
        usage = reply.get("usage") or {}
        with lock:
            mode.latencies.append(took)
            mode.prompt_tokens += usage.get("prompt_tokens", 0)
            mode.completion_tokens += usage.get("completion_tokens", 0)
            mode.replicas[replica] = mode.replicas.get(replica, 0) + 1
            mode.moves += last is not None and replica != last
        last = replica
        messages.append({"role": "assistant", "content": reply["choices"][0]["message"].get("content") or ""})


def run_mode(base: str, model: str, name: str, engines: list[str], w: Workload) -> Mode:
    """The workload once: `clients` sessions at a time, each session's turns one after another."""
    mode, lock = Mode(name), threading.Lock()
    before = [engine_counters(c) for c in engines]
    todo = list(range(w.sessions))

    def client() -> None:
        while True:
            with lock:
                if not todo:
                    return
                n = todo.pop(0)
            session(base, model, mode, f"s{n}", w, lock)

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(w.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mode.wall = time.monotonic() - start
    after = [engine_counters(c) for c in engines]
    mode.per_engine = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)]
    mode.hits = sum(h for h, _ in mode.per_engine)
    mode.queries = sum(q for _, q in mode.per_engine)
    return mode
