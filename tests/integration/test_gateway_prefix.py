"""The gateway image with GATEWAY_ADAPTER_PREFIX, as the Helm chart runs it (docs/kubernetes.md).

The gateway alone, with /etc/hosts entries standing in for a release's adapter Services: the keep-alive
groups are written for the prefixed names, the fallback for other backends uses the prefix, nginx runs,
and a prefix that is no DNS label stops the container with a message.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

pytestmark = pytest.mark.integration
IMAGE = os.environ.get("MODELYARD_GATEWAY_IMAGE", "modelyard/gateway:latest")


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module", autouse=True)
def image() -> None:
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.skip(f"{IMAGE} is not built (scripts/build-images gateway)")


def run_gateway(*args: str) -> str:
    name = f"modelyard-gw-prefix-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", *args, IMAGE)
    return name


def test_prefixed_adapter_names_get_keep_alive_groups() -> None:
    name = run_gateway(
        "--add-host",
        "rel-modelyard-adapter-vllm:10.9.0.5",
        "--add-host",
        "rel-modelyard-adapter-openai:10.9.0.7",
        "-e",
        "GATEWAY_ADAPTER_PREFIX=rel-modelyard-adapter-",
    )
    try:
        deadline = time.monotonic() + 30
        while docker("exec", name, "curl", "-fsS", "http://127.0.0.1:8080/healthz", check=False).returncode != 0:
            assert time.monotonic() < deadline, docker("logs", name, check=False).stderr
            time.sleep(0.5)
        upstreams = docker("exec", name, "cat", "/tmp/nginx/upstreams.conf").stdout
        assert "default rel-modelyard-adapter-$backend:8000;" in upstreams
        assert "vllm adapter_vllm;" in upstreams and "openai adapter_openai;" in upstreams
        assert "upstream adapter_vllm { server 10.9.0.5:8000 max_fails=0;" in upstreams
        assert "upstream adapter_openai { server 10.9.0.7:8000 max_fails=0;" in upstreams
        assert "adapter_nim" not in upstreams
    finally:
        docker("rm", "-f", name, check=False)


def test_a_prefix_that_is_no_dns_label_is_refused() -> None:
    name = run_gateway("-e", "GATEWAY_ADAPTER_PREFIX=Rel_Adapter-")
    try:
        status = docker("wait", name, timeout=30).stdout.strip()  # it stops at once, before nginx
        assert status == "2"
        assert "GATEWAY_ADAPTER_PREFIX must be a DNS label prefix" in docker("logs", name).stderr
    finally:
        docker("rm", "-f", name, check=False)
