"""Prometheus metrics for one adapter process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from .errors import APIError

CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter("modelyard_requests_total", "Requests handled", ["backend", "endpoint", "status"])
LATENCY = Histogram(
    "modelyard_request_seconds",
    "Time to the reply's headers (a stream's first byte)",
    ["backend", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
IN_FLIGHT = Gauge("modelyard_in_flight_requests", "Requests being handled", ["backend"])


@contextmanager
def track(backend: str, endpoint: str) -> Iterator[None]:
    start = time.perf_counter()
    IN_FLIGHT.labels(backend).inc()
    status = "200"
    try:
        yield
    except APIError as err:
        status = str(err.status)
        raise
    except Exception:
        status = "500"
        raise
    finally:
        IN_FLIGHT.labels(backend).dec()
        REQUESTS.labels(backend, endpoint, status).inc()
        LATENCY.labels(backend, endpoint).observe(time.perf_counter() - start)


def render() -> bytes:
    return generate_latest()
