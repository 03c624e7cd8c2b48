"""scripts/bench's bring-up: the upstream stand-in, nginx alone, gateway + adapter, LiteLLM, Portkey's
gateway (and an older adapter image when asked), each path pinned to the server core, checked to answer
right before anything is timed, and all of it taken down after."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from loadkit import procs
from loadkit.stack import Lab, free_port, sh, wait_http

ROOT = Path(__file__).resolve().parents[2]
LOAD_CPU, SERVER_CPU = 0, 1  # load generator + upstream stand-in on core 0, the path under test on core 1
CHAT = b'{"model":"bench-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
RESP = b'{"model":"bench-model","input":"Say hello.","max_output_tokens":16}'
STREAM_CHUNKS, STREAM_CADENCE_MS = 20, 10.0
# 10,000 open streams are 20,000 sockets in a proxy (client side and upstream side), and a little more in
# the adapter: as many descriptors as this machine allows (Docker cannot raise a limit past its own).
NOFILE = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
SERVER_OPTS = ("--no-healthcheck", "--ulimit", f"nofile={NOFILE}:{NOFILE}")
PORTKEY_JS = "node_modules/@portkey-ai/gateway/build/start-server.js"
PORTKEY_VERSION = "1.15.2"  # pinned: the figures name it


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Part:
    """One server process tree (a container or a host process) and how to find it."""

    name: str
    container: str = ""
    pid: int = 0

    def pids(self) -> list[int]:
        root = self.pid or int(sh("docker", "inspect", "-f", "{{.State.Pid}}", self.container))
        return procs.tree([root])


@dataclass
class Target:
    """One path under test: where to send, what, and which processes pay for it."""

    key: str
    label: str
    port: int
    path: str
    body: bytes
    parts: list[Part] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (Portkey's routing)

    @property
    def stream_body(self) -> bytes:
        return self.body[:-1] + b',"stream":true}'

    @property
    def hold_body(self) -> bytes:
        return self.stream_body.replace(b'"bench-model"', b'"bench-hold"')

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


@dataclass
class Images:
    adapter: str = "modelyard/adapter:latest"
    gateway: str = "modelyard/gateway:latest"
    vllm: str = "modelyard/vllm-cpu:latest"
    before: str = ""  # an older adapter image, measured alone next to the current one
    postgres: str = "modelyard/postgres:latest"  # the store-on-PostgreSQL cost phase


class BenchLab(Lab):
    def __init__(self, images: Images, venv: Path, workdir: Path | None = None, portkey: Path | None = None) -> None:
        super().__init__(f"bench-{os.getpid()}", workdir or Path(tempfile.mkdtemp(prefix="modelyard-bench-")))
        self.images, self.venv = images, venv
        self.portkey_dir = portkey or ROOT / "build" / "portkey"
        self.paths: dict[str, Target] = {}
        self.engine_port = 0  # the vLLM engine's, once started
        self.upstream = ""  # the stand-in's base URL
        self.adapter_env: dict[str, str] = {}
        self.skipped: dict[str, str] = {}  # what could not be measured here, and why (a path, or "<path> streams")

    def up(self) -> None:
        ports = {k: free_port() for k in ("standin", "nginx", "gateway", "adapter", "before", "litellm", "portkey")}
        say("starting the upstream stand-in, nginx, gateway + adapter, LiteLLM, Portkey")
        standin = self.process(
            [sys.executable, "-m", "loadkit.standin", "--listen",
             f"127.0.0.1:{ports['standin']}:{STREAM_CHUNKS}:{STREAM_CADENCE_MS}", "--hold", "600:1000"],
            LOAD_CPU,
            "standin.log",
            env={"PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        upstream = self.upstream = f"http://127.0.0.1:{ports['standin']}"

        # nginx alone: a pure keep-alive proxy hop, no access log.
        conf = self.workdir / "nginx-alone.conf"
        conf.write_text(NGINX_ALONE.replace("@PORT@", str(ports["nginx"])).replace("@UP@", str(ports["standin"])))
        self.container("nginx", self.images.gateway, "-c", "/etc/bench/nginx.conf", "-g", "daemon off;",
                       options=(*SERVER_OPTS, "-v", f"{conf}:/etc/bench/nginx.conf:ro", "--entrypoint", "nginx"),
                       cpus=SERVER_CPU)  # fmt: skip

        adapter_env = {
            "MODELYARD_UPSTREAM_URL": f"{upstream}/v1",
            "MODELYARD_HOST": "127.0.0.1",
            "MODELYARD_LOG_LEVEL": "warning",
            # 10,000 open streams need 10,000 upstream slots (the default is 1,000 + a queue of 4,000).
            "MODELYARD_MAX_CONCURRENCY": "12000",
            "MODELYARD_MAX_CONNECTIONS": "12000",
        }
        self.adapter_env = adapter_env
        self.adapter("adapter", self.images.adapter, ports["adapter"], adapter_env)
        if self.images.before:
            self.adapter("before", self.images.before, ports["before"], adapter_env)
        self.gateway("gateway", ports["gateway"], ports["adapter"])

        # LiteLLM: one worker, no database, no callbacks; /v1/responses bridged to the stand-in's chat.
        llm_conf = self.workdir / "litellm.yaml"
        llm_conf.write_text(LITELLM_CONF.replace("@UP@", upstream))
        litellm = self.process(
            [str(self.venv / "bin" / "litellm"), "--config", str(llm_conf), "--host", "127.0.0.1",
             "--port", str(ports["litellm"]), "--num_workers", "1"],
            SERVER_CPU,
            "litellm.log",
            env=LITELLM_ENV,
        )  # fmt: skip

        portkey = self.start_portkey(ports["portkey"])

        wait_http(f"{upstream}/health")
        wait_http(f"http://127.0.0.1:{ports['nginx']}/health")
        wait_http(f"http://127.0.0.1:{ports['adapter']}/readyz")
        wait_http(f"http://127.0.0.1:{ports['gateway']}/healthz")
        wait_http(f"http://127.0.0.1:{ports['litellm']}/health/liveliness", timeout=180)
        if self.images.before:
            wait_http(f"http://127.0.0.1:{ports['before']}/readyz")
        if portkey is not None:
            wait_http(f"http://127.0.0.1:{ports['portkey']}/", timeout=60)

        gw, ad = Part("gateway", self.name("gateway")), Part("adapter", self.name("adapter"))
        chat, resp = "/v1/chat/completions", "/v1/responses"
        lite = Part("litellm", pid=litellm.pid)
        targets = [
            Target("direct", "direct", ports["standin"], chat, CHAT, [Part("standin", pid=standin.pid)]),
            Target("nginx", "nginx alone", ports["nginx"], chat, CHAT, [Part("nginx", self.name("nginx"))]),
            Target("modelyard", "modelyard (gateway + adapter)", ports["gateway"], resp, RESP, [gw, ad]),
            Target("litellm", "LiteLLM proxy", ports["litellm"], resp, RESP, [lite]),
            Target("adapter", "adapter alone", ports["adapter"], resp, RESP, [ad]),
            # Chat passthrough, the one path every peer serves (Portkey does not bridge Responses to chat).
            Target("modelyard_chat", "modelyard, chat", ports["gateway"], chat, CHAT, [gw, ad]),
            Target("litellm_chat", "LiteLLM, chat", ports["litellm"], chat, CHAT, [lite]),
        ]
        if portkey is not None:
            head = {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{upstream}/v1",
                    "authorization": "Bearer none"}  # fmt: skip
            pk = [Part("portkey", pid=portkey.pid)]
            targets.append(Target("portkey", "Portkey gateway, chat", ports["portkey"], chat, CHAT, pk, head))
        if self.images.before:
            before = Part("adapter", self.name("before"))
            targets.append(Target("before", "adapter alone, before", ports["before"], resp, RESP, [before]))
        self.paths = {t.key: t for t in targets}
        self.check()

    def check(self) -> None:
        """Everyone answers, and answers right, before anything is timed; a path whose streams fail is
        noted (and left out of the streaming phases) rather than failing the run."""
        for p in self.paths.values():
            assert "Hello from the bench stand-in." in json.dumps(ask(p, p.body)), p.key
        if "portkey" in self.paths:
            p = self.paths["portkey"]
            try:
                reply = ask(p, p.stream_body, raw=True)
                if b"t1@" not in reply:
                    raise ValueError(reply[:200])
            except (OSError, ValueError) as exc:
                log = (self.workdir / "portkey.log").read_text(errors="replace")
                why = next((ln.strip() for ln in log.splitlines() if "error" in ln.lower()), str(exc))
                self.skipped["portkey streams"] = (
                    f"a streamed chat completion through Portkey {PORTKEY_VERSION} on Node "
                    f"{sh('node', '--version', check=False)} fails ({why[:160]}; Portkey-AI/gateway issues "
                    "#1389 and #1550: its response headers are a fetch Response's, immutable)"
                )
                say(f"Portkey: streaming left out: {self.skipped['portkey streams']}")

    def start_portkey(self, port: int) -> subprocess.Popen | None:
        """Portkey's open-source gateway (npm, under build/portkey), pinned like LiteLLM; None (and why, in
        `skipped`) when it is not installed or Node is missing."""
        js = self.portkey_dir / PORTKEY_JS
        why = portkey_missing(self.portkey_dir)
        if why:
            self.skipped["portkey"] = why
            say(f"Portkey: left out: {why}")
            return None
        return self.process([shutil.which("node") or "node", str(js), f"--port={port}", "--headless"],
                            SERVER_CPU, "portkey.log", env={"NODE_ENV": "production"})  # fmt: skip

    def adapter(self, name: str, image: str, port: int, env: dict[str, str], pin: bool = True) -> None:
        opts = SERVER_OPTS if pin else ("--no-healthcheck",)
        self.container(name, image, "vllm", options=opts, env={**env, "MODELYARD_PORT": str(port)},
                       cpus=SERVER_CPU if pin else None)  # fmt: skip

    def gateway(self, name: str, port: int, adapter_port: int, pin: bool = True) -> None:
        """The gateway image as shipped, its own entrypoint rendering its own config, with host networking:
        it listens on `port` on loopback (the one edit to its template), and `adapter-vllm` is 127.0.0.1 in
        its /etc/hosts, at `adapter_port` (GATEWAY_ADAPTER_PORT), so the entrypoint gives it the same
        keep-alive group as under compose. Everything else, the access log included, is as shipped.
        """
        image = self.images.gateway
        text = sh("docker", "run", "--rm", "--entrypoint", "cat", image, "/etc/modelyard/nginx.conf.template")
        text = text.replace("listen 8080", f"listen 127.0.0.1:{port}")
        # Its stub_status server, on host networking too: a port of its own, or a second gateway (the
        # engine phase's) cannot bind and never starts.
        text = text.replace("listen 8081;", f"listen 127.0.0.1:{free_port()};")
        conf = self.workdir / f"{name}.conf"
        conf.write_text(text)
        mount = f"{conf}:/etc/modelyard/nginx.conf.template:ro"
        opts = ("--add-host", "adapter-vllm:127.0.0.1", *SERVER_OPTS, "-v", mount)
        self.container(name, image, options=opts, env={"GATEWAY_ADAPTER_PORT": str(adapter_port)},
                       cpus=SERVER_CPU if pin else None)  # fmt: skip

    def versions(self) -> dict[str, str]:
        def image_py(image: str, code: str) -> str:
            return sh("docker", "run", "--rm", "--entrypoint", "python", image, "-c", code, check=False)

        code = "import importlib.metadata as m;print(' '.join(f'{p} {m.version(p)}' for p in ('uvicorn','fastapi','httpx','orjson','uvloop','httptools')))"  # noqa: E501
        llm = sh(str(self.venv / "bin" / "python"), "-c", "import importlib.metadata as m;print(m.version('litellm'))")
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        nginx = ["docker", "run", "--rm", "--entrypoint", "nginx", self.images.gateway, "-v"]
        return {
            "machine": f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB",
            "nofile": str(NOFILE),
            "kernel": platform.release(),
            "docker": sh("docker", "version", "-f", "{{.Server.Version}}", check=False),
            "nginx": subprocess.run(nginx, capture_output=True, text=True).stderr.strip(),
            "adapter": image_py(self.images.adapter, code),
            "adapter_image": self.images.adapter,
            "before_image": self.images.before,
            "litellm": llm,
            "portkey": "" if self.skipped.get("portkey") else PORTKEY_VERSION,
            "node": sh("node", "--version", check=False) if shutil.which("node") else "",
            "wrk": (subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines() or ["?"])[0],
            "python": platform.python_version(),
            "commit": sh("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD", check=False),
        }


def ask(p: Target, body: bytes, raw: bool = False) -> object:
    """One blocking request to a path: its JSON reply (or the raw bytes, for a stream)."""
    headers = {"content-type": "application/json", **p.headers}
    with urllib.request.urlopen(urllib.request.Request(p.url(), data=body, headers=headers), timeout=30) as resp:
        data = resp.read()
    return data if raw else json.loads(data)


def setup(venv: Path, portkey: Path) -> None:
    """The LiteLLM proxy and matplotlib in a venv of their own (not the project's), and Portkey's gateway
    from npm under `portkey` (skipped, with the reason, where Node or npm is missing or fails)."""
    if not (venv / "bin" / "litellm").exists():
        say(f"creating {venv} with litellm[proxy] and matplotlib (a few minutes)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([f"{venv}/bin/pip", "install", "-q", "litellm[proxy]", "matplotlib"], check=True)
    if (portkey / PORTKEY_JS).exists() or not shutil.which("npm"):
        return
    say(f"installing @portkey-ai/gateway@{PORTKEY_VERSION} under {portkey} (npm)")
    portkey.mkdir(parents=True, exist_ok=True)
    (portkey / "package.json").write_text('{"private": true}\n')
    env = dict(os.environ)
    ca = "/etc/ssl/certs/ca-certificates.crt"  # the host's bundle: npm may sit behind a TLS-intercepting proxy
    if os.path.exists(ca):
        env.setdefault("NODE_EXTRA_CA_CERTS", ca)
        env.setdefault("npm_config_cafile", ca)
    cmd = ["npm", "install", "--no-audit", "--no-fund", f"@portkey-ai/gateway@{PORTKEY_VERSION}"]
    done = subprocess.run(cmd, cwd=portkey, env=env, capture_output=True, text=True)
    if done.returncode:
        say(f"Portkey not installed (the run will leave it out): {done.stderr.strip()[-300:]}")


def portkey_missing(portkey: Path) -> str:
    """Why Portkey cannot run here, or "" when it can."""
    if not shutil.which("node"):
        return "Node.js is not installed (Portkey's gateway is a Node program)"
    if not (portkey / PORTKEY_JS).exists():
        return f"@portkey-ai/gateway is not installed under {portkey} (scripts/bench --setup)"
    return ""


NGINX_ALONE = """
worker_processes 1;
pid /tmp/nginx-bench.pid;
error_log /dev/stderr warn;
events { worker_connections 32768; }
http {
    access_log off;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    keepalive_requests 100000;
    upstream standin { server 127.0.0.1:@UP@; keepalive 256; keepalive_requests 100000; }
    server {
        listen 127.0.0.1:@PORT@ reuseport backlog=4096;
        location / {
            proxy_pass http://standin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 3600s;
        }
    }
}
"""

LITELLM_CONF = """
model_list:
  - model_name: bench-model
    litellm_params: {model: custom_openai/bench-model, api_base: "@UP@/v1", api_key: none}
  - model_name: bench-hold
    litellm_params: {model: custom_openai/bench-hold, api_base: "@UP@/v1", api_key: none}
litellm_settings:
  drop_params: true
  telemetry: false
"""
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the cost map at start (no network here)
    "LITELLM_LOG": "ERROR",
    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",  # no master key, no database
}
