"""Host-side checks of a modelyard stack, for scripts/up and scripts/doctor (stdlib only, no modelyard import).

Two halves: functions that gather facts (they run docker, read /proc, call the gateway) and pure functions
that turn facts into a Verdict each. The pure half is what tests/unit/test_stackcheck.py exercises.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_ID = "modelyard-gateway"  # what the gateway's /healthz says it is ("service")
PORT_KEY = "gateway.port"  # the env.yaml key that moves the gateway's host port
BACKENDS = ("vllm", "nim", "openai", "azure", "openrouter")
# Where each image is built from: a file there newer than the image means the image is stale.
IMAGE_SOURCES = {
    "gateway": ["images/gateway"],
    "adapter": ["images/adapter", "services/modelyard", "services/pyproject.toml"],
    "vllm-cpu": ["images/vllm-cpu", "images/vllm/entrypoint.py"],
    "vllm": ["images/vllm"],
}
MIN_COMPOSE = (2, 20)  # depends_on `required: false` (compose.yaml) needs Compose 2.20
MIN_DOCKER = (20, 10)

Runner = Callable[[list[str]], tuple[int, str]]


def run(cmd: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run a command: (exit status, stdout + stderr); 127 when it is not there, 124 on a timeout."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except FileNotFoundError:
        return 127, f"{cmd[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, f"{' '.join(cmd[:4])}: no answer in {timeout:.0f} s"
    return out.returncode, out.stdout + out.stderr


@dataclass
class Verdict:
    item: str
    level: str  # "ok", "warn" or "FAIL"
    detail: str
    notes: tuple[str, ...] = ()  # more lines under the verdict (a log excerpt, a hint)

    @property
    def failed(self) -> bool:
        return self.level == "FAIL"

    def render(self) -> str:
        head = f"{self.level:<4}  {self.item:<26} {self.detail}"
        return "\n".join([head, *(f"      | {n}" for n in self.notes)])


def ok(item: str, detail: str, *notes: str) -> Verdict:
    return Verdict(item, "ok", detail, notes)


def warn(item: str, detail: str, *notes: str) -> Verdict:
    return Verdict(item, "warn", detail, notes)


def fail(item: str, detail: str, *notes: str) -> Verdict:
    return Verdict(item, "FAIL", detail, notes)


# -- .env ---------------------------------------------------------------------------------------------
def read_env(path: Path) -> dict[str, str]:
    """The KEY=value lines of a compose .env file (render-env writes them unquoted)."""
    env: dict[str, str] = {}
    if not path.is_file():
        return env
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[key.strip()] = value
    return env


# -- the gateway port ---------------------------------------------------------------------------------
def port_is_free(bind: str, port: int) -> bool:
    """Whether Docker could publish on bind:port now (its proxy binds with SO_REUSEADDR, as this does)."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def listening_inodes(proc_net_tcp: str, port: int) -> set[str]:
    """Socket inodes listening on `port` in a /proc/net/tcp{,6} table."""
    inodes = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """The program listening on `port`: 'name (pid N): command line', from /proc (no ss, lsof needed)."""
    tables = "".join((proc / "net" / t).read_text() for t in ("tcp", "tcp6") if (proc / "net" / t).exists())
    inodes = listening_inodes(tables, port)
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in wanted for fd in (pid_dir / "fd").iterdir()):
                name = (pid_dir / "comm").read_text().strip()
                cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                return f"{name} (pid {pid_dir.name}): {cmd[:120]}"
        except OSError:  # a process that went, or one we may not look into
            continue
    return "a process this user cannot see"


def docker_publisher(port: int, runner: Runner = run) -> tuple[str, str, str] | None:
    """(container, compose project, compose service) of a running container publishing `port`."""
    fmt = '{{.Names}}\t{{.Label "com.docker.compose.project"}}\t{{.Label "com.docker.compose.service"}}'
    rc, out = runner(["docker", "ps", "--filter", f"publish={port}", "--format", fmt])
    for line in out.splitlines() if rc == 0 else []:
        parts = line.split("\t")
        if len(parts) == 3:
            return parts[0], parts[1], parts[2]
    return None


def next_free_port(bind: str, port: int, is_free: Callable[[str, int], bool] = port_is_free) -> int | None:
    return next((p for p in range(port + 1, min(port + 50, 65536)) if is_free(bind, p)), None)


def port_verdict(
    bind: str,
    port: int,
    free: bool,
    holder: str | None,
    container: tuple[str, str, str] | None,
    project: str,
    suggestion: int | None,
) -> Verdict:
    """Whether the gateway can have bind:port: free, or already held by this very stack's gateway."""
    item = "gateway port"
    if container and container[1] == project and container[2] == "gateway":
        return ok(item, f"{bind}:{port} is this stack's gateway ({container[0]}): compose keeps or replaces it")
    if free and not container:
        return ok(item, f"{bind}:{port} is free")
    if container:
        who = f"container {container[0]}" + (f" (compose project {container[1]})" if container[1] else "")
    else:
        who = holder or "another program (not found)"
    example = suggestion or port + 1
    move = f"{PORT_KEY} in env.yaml, e.g. `gateway: {{port: {example}}}`" + (" (free now)" if suggestion else "")
    return fail(item, f"{bind}:{port} is already in use by {who}", f"stop it, or move the gateway: {move}")


def check_port(env: dict[str, str], project: str, runner: Runner = run) -> Verdict:
    bind, port = env.get("GATEWAY_BIND") or "127.0.0.1", int(env.get("GATEWAY_PORT") or 8080)
    free = port_is_free(bind, port)
    container = docker_publisher(port, runner)
    holder = None if free else port_holder(port)
    suggestion = None if free else next_free_port(bind, port)
    return port_verdict(bind, port, free, holder, container, project, suggestion)


# -- compose services ---------------------------------------------------------------------------------
def parse_ps(text: str) -> list[dict]:
    """`docker compose ps --format json`: a JSON array (Compose < 2.21) or one object a line."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def service_verdict(service: str, row: dict | None, error: str = "") -> Verdict:
    """One service: created, running, and healthy where it has a health check."""
    item = f"service {service}"
    if row is None:
        return fail(item, "not created", *([error] if error else []))
    state, health = row.get("State", "?"), row.get("Health") or ""
    if state != "running":
        code = row.get("ExitCode")
        detail = state + (f" (exit status {code})" if code not in (None, "") and state == "exited" else "")
        return fail(item, detail, *([error] if error else []))
    if health == "unhealthy":
        return fail(item, "running, unhealthy")
    if health == "starting":
        return warn(item, "running, health check still starting")
    return ok(item, "running, healthy" if health == "healthy" else "running (no health check)")


def relevant_log_lines(text: str, n: int = 8) -> list[str]:
    """The last `n` log lines that say something went wrong: warnings and errors, JSON or not."""
    picked = []
    for raw in text.splitlines():
        line = re.sub(r"^\S+\s+\|\s?", "", raw).strip()  # compose's "service-1  | " prefix
        if not line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            if doc.get("level") in ("warning", "error", "critical"):
                extra = {k: v for k, v in doc.items() if k not in ("time", "level", "logger", "message", "exc")}
                picked.append(f"{doc['level']}: {doc.get('message')}" + (f" {json.dumps(extra)}" if extra else ""))
            elif isinstance(doc.get("status"), int) and doc["status"] >= 500:  # the gateway's access log
                picked.append(f"{doc.get('method')} {doc.get('uri')} -> {doc['status']}")
        elif re.search(r"\[(error|crit|alert|emerg)\]|error|exception|traceback|refused|unreachable|fail", line, re.I):
            picked.append(line)
    return [p[:240] for p in picked[-n:]]


def last_health_output(health_log_json: str) -> str:
    """The last output of a container's health check (`docker inspect` .State.Health.Log), one line."""
    try:
        entries = json.loads(health_log_json) or []
    except ValueError:
        return ""
    text = entries[-1].get("Output", "") if entries and isinstance(entries[-1], dict) else ""
    return " ".join(text.split())[:240]


# -- backends -----------------------------------------------------------------------------------------
def readiness_verdict(backend: str, status: int | None, body: str) -> Verdict:
    """An adapter's /readyz: ready, or the reason its upstream is not."""
    item = f"backend {backend}"
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if status is None:
        return fail(item, f"readiness unknown: {body.strip()[:200]}")
    detail = doc.get("upstream") if isinstance(doc, dict) else body.strip()[:200]
    if isinstance(detail, dict | list):
        detail = json.dumps(detail)
    if status == 200:
        return ok(item, f"ready: {detail}")
    return fail(item, f"not ready (readyz {status}): {detail}")


READYZ = (
    "import urllib.request as u, urllib.error as e\n"
    "try:\n r = u.urlopen('http://127.0.0.1:8000/readyz', timeout=10); print(r.status); print(r.read().decode())\n"
    "except e.HTTPError as x:\n print(x.code); print(x.read().decode())\n"
)


def fetch_readyz(compose: list[str], service: str, runner: Runner = run) -> tuple[int | None, str]:
    """GET /readyz inside the adapter's container: works with the gateway down, needs no client key."""
    rc, out = runner([*compose, "exec", "-T", service, "python", "-c", READYZ])
    head, _, rest = out.partition("\n")
    if rc == 0 and head.strip().isdigit():
        return int(head), rest
    return None, out


# -- the gateway --------------------------------------------------------------------------------------
def gateway_identity(body: str | None) -> bool:
    try:
        return json.loads(body or "").get("service") == GATEWAY_ID
    except (ValueError, AttributeError):
        return False


def gateway_verdict(bind: str, port: int, health: tuple[int, str] | None, keys: list[str]) -> Verdict:
    """The gateway answers on its port as modelyard's; and whether clients need a key."""
    item = "gateway http"
    where = f"http://{bind}:{port}"
    mode = f"{len(keys)} client key{'s' if len(keys) != 1 else ''}" if keys else "open (no gateway.api_keys)"
    if health is None:
        return fail(item, f"nothing answers on {where}")
    status, body = health
    if status != 200 or not gateway_identity(body):
        return fail(item, f"{where}/healthz is not modelyard's gateway (HTTP {status}: {body.strip()[:80]!r})",
                    f"another program holds the port? move the gateway: {PORT_KEY} in env.yaml")  # fmt: skip
    if not keys and bind not in ("127.0.0.1", "localhost", "::1"):
        return warn(item, f"{where} answers; {mode}, yet published on {bind}: anyone who reaches it may use it")
    return ok(item, f"{where} answers as {GATEWAY_ID}; {mode}")


def http_get(url: str, key: str | None = None, timeout: float = 10) -> tuple[int, str] | None:
    """(status, body) of a GET, or None when nothing answers."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, ValueError):
        return None


def model_verdict(profile: str, models: tuple[int, str] | None) -> Verdict:
    """The policy backend's model and, for vLLM engines, its max length (what /v1/models says)."""
    item = "model"
    if models is None:
        return fail(item, "GET /v1/models: no answer from the gateway")
    status, body = models
    try:
        data = json.loads(body)["data"]
    except (ValueError, KeyError, TypeError):
        return fail(item, f"GET /v1/models: HTTP {status}: {body.strip()[:160]}")
    if status != 200 or not data:
        return fail(item, f"GET /v1/models: HTTP {status}, {len(data or [])} models")
    first = data[0]
    max_len = first.get("max_model_len")
    if max_len:
        return ok(item, f"{first.get('id')}, max length {max_len} tokens")
    more = f" (+{len(data) - 1} more)" if len(data) > 1 else ""
    if profile in ("cpu", "vllm"):
        return warn(item, f"{first.get('id')}{more}; the engine did not say its max length")
    return ok(item, f"{first.get('id')}{more}; max length: the provider's")


# -- versions, images, disk ---------------------------------------------------------------------------
def version_tuple(text: str) -> tuple[int, ...]:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


def versions_verdict(docker: str | None, compose: str | None) -> Verdict:
    item = "docker"
    if not docker:
        return fail(item, "no Docker engine answers (scripts/setup-docker starts one)")
    if not compose:
        return fail(item, f"Docker {docker}, but no Compose v2 plugin (scripts/setup-docker installs it)")
    detail = f"Docker {docker}, Compose {compose}"
    if version_tuple(compose) < MIN_COMPOSE:
        return fail(item, f"{detail}: compose.yaml needs Compose {'.'.join(map(str, MIN_COMPOSE))} or newer")
    if version_tuple(docker) < MIN_DOCKER:
        return warn(item, f"{detail}: older than the Docker {'.'.join(map(str, MIN_DOCKER))} this is tested on")
    return ok(item, detail)


def parse_time(text: str) -> datetime | None:
    """Docker's RFC 3339 times (nanoseconds, Z or an offset) as aware datetimes."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", text.strip())
    if not m:
        return None
    zone = "+00:00" if m.group(3) in (None, "Z") else m.group(3)
    return datetime.fromisoformat(m.group(1) + zone)


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def newest_source(paths: Iterable[str], root: Path = ROOT) -> tuple[float, str] | None:
    """(mtime, path) of the newest file under the given paths, caches and build leftovers aside."""
    best: tuple[float, str] | None = None
    for rel in paths:
        base = root / rel
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()] if base.is_dir() else []
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc" or any(p.endswith(".egg-info") for p in f.parts):
                continue
            mtime = f.stat().st_mtime
            if best is None or mtime > best[0]:
                best = (mtime, str(f.relative_to(root)))
    return best


def image_verdict(
    image: str, created: datetime | None, source: tuple[float, str] | None, now: datetime, running_other: bool
) -> Verdict:
    """An image's tag and age, against the newest file it is built from."""
    item = f"image {image.split('/')[-1].split(':')[0]}"
    if created is None:
        return fail(item, f"{image} is not there (scripts/build-images)")
    detail = f"{image}, built {ago((now - created).total_seconds())} ago"
    if running_other:
        return warn(item, f"{detail}; a container still runs an older image (docker compose up -d replaces it)")
    if source and source[0] > created.timestamp():
        late = ago(source[0] - created.timestamp())
        return warn(item, f"{detail}; {source[1]} changed {late} after the build (scripts/build-images)")
    return ok(item, f"{detail}, not older than its source")


def disk_verdict(where: str, free: int | None, total: int | None) -> Verdict:
    item = "disk"
    if free is None or total is None:
        return warn(item, f"cannot see the free space of {where}")
    gib = free / 2**30
    detail = f"{gib:.1f} GiB free of {total / 2**30:.0f} GiB at {where} (images, volumes)"
    if gib < 2:
        return fail(item, f"{detail}: too little for the engine's caches and logs")
    if gib < 10:
        return warn(item, f"{detail}: a GPU model download may not fit")
    return ok(item, detail)


def disk_usage(path: str) -> tuple[int | None, int | None]:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None, None
    return usage.free, usage.total


def now_utc() -> datetime:
    return datetime.now(UTC)
