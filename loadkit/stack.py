"""Bringing up what a load run measures, and taking it all down after: free ports, readiness waits,
containers and pinned host processes (scripts/bench), a compose project of its own (scripts/soak)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(*args: str, check: bool = True, capture: bool = True) -> str:
    out = subprocess.run(args, check=check, capture_output=capture, text=True)
    return out.stdout.strip() if capture else ""


def wait_http(url: str, timeout: float = 120.0) -> None:
    """Until a GET of `url` answers 200; RuntimeError after `timeout` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """One blocking call; the reply as JSON when it is an object or a list, else as text."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(req, timeout=60) as reply:
        raw = reply.read()
    return json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()


class Lab:
    """Containers (host networking, so no Docker proxy sits in a measured path) and host processes,
    each named `<tag>-<name>`, remembered so that `down()` removes every one of them."""

    def __init__(self, tag: str, workdir: Path) -> None:
        self.tag, self.workdir = tag, workdir
        self.containers: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def name(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def container(
        self,
        name: str,
        image: str,
        *command: str,
        options: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        cpus: int | None = None,
    ) -> str:
        full = self.name(name)
        cmd = ["docker", "run", "-d", "--name", full, "--network", "host", *options]
        if cpus is not None:
            cmd += ["--cpuset-cpus", str(cpus)]
        for k, v in (env or {}).items():
            cmd += ["-e", f"{k}={v}"]
        self.containers.append(full)
        sh(*cmd, image, *command)
        return full

    def remove(self, *names: str) -> None:
        for name in names:
            subprocess.run(["docker", "rm", "-f", self.name(name)], capture_output=True)

    def process(self, argv: list[str], cpu: int, log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A host process pinned to one core, its output in `log` under the workdir."""
        fh = open(self.workdir / log, "w")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
            cwd=self.workdir,
        )
        self.procs.append(proc)
        return proc

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.containers:
            subprocess.run(["docker", "rm", "-f", *self.containers], capture_output=True)


class Compose:
    """`docker compose` over a set of files and an env file, for a project a run starts for itself."""

    def __init__(self, root: Path, files: list[str], env_file: Path, who: str) -> None:
        self.root, self.files, self.env_file, self.who = root, files, env_file, who

    def __call__(self, *args: str, capture: bool = True) -> str:
        cmd = ["docker", "compose", *sum((["-f", f] for f in self.files), []), "--env-file", str(self.env_file)]
        done = subprocess.run([*cmd, *args], cwd=self.root, capture_output=capture, text=True)
        if done.returncode:
            # Never the rendered config: only compose's own messages (it prints no environment values).
            raise SystemExit(f"{self.who}: docker compose {' '.join(args)} failed:\n{(done.stderr or '')[-3000:]}")
        return done.stdout or ""

    def up(self, wait_timeout: int = 180) -> None:
        self("up", "-d", "--wait", "--wait-timeout", str(wait_timeout))

    def port(self, service: str, port: int) -> int:
        """The host port compose published for a service's port."""
        return int(self("port", service, str(port)).strip().rsplit(":", 1)[1])

    def down(self) -> None:
        self("down", "-v", "--remove-orphans", "--timeout", "10")
