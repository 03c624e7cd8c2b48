"""Docker Swarm on several nodes (docs/swarm.md): three Docker daemons in their own network namespaces on
this machine (tests/integration/swarm_lab.py), one manager and two workers, the stack from
scripts/swarm-config deployed with `docker stack deploy`, one engine replica on each worker. Load runs
through the gateway while one worker's link is cut: the sessions on the other worker lose nothing, the lost
replica leaves rotation, only the requests in flight on it fail (504 after the read timeout), none hangs;
the link restored, the replica comes back.

Opt-in (MODELYARD_SWARM_TEST=1): it needs root, network namespaces and a second set of dockerds, and takes
~3 minutes. The figures are printed as one JSON line.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from . import swarm_lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def swarm():
    if os.environ.get("MODELYARD_SWARM_TEST") != "1":
        pytest.skip("opt-in: MODELYARD_SWARM_TEST=1 (root, network namespaces, three extra dockerds; ~3 min)")
    reason = swarm_lab.why_not()
    if reason:
        pytest.skip(f"swarm lab cannot run here: {reason}")
    t0 = time.monotonic()
    try:
        with swarm_lab.lab():
            swarm_lab.deploy()
            swarm_lab.wait_ready(2)
            yield t0
    except RuntimeError as exc:
        if "did not start" in str(exc):
            pytest.skip(f"dockerd cannot start in a network namespace here: {exc}")
        raise


def test_node_loss(swarm) -> None:
    result = swarm_lab.node_loss()
    result["test_s"] = round(time.monotonic() - swarm, 1)
    print(json.dumps(result))
    assert result["sessions"]["on_lost"] > 0, result  # the cut node carried sessions
    assert result["during_stayed"] > 20 and result["failed_stayed"] == 0, result
    # Only requests already on the cut replica may fail: each waits out the read timeout (3 s in the lab)
    # and is a 504 (a read timeout is not retried: docs/reliability.md); at most one per client thread.
    assert result["failed_moved"] <= 4 and set(result["errors"]) <= {"504 "}, result
    assert result["failed_after"] == 0, result
    assert result["out_of_rotation_s"] is not None and result["out_of_rotation_s"] < 10, result
    assert result["max_latency_s"] < 15, result  # the client's timeout: nothing hung
    assert result["back_in_rotation_s"] is not None, result
