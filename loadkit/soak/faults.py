"""What the fault-injecting engine (tests/standins/faults.py) is scripted to do, attempt by attempt."""

from __future__ import annotations

import collections
import random
from typing import Any

# Faults per upstream attempt (the rest are answered normally). A retried attempt draws again.
FAULTS: list[tuple[float, dict[str, Any]]] = [
    (0.010, {"status": 429, "headers": {"Retry-After": "1"}}),
    (0.015, {"status": 503}),
    (0.010, {"status": 500}),
    (0.005, {"reset": True}),
    (0.003, {"truncate": True}),  # a 200 whose JSON is cut short (non-streamed requests)
    (0.007, {"drop_after": 2}),  # a stream dropped mid-body (streamed requests; nothing for others)
]


def fault_script(attempts: int, rng: random.Random) -> tuple[list[dict[str, Any]], collections.Counter[str]]:
    """Steps for `attempts` upstream attempts: runs of normal answers between drawn faults."""
    steps: list[dict[str, Any]] = []
    drawn: collections.Counter[str] = collections.Counter()
    normal = 0
    for _ in range(attempts):
        x, fault = rng.random(), None
        for share, step in FAULTS:
            if x < share:
                fault = step
                break
            x -= share
        if fault is None:
            normal += 1
            continue
        if normal:
            steps.append({"times": normal})
            normal = 0
        steps.append(dict(fault))
        drawn[fault_name(fault)] += 1
    if normal:
        steps.append({"times": normal})
    return steps, drawn


def fault_name(step: dict[str, Any]) -> str:
    if "status" in step:
        return str(step["status"])
    return next((k for k in ("reset", "truncate", "drop_after") if k in step), "none")
