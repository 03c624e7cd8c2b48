"""A multi-node Docker Swarm on one machine (docs/swarm.md): `python -m tests.integration.swarm_lab`.

Three Docker daemons, each in its own network namespace (swlab-n1 the manager, swlab-n2 and swlab-n3
workers), linked by veth pairs to a bridge inside a fourth namespace (swlab-hub, 198.18.77.1/24). No
address outside those namespaces is used: the nodes are 198.18.77.11-13, the load runs from swlab-hub.
The daemons share the host's containerd (each with its own containerd namespace) and file system; each
has its own data root, exec root, socket and iptables (those of its namespace). `nsenter --net`, not
`ip netns exec`: the latter remounts /sys, which hides the cgroup file systems dockerd needs.

The stack is `scripts/swarm-config` (compose.yaml + compose.swarm.yaml, flattened for `docker stack
deploy`) plus tests/integration/compose.swarm-lab.yaml (light engine stand-ins, short timeouts). Then
load runs through the gateway, one worker's link is cut, later restored, and the figures are printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HUB = "swlab-hub"
NODES = ("swlab-n1", "swlab-n2", "swlab-n3")
NET = "198.18.77"  # RFC 2544 benchmarking range, only ever inside these namespaces
STATE = Path("/var/lib/swarmlab")
RUN = Path("/run/swarmlab")
TAG = os.environ.get("MODELYARD_TAG", "swarm")
STACK = "modelyard"


def sh(*cmd: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, timeout=timeout, text=True, capture_output=True, **kw)


def ip(i: int) -> str:
    return f"{NET}.{11 + i}"


def sock(i: int) -> str:
    return f"unix://{RUN}/n{i + 1}.sock"


def docker(i: int, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return sh("docker", "-H", sock(i), *args, **kw)


def log(msg: str) -> None:
    print(f"[swarm-lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def why_not() -> str | None:
    """A reason the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, extra dockerd instances)"
    for tool in ("ip", "nsenter", "dockerd", "docker"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    for image in (f"modelyard/adapter:{TAG}", f"modelyard/gateway:{TAG}"):
        if sh("docker", "image", "inspect", image, check=False).returncode:
            return f"image {image} missing (MODELYARD_TAG={TAG} scripts/build-images adapter gateway)"
    probe = sh("ip", "netns", "add", "swlab-probe", check=False)
    if probe.returncode:
        return f"ip netns add failed: {probe.stderr.strip()}"
    sh("ip", "netns", "del", "swlab-probe", check=False)
    return None


# ---------------------------------------------------------------- network


def net_up() -> None:
    sh("ip", "netns", "add", HUB)
    sh("ip", "-n", HUB, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", HUB, "addr", "add", f"{NET}.1/24", "dev", "br0")
    sh("ip", "-n", HUB, "link", "set", "br0", "up")
    sh("ip", "-n", HUB, "link", "set", "lo", "up")
    for i, ns in enumerate(NODES):
        sh("ip", "netns", "add", ns)
        # Both ends are made in the hub, then one moves into the node's namespace.
        sh("ip", "-n", HUB, "link", "add", f"n{i + 1}-br", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", HUB, "link", "set", f"n{i + 1}-br", "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip(i)}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # No default route: nothing from a node can leave 198.18.77.0/24.


def link(i: int, up: bool) -> None:
    """Cut (or restore) node i's only link: its packets go nowhere, nothing is refused."""
    sh("ip", "-n", HUB, "link", "set", f"n{i + 1}-br", "up" if up else "down")


def net_down() -> None:
    for ns in (*NODES, HUB):
        sh("ip", "netns", "del", ns, check=False)


# ---------------------------------------------------------------- daemons


DAEMONS: dict[int, subprocess.Popen[bytes]] = {}


def dockerd_up(i: int) -> None:
    n = f"n{i + 1}"
    for d in (STATE / n, RUN / n):
        d.mkdir(parents=True, exist_ok=True)
    out = open(RUN / f"{n}.log", "w")  # noqa: SIM115 - the daemon keeps it
    DAEMONS[i] = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{NODES[i]}", "dockerd",
         f"--data-root={STATE / n}", f"--exec-root={RUN / n}", f"--pidfile={RUN / n}.pid",
         f"-H={sock(i)}", f"--containerd-namespace=swlab-{n}", f"--containerd-plugins-namespace=swlab-{n}-p",
         "--bip=172.31.250.1/24", f"--dns={NET}.1", "--storage-driver=overlay2", "--log-level=warn"],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while docker(i, "info", "--format", "{{.ID}}", check=False, timeout=10).returncode:
        if time.monotonic() > deadline:
            raise RuntimeError(f"dockerd {n} did not start: {(RUN / f'{n}.log').read_text()[-2000:]}")
        time.sleep(0.5)


def dockerd_down(i: int) -> None:
    proc = DAEMONS.pop(i, None)
    if proc is not None:  # ours: wait for it (and reap it)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return
    pidfile = RUN / f"n{i + 1}.pid"  # one left by an earlier run
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(pidfile.read_text())
        os.kill(pid, 15)
        for _ in range(60):
            os.kill(pid, 0)
            time.sleep(0.5)
        os.kill(pid, 9)


def swarm_up() -> None:
    docker(0, "swarm", "init", "--advertise-addr", ip(0), "--listen-addr", f"{ip(0)}:2377")
    token = docker(0, "swarm", "join-token", "-q", "worker").stdout.strip()
    for i in (1, 2):
        docker(i, "swarm", "join", "--token", token, "--advertise-addr", ip(i), f"{ip(0)}:2377")
        docker(0, "node", "update", "--label-add", "modelyard.engine=true", node_id(i))


def node_id(i: int) -> str:
    return docker(i, "info", "--format", "{{.Swarm.NodeID}}").stdout.strip()


def load_images() -> None:
    """`docker save` once, `docker load` into each daemon: the manager gets both images, workers the adapter's
    (the engine stand-in runs in it)."""
    tar = STATE / "images.tar"
    sh("docker", "save", "-o", str(tar), f"modelyard/adapter:{TAG}", f"modelyard/gateway:{TAG}", timeout=300)
    for i in range(len(NODES)):
        with open(tar, "rb") as f:
            sh("docker", "-H", sock(i), "load", "-q", stdin=f, timeout=300)
    tar.unlink()


# ---------------------------------------------------------------- the stack


def stack_file() -> Path:
    env = {**os.environ, "MODELYARD_TAG": TAG, "COMPOSE_PROFILES": "cpu"}
    path = STATE / "stack.yaml"
    lab_file = str(ROOT / "tests/integration/compose.swarm-lab.yaml")
    sh(str(ROOT / "scripts/swarm-config"), "-f", lab_file, "-o", str(path), env=env)
    return path


def deploy(timeout: float = 180) -> None:
    path = stack_file()
    args = ("stack", "deploy", "--resolve-image", "never", "-c", str(path), STACK)
    for _ in range(10):  # a network of a stack just removed may still be going
        if docker(0, *args, check=False).returncode == 0:
            break
        time.sleep(2)
    deadline = time.monotonic() + timeout
    while True:
        states = services()
        counts = [s["Replicas"].split()[0].split("/") for s in states]  # "2/2 (max 1 per node)"
        if counts and all(a == b for a, b in counts):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"stack not up: {states}")
        time.sleep(2)


def services() -> list[dict[str, str]]:
    out = docker(0, "service", "ls", "--format", "{{json .}}").stdout
    return [json.loads(line) for line in out.splitlines()]


def engine_nodes() -> dict[str, str]:
    """Running engine tasks: node host name -> task id."""
    out = docker(0, "service", "ps", f"{STACK}_vllm-cpu", "--filter", "desired-state=running",
                 "--format", "{{.Node}} {{.ID}} {{.CurrentState}}").stdout  # fmt: skip
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if "Running" in line}


@contextlib.contextmanager
def lab() -> Iterator[None]:
    """Everything up; everything down afterwards, whatever happened."""
    teardown()
    try:
        t0 = time.monotonic()
        # The data roots on a tmpfs: loading the images is quicker, and removing them is one umount
        # (an rm -rf of three daemons' layers takes minutes on this disk).
        STATE.mkdir(parents=True, exist_ok=True)
        sh("mount", "-t", "tmpfs", "-o", "size=6g", "swarmlab", str(STATE))
        net_up()
        for i in range(len(NODES)):
            dockerd_up(i)
        log(f"3 daemons up in {time.monotonic() - t0:.1f} s")
        swarm_up()
        t1 = time.monotonic()
        load_images()
        log(f"images loaded into 3 daemons in {time.monotonic() - t1:.1f} s")
        yield
    finally:
        teardown()


def teardown() -> None:
    for i in range(len(NODES)):
        if (RUN / f"n{i + 1}.sock").exists():
            docker(i, "swarm", "leave", "--force", check=False, timeout=30)
            for c in docker(i, "ps", "-aq", check=False, timeout=30).stdout.split():
                docker(i, "rm", "-f", c, check=False, timeout=30)
        dockerd_down(i)
    net_down()
    # The daemons' own mounts (overlay network namespaces under the exec roots), then the data roots.
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for m in reversed(mounts):
        if m.startswith((f"{RUN}/", f"{STATE}/")):
            sh("umount", "-l", m, check=False)
    sh("umount", "-l", str(STATE), check=False)
    for d in (STATE, RUN):
        if d.exists():
            sh("rm", "-rf", str(d), check=False)


def hub(*cmd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command in the hub namespace (where the load comes from)."""
    return sh("nsenter", f"--net=/run/netns/{HUB}", *cmd, timeout=timeout)


def task_ip(i: int) -> str:
    """The overlay address of the engine task running on node i."""
    for c in docker(i, "ps", "-q", "--filter", f"name={STACK}_vllm-cpu").stdout.split():
        nets = json.loads(docker(i, "inspect", "--format", "{{json .NetworkSettings.Networks}}", c).stdout)
        for name, n in nets.items():
            if name.endswith("_default"):
                return n["IPAddress"]
    raise RuntimeError(f"no engine task on node {i + 1}")


def wait_ready(want: int, timeout: float = 90) -> None:
    """Until the adapter, through the gateway, reports `want` replicas up."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        r = sh("nsenter", f"--net=/run/netns/{HUB}", "curl", "-s", "-m", "3", f"http://{ip(0)}:8080/vllm/readyz",
               check=False)  # fmt: skip
        text = r.stdout
        if f"{want}/{want} replicas up" in text:
            return
        time.sleep(1)
    raise RuntimeError(f"adapter not ready with {want} replicas: {text[:500]}")


def node_loss(before: float = 15, cut_for: float = 25, after: float = 25) -> dict:
    """Load through the gateway; node 3's link cut `before` s in, restored `cut_for` s later."""
    lost = task_ip(2)
    total = before + cut_for + after
    load = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{HUB}", sys.executable, str(Path(__file__).with_name("swarm_load.py")),
         f"http://{ip(0)}:8080", str(total)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(before)
    t_cut = time.time()
    link(2, False)
    log(f"node 3 ({ip(2)}, engine {lost}) cut off")
    time.sleep(cut_for)
    t_back = time.time()
    link(2, True)
    log("node 3 link restored")
    out, _ = load.communicate(timeout=total + 60)
    result = figures(json.loads(out), lost, t_cut, t_back)
    if result["back_in_rotation_s"] is None:  # not back while the load ran: wait for two replicas up
        with contextlib.suppress(RuntimeError):
            wait_ready(2, timeout=60)
            result["back_in_rotation_s"] = round(time.time() - t_back, 1)
    engines = engine_ips()
    # Swarm declared node 3 down and started a replacement task (a new address) when it came back, or
    # the same task carried on.
    result["engine_replaced"] = lost not in engines
    result["engines_after"] = engines
    return result


def engine_ips() -> list[str]:
    r = sh("nsenter", f"--net=/run/netns/{HUB}", "curl", "-s", "-m", "3", f"http://{ip(0)}:8080/vllm/readyz",
           check=False)  # fmt: skip
    text = json.loads(r.stdout or "{}").get("upstream", "")
    return [part.split()[1].split(":")[0] for part in text.split(": ", 1)[-1].split("; ") if " up " in part]


def _out_at(ready: list[dict], host: str, since: float, out: bool) -> float | None:
    """First /readyz reading after `since` in which `host` is out (or gone), or back up."""
    for r in ready:
        if r["t"] < since:
            continue
        up = f"{host}:8000: up" in r["text"]
        if out != up:
            return round(r["t"] - since, 2)
    return None


def _back_at(ready: list[dict], since: float) -> float | None:
    """First /readyz reading after `since` with both replicas up (the same task, or its replacement)."""
    for r in ready:
        if r["t"] >= since and "2/2 replicas up" in r["text"]:
            return round(r["t"] - since, 2)
    return None


def figures(data: dict, lost: str, t_cut: float, t_back: float) -> dict:
    reqs, ready = data["requests"], data["ready"]
    first = next(r["text"] for r in ready if "replicas up" in r["text"])
    # Replica index -> host, from a /readyz reading taken before the cut: "0 10.0.2.5:8000: up (...)".
    lost_index = next(part.split()[0] for part in first.split(": ", 1)[1].split("; ") if lost in part)
    home = {}  # each session's replica before the cut
    for r in sorted(reqs, key=lambda r: r["t"]):
        if r["t"] < t_cut and r["status"] == 200:
            home[r["session"]] = r["replica"]
    # During the cut: every request still open at the cut (in flight there) or started before the link came back.
    during = [r for r in reqs if r["t"] + r["s"] >= t_cut and r["t"] < t_back]
    stayed = [r for r in during if home.get(r["session"]) != lost_index]
    moved = [r for r in during if home.get(r["session"]) == lost_index]
    bad = lambda rs: sum(1 for r in rs if r["status"] != 200)  # noqa: E731
    after = [r for r in reqs if r["t"] >= t_back]
    return {
        "requests": len(reqs),
        "before": sum(1 for r in reqs if r["t"] + r["s"] < t_cut),
        "during": len(during), "after": len(after),
        "failed_total": bad(reqs),
        "during_stayed": len(stayed), "failed_stayed": bad(stayed),
        "during_moved": len(moved), "failed_moved": bad(moved),
        "failed_after": bad(after),
        "max_latency_s": max((r["s"] for r in reqs), default=0.0),
        "max_latency_stayed_s": max((r["s"] for r in stayed), default=0.0),
        "out_of_rotation_s": _out_at(ready, lost, t_cut, out=True),
        "back_in_rotation_s": _back_at(ready, t_back),
        "lost_replica": f"{lost_index} {lost}",
        "sessions": {"on_lost": sum(1 for v in home.values() if v == lost_index), "total": len(home)},
        "errors": sorted({f"{r['status']} {r['error']}" for r in reqs if r["status"] != 200}),
    }  # fmt: skip


def main() -> int:
    reason = why_not()
    if reason:
        log(f"cannot run: {reason}")
        return 2
    t0 = time.monotonic()
    with lab():
        t1 = time.monotonic()
        deploy()
        wait_ready(2)
        log(f"stack deployed and 2 engine replicas up in {time.monotonic() - t1:.1f} s")
        result = node_loss()
        result["lab_s"] = round(time.monotonic() - t0, 1)
    result["total_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
