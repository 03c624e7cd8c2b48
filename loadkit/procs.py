"""CPU seconds and resident memory of process trees, read from /proc (Linux): what a path under test
costs, containers included (a container's processes are host processes too)."""

from __future__ import annotations

import os

CLK = os.sysconf("SC_CLK_TCK")


def tree(roots: list[int]) -> list[int]:
    """The roots and every descendant of theirs."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total / CLK


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def loadavg() -> list[float]:
    with open("/proc/loadavg") as fh:
        return [float(x) for x in fh.read().split()[:3]]


def cpu_times() -> list[int]:
    """The machine's CPU time so far (/proc/stat, all cores): user, nice, system, idle, iowait, irq,
    softirq, steal, in clock ticks."""
    with open("/proc/stat") as fh:
        return [int(x) for x in fh.readline().split()[1:9]]


def steal_share(before: list[int], after: list[int]) -> float:
    """The share of the machine's CPU time between two `cpu_times()` that the hypervisor gave to other
    guests (steal): a virtual machine's noise no load average shows."""
    d = [b - a for a, b in zip(before, after, strict=True)]
    return round(d[7] / max(1, sum(d)), 3)
