"""Every error the gateway itself produces is JSON in OpenAI's format (Anthropic's under /v1/messages).

Cheap: no compose stack, no adapter, no engine. The gateway image runs alone with `docker run` on a network
of its own, next to a dummy upstream answering as `adapter-vllm` (it echoes the path, sleeps on /slow, drops
the connection on /close, answers /status/<code> with that code). A second gateway, "probe", runs the repo's
template plus two locations that return 500 and 503 (nginx produces those only on internal faults and
overload), with a client key and a global rate of one request a minute for the 401 and the 429.

408 and 499 are never sent (nginx closes the connection, or the client already has): they are checked in the
access log.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import logged

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TAG = os.environ.get("MODELYARD_TAG", "latest")
GATEWAY = f"modelyard/gateway:{TAG}"
PYTHON = f"modelyard/adapter:{TAG}"  # any image with python3; this one is always built for the tests
KEY = "sk-gwerr-" + uuid.uuid4().hex[:12]

DUMMY = r"""
import http.server, json, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        if "/slow" in self.path:
            time.sleep(3)
        if "/close" in self.path:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        status = int(self.path.split("/status/")[1][:3]) if "/status/" in self.path else 200
        out = json.dumps({"path": self.path, "from": "dummy"}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_DELETE = answer
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
"""

PROBE_LOCATIONS = """        location = /_test/500 { return 500; }
        location = /_test/503 { return 503; }
        location = /v1/messages/_test/500 { return 500; }
"""


def docker(*args: str, check: bool = True) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check and out.returncode:
        raise RuntimeError(f"docker {' '.join(args[:3])}: {out.stderr.strip()}")
    return out.stdout + out.stderr


@dataclass
class Gateways:
    main: int
    probe: int
    main_name: str

    def log(self) -> str:
        return docker("logs", self.main_name)


def wait_healthy(port: int) -> None:
    for _ in range(100):
        try:
            status, _, body = exchange(port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gateway on {port} did not come up")


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    run_id = uuid.uuid4().hex[:8]
    net, dummy, main, probe = (f"modelyard-gwerr-{run_id}{s}" for s in ("", "-dummy", "-main", "-probe"))
    template = (ROOT / "images/gateway/nginx.conf.template").read_text()
    assert "        location / {" in template
    probe_template = tmp_path_factory.mktemp("gwerr") / "nginx.conf.template"
    head, anchor, tail = template.rpartition("        location / {")  # the main server's (the last)
    probe_template.write_text(head + PROBE_LOCATIONS + anchor + tail)
    probe_template.chmod(0o644)
    limits = ["-e", "GATEWAY_READ_TIMEOUT=1s", "-e", "GATEWAY_MAX_BODY_SIZE=1k",
              "-e", "GATEWAY_CLIENT_HEADER_TIMEOUT=1s", "-e", "GATEWAY_CLIENT_BODY_TIMEOUT=1s"]  # fmt: skip
    common = ["run", "-d", "--network", net, "--read-only", "--tmpfs", "/tmp", "-p", "127.0.0.1::8080"]
    docker("network", "create", net)
    try:
        docker("run", "-d", "--name", dummy, "--network", net, "--network-alias", "adapter-vllm",
               "--entrypoint", "python", PYTHON, "-c", DUMMY)  # fmt: skip
        docker(*common, "--name", main, *limits, GATEWAY)
        docker(*common, "--name", probe, *limits, "-e", f"GATEWAY_API_KEYS={KEY}", "-e", "GATEWAY_RATE_GLOBAL=1r/m",
               "-v", f"{probe_template}:/etc/modelyard/nginx.conf.template:ro", GATEWAY)  # fmt: skip
        ports = [int(docker("port", name, "8080").split(":")[-1].split()[0]) for name in (main, probe)]
        for port in ports:
            wait_healthy(port)
        yield Gateways(ports[0], ports[1], main)
    finally:
        for name in (main, probe, dummy):
            docker("rm", "-f", name, check=False)
        docker("network", "rm", net, check=False)


def exchange(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes (no client library to tidy the path) and read the reply until nginx closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    if not got:
        return 0, {}, b""
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "host: gateway", "connection: close", *headers]
    if body:
        head.append(f"content-length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def assert_openai(status: int, headers: dict[str, str], body: bytes, want: int, code: str) -> dict:
    assert status == want, body
    assert headers["content-type"].startswith("application/json") and headers.get("x-request-id")
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["code"] == code and error["type"] in ("invalid_request_error", "server_error", "requests")
    return error


def assert_anthropic(status: int, headers: dict[str, str], body: bytes, want: int, kind: str) -> dict:
    assert status == want, body
    assert headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["type"] == "error" and set(doc["error"]) == {"type", "message"} and doc["error"]["message"]
    assert doc["error"]["type"] == kind
    return doc["error"]


BIG = b'{"model": "m", "input": "' + b"x" * 2048 + b'"}'
OPENAI_CASES = [
    ("400 a path above the root", request("POST", "/v1/../../x", body=b"{}"), 400, "bad_request"),
    ("400 an encoded path above the root", request("GET", "/%2e%2e/x"), 400, "bad_request"),
    ("400 no Host header", b"GET /v1/models HTTP/1.1\r\n\r\n", 400, "bad_request"),
    ("400 a bad request line", b"GET  HTTP/1.1\r\nhost: x\r\n\r\n", 400, "bad_request"),
    ("404 an unknown path", request("GET", "/nothing/here"), 404, "unknown_url"),
    ("404 a path with a quote and CRLF", request("GET", "/a%22b%0d%0ac"), 404, "unknown_url"),
    ("404 a backend without a slash", request("GET", "/vllm"), 404, "unknown_url"),
    ("405 TRACE", request("TRACE", "/v1/responses"), 405, "method_not_allowed"),
    ("413 a body over max_body_size", request("POST", "/v1/responses", body=BIG), 413, "request_too_large"),
    ("414 a request line over 8 KiB", request("GET", "/v1/" + "a" * 9000), 414, "uri_too_long"),
    ("431 a header over 8 KiB", request("GET", "/v1/models", "x-big: " + "a" * 9000), 431, "header_too_large"),
    ("502 a backend with no adapter", request("GET", "/nim/v1/models"), 502, "backend_unavailable"),
    ("502 an adapter that drops the connection", request("GET", "/vllm/close"), 502, "backend_unavailable"),
    ("504 an adapter slower than read_timeout", request("GET", "/v1/slow"), 504, "backend_timeout"),
]
ANTHROPIC_CASES = [
    ("405 TRACE", request("TRACE", "/v1/messages"), 405, "invalid_request_error"),
    ("413 a body over max_body_size", request("POST", "/v1/messages", body=BIG), 413, "request_too_large"),
    ("413 by backend path", request("POST", "/vllm/v1/messages?beta=true", body=BIG), 413, "request_too_large"),
    ("502 a backend with no adapter", request("POST", "/nim/v1/messages", body=b"{}"), 502, "api_error"),
    ("504 an adapter slower than read_timeout", request("POST", "/v1/messages/slow", body=b"{}"), 504, "timeout_error"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "status", "code"), [c[1:] for c in OPENAI_CASES], ids=[c[0] for c in OPENAI_CASES])
def test_gateway_errors_are_openai_json(gateways: Gateways, data: bytes, status: int, code: str) -> None:
    assert_openai(*exchange(gateways.main, data), status, code)


@pytest.mark.parametrize(
    ("data", "status", "kind"), [c[1:] for c in ANTHROPIC_CASES], ids=[c[0] for c in ANTHROPIC_CASES]
)
def test_gateway_errors_under_v1_messages_are_anthropic_json(gateways: Gateways, data: bytes, status: int, kind: str):
    assert_anthropic(*exchange(gateways.main, data), status, kind)


def test_500_and_503_from_nginx_itself(gateways: Gateways) -> None:
    assert_openai(*exchange(gateways.probe, request("GET", "/_test/500")), 500, "internal_error")
    assert_openai(*exchange(gateways.probe, request("GET", "/_test/503")), 503, "service_unavailable")
    assert_anthropic(*exchange(gateways.probe, request("GET", "/v1/messages/_test/500")), 500, "api_error")


def test_401_and_429_from_the_keys_and_limits(gateways: Gateways) -> None:
    status, headers, body = exchange(gateways.probe, request("GET", "/v1/models", "authorization: Bearer wrong-key"))
    assert_openai(status, headers, body, 401, "invalid_api_key")
    assert headers["www-authenticate"].startswith("Bearer")
    status, headers, body = exchange(gateways.probe, request("POST", "/v1/messages", body=b"{}"))
    assert_anthropic(status, headers, body, 401, "authentication_error")
    auth = f"authorization: Bearer {KEY}"
    statuses = [exchange(gateways.probe, request("GET", "/v1/models", auth)) for _ in range(3)]
    assert statuses[0][0] == 200
    assert_openai(*statuses[-1], 429, "rate_limit_exceeded")
    assert statuses[-1][1]["retry-after"] == "1"


def test_internal_error_uris_are_not_reachable_from_outside(gateways: Gateways) -> None:
    assert_openai(*exchange(gateways.main, request("GET", "/_gateway_error/400")), 404, "unknown_url")


def test_408_and_499_close_the_connection_and_are_logged(gateways: Gateways) -> None:
    # Headers never finished, then a body promised and never sent: nothing comes back (nginx never writes
    # a 408), the access log says 408.
    assert exchange(gateways.main, b"POST /v1/408-head HTTP/1.1\r\nhost: x\r\n") == (0, {}, b"")
    assert exchange(gateways.main, b"POST /v1/408-body HTTP/1.1\r\nhost: x\r\ncontent-length: 9\r\n\r\n{") == (
        0, {}, b"")  # fmt: skip
    # The client goes away while the adapter is still working: 499 in the log.
    with socket.create_connection(("127.0.0.1", gateways.main), timeout=10) as sock:
        sock.sendall(request("GET", "/v1/499/slow"))
        time.sleep(0.3)
    log = logged(gateways.log, '"uri":"/v1/408-head"', '"uri":"/v1/408-body"', '"uri":"/v1/499/slow"')
    entries = [json.loads(line) for line in log.splitlines() if line.startswith('{"time"')]
    by_uri = {e["uri"]: e["status"] for e in entries}
    assert by_uri.get("/v1/408-head") == 408 and by_uri.get("/v1/408-body") == 408
    assert by_uri.get("/v1/499/slow") == 499


def test_healthz_names_the_gateway(gateways: Gateways) -> None:
    status, headers, body = exchange(gateways.main, request("GET", "/healthz"))
    assert status == 200 and json.loads(body) == {"status": "ok", "service": "modelyard-gateway"}


def test_adapter_errors_pass_through_untouched(gateways: Gateways) -> None:
    for code in (400, 404, 500, 503):
        status, _, body = exchange(gateways.main, request("GET", f"/vllm/status/{code}"))
        assert status == code and json.loads(body) == {"path": f"/status/{code}", "from": "dummy"}


def test_backend_paths_reach_the_adapter_re_escaped(gateways: Gateways) -> None:
    # A decoded path must not reach the adapter raw: %20 would split its request line, %3F start a query,
    # %0D%0A add a header.
    for sent, seen in [("/vllm/v1/a%20b%3Fc?x=1", "/v1/a%20b%3Fc?x=1"), ("/vllm/v1/a%0d%0aX-Injected:%201",
                       "/v1/a%0D%0AX-Injected:%201"), ("/openai/../vllm/v1/models", "/v1/models")]:  # fmt: skip
        status, _, body = exchange(gateways.main, request("GET", sent))
        assert status == 200 and json.loads(body)["path"] == seen
