"""The cause of an upstream failure survives everywhere it is reported (issue N.2): the error a client
gets, /readyz, the breaker's fail-fast message and the adapter log."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.backends import load
from modelyard.config import Settings

URL = "http://engine.invalid:8000/v1"


def refusing(message: str, exc: type[httpx.TransportError] = httpx.ConnectError):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc(message, request=request)

    return httpx.MockTransport(handler)


def app_with(transport: httpx.MockTransport, **env: str) -> TestClient:
    settings = Settings.from_env(
        "openai", {"MODELYARD_UPSTREAM_URL": URL, "MODELYARD_READINESS_TTL": "0", "MODELYARD_RETRIES": "0", **env}
    )
    backend = load("openai", settings)
    return TestClient(create_app(backend, upstream=backend.make_upstream(transport)))


@pytest.mark.parametrize(
    ("message", "exc", "hint"),
    [
        ("[Errno -2] Name or service not known", httpx.ConnectError, "does not resolve (DNS)"),
        ("[Errno 111] Connection refused", httpx.ConnectError, "nothing listens there"),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", httpx.ConnectError, "TLS handshake failed"),
        ("timed out", httpx.ConnectTimeout, "no answer in time"),
    ],
)
def test_cause_in_error_readyz_and_log(message: str, exc: type, hint: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modelyard"), app_with(refusing(message, exc)) as tc:
        err = tc.post("/v1/responses", json={"model": "m", "input": "x"}).json()["error"]
        assert message in err["message"] and URL in err["message"] and hint in err["message"]
        ready = tc.get("/readyz")
        assert ready.status_code == 503
        assert message in ready.json()["upstream"] and hint in ready.json()["upstream"]
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert message in logged and URL in logged


def test_circuit_open_message_keeps_the_last_cause() -> None:
    with app_with(refusing("[Errno 111] Connection refused"), MODELYARD_BREAKER_FAILURES="1") as tc:
        tc.post("/v1/responses", json={"model": "m", "input": "x"})
        err = tc.post("/v1/responses", json={"model": "m", "input": "x"}).json()["error"]
        assert err["code"] == "upstream_circuit_open" and "Connection refused" in err["message"]


@pytest.mark.parametrize(("status", "hint"), [(401, "policy_api_key"), (404, "policy_base_url")])
def test_provider_refusal_in_readyz_with_its_message_redacted(status: int, hint: str) -> None:
    key = "sk-live-abcdefghijklmnop"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"message": f"Incorrect API key provided: {key}"}})

    with app_with(httpx.MockTransport(handler), MODELYARD_UPSTREAM_API_KEY=key) as tc:
        ready = tc.get("/readyz").json()["upstream"]
        assert f"-> {status}" in ready and "Incorrect API key" in ready and hint in ready and key not in ready
