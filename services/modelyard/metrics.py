"""Prometheus metrics for one adapter process."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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

# -- the upstream path (upstream.py); gauges are read at scrape time, so they cost nothing per request --
RETRIES = Counter("modelyard_upstream_retries_total", "Upstream attempts repeated, by cause", ["backend", "reason"])
RETRIES_DENIED = Counter(
    "modelyard_upstream_retries_denied_total",
    "Retries not made: attempts, deadline, Retry-After too long or retry budget spent",
    ["backend", "reason"],
)
REJECTED = Counter(
    "modelyard_upstream_rejected_total",
    "Requests refused before reaching the upstream (circuit_open, queue_full, queue_timeout)",
    ["backend", "reason"],
)
CIRCUIT_OPENED = Counter("modelyard_upstream_circuit_opened_total", "Times the circuit breaker opened", ["backend"])
CIRCUIT_STATE = Gauge("modelyard_upstream_circuit_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", ["backend"])
UPSTREAM_IN_FLIGHT = Gauge("modelyard_upstream_in_flight_requests", "Generation requests holding a slot", ["backend"])
QUEUE_DEPTH = Gauge("modelyard_upstream_queue_depth", "Requests waiting for an upstream slot", ["backend"])
TTFT = Histogram(
    "modelyard_time_to_first_token_seconds",
    "Request start to the first byte of the upstream's streamed body (retries and queueing included)",
    ["backend"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300),
)
# -- several replicas (replicas.py); `replica` is the index in MODELYARD_UPSTREAM_URL --
REPLICA_REQUESTS = Counter(
    "modelyard_replica_requests_total",
    "Attempts sent to each replica, by outcome (HTTP status, or the transport error's class)",
    ["backend", "replica", "outcome"],
)
REPLICA_HEALTHY = Gauge(
    "modelyard_replica_healthy", "1 while a replica takes requests, 0 while taken out", ["backend", "replica", "host"]
)
REPLICA_IN_FLIGHT = Gauge(
    "modelyard_replica_in_flight_requests", "Requests open on each replica", ["backend", "replica"]
)
REPLICA_FAILOVERS = Counter(
    "modelyard_replica_failovers_total", "Requests moved off a replica to another one", ["backend", "replica"]
)
REPLICA_TRANSITIONS = Counter(
    "modelyard_replica_transitions_total", "Replicas taken out (down) and put back (up)", ["backend", "replica", "to"]
)
SESSIONS = Gauge("modelyard_replica_sessions", "Sessions (x-session-id) with a replica they stick to", ["backend"])
TOKENS = Counter("modelyard_tokens_total", "Tokens in non-streamed upstream replies' usage", ["backend", "direction"])


@functools.cache
def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once: prometheus_client validates the values and takes a lock
    on every `.labels()` call, six times a request on the hot path. Label values here are few (backends,
    endpoints, status codes), so the cache stays small."""
    return metric.labels(*labels)


def watch(metric: Gauge, backend: str, read: Callable[[], float]) -> None:
    """A gauge computed when scraped (the newest upstream of a backend wins)."""
    metric.labels(backend).set_function(read)


def count_usage(backend: str, reply: Any) -> None:
    """Tokens in/out from a reply's usage (Chat Completions or Responses naming)."""
    usage = reply.get("usage") if isinstance(reply, dict) else None
    if not isinstance(usage, dict):
        return
    tokens_in = usage.get("prompt_tokens", usage.get("input_tokens"))
    tokens_out = usage.get("completion_tokens", usage.get("output_tokens"))
    if isinstance(tokens_in, int) and tokens_in > 0:
        child(TOKENS, backend, "in").inc(tokens_in)
    if isinstance(tokens_out, int) and tokens_out > 0:
        child(TOKENS, backend, "out").inc(tokens_out)


@contextmanager
def track(backend: str, endpoint: str) -> Iterator[None]:
    start = time.perf_counter()
    in_flight = child(IN_FLIGHT, backend)
    in_flight.inc()
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
        in_flight.dec()
        child(REQUESTS, backend, endpoint, status).inc()
        child(LATENCY, backend, endpoint).observe(time.perf_counter() - start)


def render() -> bytes:
    return generate_latest()


FALLBACKS = Counter(
    "modelyard_fallback_total",
    "Generations sent to the fallback backend, by why the policy backend could not",
    ["backend", "reason"],
)
