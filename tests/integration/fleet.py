"""What the fleet integration tests share (test_weight_update.py, test_adapter_kill.py): a compose project of
their own brought up with `docker compose up --wait` (so `--scale` works), and a mixed load of Responses and
chat completions, plain and streamed, each request ending in exactly one recorded final answer.

Nothing here looks at what the model writes: a request's outcome is its protocol (status, terminal event,
error code) and the headers and metadata the adapter adds.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loadkit import sse

from .conftest import ROOT, free_port

ADMIN_KEY = "fleet-admin-key-1"
ADMIN = {"x-modelyard-admin-key": ADMIN_KEY}
VERSION_HEADER = "x-modelyard-policy-version"
KINDS = ("responses", "responses-stream", "chat", "chat-stream")
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


@dataclass
class FleetStack:
    files: list[str]
    profiles: list[str]
    env: dict[str, str]
    project: str = field(default_factory=lambda: f"modelyard-fleet-{uuid.uuid4().hex[:8]}")
    port: int = field(default_factory=free_port)
    env_file: Path | None = None
    model: str = ""
    started_in: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self, *args: str) -> list[str]:
        files = [a for f in self.files for a in ("-f", f)]
        profiles = [a for p in self.profiles for a in ("--profile", p)]
        return ["docker", "compose", *files, "--env-file", str(self.env_file), *profiles, *args]

    def compose(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.args(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)

    def up(self, tmp: Path, *extra: str) -> None:
        self.env_file = tmp / "fleet.env"
        env = {"COMPOSE_PROJECT_NAME": self.project, "POLICY_BACKEND": "vllm", "GATEWAY_PORT": str(self.port)}
        env |= {"MODELYARD_ADMIN_KEY": ADMIN_KEY} | self.env
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        start = time.monotonic()
        # On a busy machine an engine's warm-up can outlast its health check's start period: compose then
        # calls it unhealthy (and leaves what depends on it unstarted) although it turns healthy later.
        for _ in range(3):
            done = self.compose("up", "-d", "--wait", "--wait-timeout", "900", *extra, timeout=1000)
            if done.returncode == 0 and self._models():
                break
        self.started_in = time.monotonic() - start
        if not self.model:
            print(done.stderr[-3000:], self.compose("logs", "--tail", "60").stdout[-8000:])
            self.down()
            raise AssertionError("the fleet stack did not come up")
        print(f"\nfleet stack {self.project} up in {self.started_in:.0f} s")

    def _models(self) -> bool:
        try:
            with httpx.Client(base_url=self.url, timeout=60) as http:
                self.model = http.get("/v1/models").json()["data"][0]["id"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError):
            return False
        return True

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=300)

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).stdout.split()

    def healthy(self, service: str) -> bool:
        """Every container of the service reports healthy (the engine: warmed up; serve.py)."""
        ids = self.containers(service)
        states = [
            subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", c], capture_output=True, text=True)
            for c in ids
        ]
        return bool(ids) and all(s.stdout.strip() == "healthy" for s in states)


def replicas_healthy(http: httpx.Client) -> dict[str, float]:
    """modelyard_replica_healthy per replica index, from the vLLM adapter's metrics."""
    text = http.get("/vllm/metrics").text
    found = re.findall(r'modelyard_replica_healthy\{[^}]*replica="(\d+)"[^}]*\} ([\d.]+)', text)
    return {index: float(value) for index, value in found}


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.5) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic()
        time.sleep(step)
    raise AssertionError(f"{what} not within {timeout} s")


@dataclass
class Outcome:
    """One request and its one final answer: "ok", "policy_update" (pause with abort) or "error"."""

    kind: str
    request_id: str
    sent: float
    done: float = 0.0
    status: int = 0
    final: str = "error"
    finals: int = 0  # final answers seen: a status with a body, or a stream's terminal events
    header_version: str | None = None
    metadata_version: str | None = None
    detail: str = ""
    # Earlier attempts' request ids: each lost its connection before any response came (`retries` below).
    dropped: list[str] = field(default_factory=list)


def _error_code(payload: object) -> str:
    if isinstance(payload, dict):
        err = payload.get("error") or (payload.get("response") or {}).get("error") or {}
        if isinstance(err, dict):
            return str(err.get("code") or "")
    return ""


def _plain(out: Outcome, resp: httpx.Response) -> None:
    out.finals = 1
    try:
        body = resp.json()
    except ValueError:
        out.detail = resp.text[:300]
        return
    if resp.status_code == 200 and (body.get("status") in ("completed", "incomplete") or body.get("choices")):
        out.final = "ok"
        out.metadata_version = (body.get("metadata") or {}).get("policy_version")
    elif _error_code(body) == "policy_update":
        out.final = "policy_update"
    else:
        out.detail = json.dumps(body)[:300]


def _responses_stream(out: Outcome, raw: bytes) -> None:
    """One terminal event (completed, incomplete, failed); an abort is an `error` event with the code
    policy_update, then `response.failed` (whose error code the spec limits to its own list)."""
    events = sse.json_payloads(raw)
    ends = [e for e in events if e.get("type") in TERMINAL]
    out.finals = len(ends)
    if not ends:
        out.detail = f"no terminal event: {raw[-300:]!r}"
        return
    last = ends[-1]
    if last["type"] in ("response.completed", "response.incomplete"):
        out.final = "ok"
        out.metadata_version = (last["response"].get("metadata") or {}).get("policy_version")
    elif any(e.get("type") == "error" and e.get("code") == "policy_update" for e in events):
        out.final = "policy_update"
    else:
        out.detail = json.dumps(last)[:300]


def _chat_stream(out: Outcome, raw: bytes) -> None:
    payloads = sse.payloads(raw)
    errors = [json.loads(p) for p in payloads if p != sse.DONE and b'"error"' in p[:20]]
    done = payloads.count(sse.DONE)
    out.finals = done + len(errors)
    if done and not errors:
        out.final = "ok"
    elif errors and _error_code(errors[-1]) == "policy_update":
        out.final = "policy_update"
    else:
        out.detail = f"{done} [DONE], errors {errors[-1:]}: {raw[-200:]!r}"


def send(
    http: httpx.Client,
    model: str,
    kind: str,
    session: str,
    tokens: int = 6,
    prompt: str = "",
    retries: int = 0,
    **extra: object,
) -> Outcome:
    """One request of the given kind; every failure mode becomes the Outcome's final answer.

    With `retries`, a request whose connection closed before any response (nothing read: no status line)
    is sent again under a new request id, up to that many times, as the OpenAI SDKs do (max_retries 2,
    connection errors included, POST too). That happens when a keep-alive connection is closed by the
    server just as the request goes out: nginx's reload closes its old workers' idle connections. The
    attempt's id is kept in `dropped` so a test can check that the gateway never logged it (so never
    passed it to an adapter)."""
    out = _send_once(http, model, kind, session, tokens, prompt, **extra)
    while retries and out.final == "error" and out.status == 0 and _dropped(out.detail):
        retries -= 1
        again = _send_once(http, model, kind, session, tokens, prompt, **extra)
        again.sent, again.dropped = out.sent, [*out.dropped, out.request_id]
        out = again
    return out


def _dropped(detail: str) -> bool:
    """The connection went before any response: the server closed or reset it (never a timeout)."""
    return detail.startswith(("RemoteProtocolError(", "ReadError(", "WriteError(", "ConnectError("))


def _send_once(
    http: httpx.Client, model: str, kind: str, session: str, tokens: int, prompt: str, **extra: object
) -> Outcome:
    prompt = prompt or f"Count for {session}."
    rid = f"fleet-{uuid.uuid4().hex[:16]}"
    headers = {"x-session-id": session, "x-request-id": rid}
    stream = kind.endswith("-stream")
    if kind.startswith("responses"):
        path = "/v1/responses"
        body: dict[str, object] = {"model": model, "input": prompt, "max_output_tokens": tokens}
    else:
        path = "/v1/chat/completions"
        body = {"model": model, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": tokens}  # fmt: skip
    body |= {"stream": stream} | extra
    out = Outcome(kind, rid, time.monotonic())
    try:
        with http.stream("POST", path, json=body, headers=headers) as resp:
            out.status = resp.status_code  # a status line came: never retried
            out.header_version = resp.headers.get(VERSION_HEADER)
            raw = resp.read()
        if not stream or out.status != 200:
            _plain(out, httpx.Response(out.status, content=raw))
        elif kind == "responses-stream":
            _responses_stream(out, raw)
        else:
            _chat_stream(out, raw)
    except httpx.HTTPError as exc:
        out.detail = repr(exc)
        out.final = "hang" if isinstance(exc, httpx.TimeoutException) else "error"
    out.done = time.monotonic()
    return out


@dataclass
class Load:
    """Client threads sending the four kinds in turn, back to back, until stopped."""

    url: str
    model: str
    workers: int = 4
    timeout: float = 900  # a request queued at a paused gate waits out a whole engine restart
    retries: int = 0  # connection drops before any response, sent again (send())
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def worker(self, n: int) -> None:
        i = n
        with httpx.Client(base_url=self.url, timeout=self.timeout) as http:
            while not self.stop.is_set():
                out = send(http, self.model, KINDS[i % len(KINDS)], f"session-{n}-{i % 3}", retries=self.retries)
                i += 1
                with self.lock:
                    self.outcomes.append(out)
                if out.final != "ok":
                    time.sleep(0.2)  # no tight loop against a failing path

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(self.workers)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 60)
        assert not any(t.is_alive() for t in self.threads), "a client thread hung"

    def count(self) -> int:
        with self.lock:
            return len(self.outcomes)

    def wait_for(self, n: int, timeout: float = 600) -> None:
        wait_until(lambda: self.count() >= n, timeout, f"{n} answered requests (at {self.count()})", 0.2)
