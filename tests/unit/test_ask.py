"""scripts/ask talks only to modelyard's gateway: another program on the port gets no question."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Handler(http.server.BaseHTTPRequestHandler):
    health = b"<html><body><h1>404 Not Found</h1></body></html>"
    asked: list[str] = []

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.reply(200, self.health)
        else:
            self.asked.append(self.path)
            self.reply(200, json.dumps({"data": [{"id": "m"}]}).encode())

    def do_POST(self) -> None:
        self.asked.append(self.path)
        self.reply(200, b"<html>not an answer</html>")

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[http.server.HTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Handler.asked = []
    yield srv
    srv.shutdown()


def ask(port: int) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "scripts/ask"), "--port", str(port), "hello"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("health", [b"<html>404</html>", b'{"status":"ok"}', b'{"status":"ok","service":"other"}'])
def test_another_program_on_the_port_is_not_asked(server: http.server.HTTPServer, health: bytes) -> None:
    Handler.health = health
    out = ask(server.server_address[1])
    assert out.returncode == 1 and "is not modelyard's gateway" in out.stderr and "Not asking it" in out.stderr
    assert Handler.asked == []  # not even /v1/models


def test_nothing_on_the_port_says_so() -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = ask(port)
    assert out.returncode == 1 and "cannot reach the gateway" in out.stderr
