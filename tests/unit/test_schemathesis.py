"""schemathesis against the adapter's own OpenAPI schema (/openapi.json, filled in by modelyard/openapi.py),
in-process over ASGI with the engine mocked: generated requests to every route get no 5xx, and every reply
matches the documented status codes, content types and schemas (errors in OpenAI's format included).
A few dozen examples per operation keep it to seconds."""

from __future__ import annotations

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a test extra (services[test])")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from test_app import Upstream_  # noqa: E402

from modelyard.app import create_app  # noqa: E402
from modelyard.backends import load  # noqa: E402
from modelyard.config import Settings  # noqa: E402
from modelyard.upstream import Upstream  # noqa: E402

SETTINGS = Settings.from_env(
    "vllm", {"MODELYARD_UPSTREAM_URL": "http://engine:8000/v1", "MODELYARD_READINESS_TTL": "0"}
)
BACKEND = load("vllm", SETTINGS)
# A fresh mocked engine client per app start: schemathesis starts and stops the app's lifespan itself.
BACKEND.make_upstream = lambda: Upstream(SETTINGS.upstream_url, transport=httpx.MockTransport(Upstream_()))
APP = create_app(BACKEND)

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_replies_match_the_schema(case) -> None:
    case.call_and_validate(checks=CHECKS)


def test_the_generation_routes_document_their_bodies() -> None:
    raw = APP.openapi()
    for path in ("/v1/responses", "/v1/chat/completions"):
        op = raw["paths"][path]["post"]
        assert op["requestBody"]["content"]["application/json"]["schema"]["required"]
        assert "default" in op["responses"] and "text/event-stream" in op["responses"]["200"]["content"]
