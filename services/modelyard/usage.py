"""Per-key usage accounting and quotas (docs/capture-and-usage.md).

Every reply's final usage (streamed ones and ones cut short included) is counted once per client request,
by key id (never the key) and model: requests, input/output/cached/reasoning tokens, errors by type. The
counts go to Prometheus at once (bounded label sets) and to the store in hourly buckets, written in
batches off the request path and at shutdown, so a restart loses nothing.

Quotas (MODELYARD_QUOTAS, JSON): limits per key id, or "*" for every key, over a minute, an hour or a
day: `{"*": {"requests_per_minute": 600, "tokens_per_day": 10000000}}`. A request over one is a 429
(Anthropic's error on /v1/messages) naming the quota and when it resets; it is checked before anything
is read or sent, and tokens count once the reply that used them ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Any

import orjson
from prometheus_client import Counter

from .calls import Call
from .errors import APIError
from .store import Store

log = logging.getLogger("modelyard")

KEY_REQUESTS = Counter(
    "modelyard_key_requests_total", "Client requests by key id and model", ["backend", "key", "model"]
)
KEY_TOKENS = Counter(
    "modelyard_key_tokens_total", "Tokens by key id, model and kind (input, output, cached, reasoning)",
    ["backend", "key", "model", "kind"],
)  # fmt: skip
KEY_ERRORS = Counter(
    "modelyard_key_errors_total", "Failed replies by key id, model and error type", ["backend", "key", "model", "type"]
)
MAX_LABELS = 1000  # distinct (key, model) label sets; past it, new ones count under "other"
WINDOWS = {"minute": 60, "hour": 3600, "day": 86400}
KINDS = ("input", "output", "cached", "reasoning")


def tokens(usage: dict[str, Any] | None) -> dict[str, int]:
    """Usage in any of the three namings (Responses, Chat Completions, Anthropic) as our four kinds."""
    u = usage or {}
    inp = u.get("input_tokens", u.get("prompt_tokens")) or 0
    out = u.get("output_tokens", u.get("completion_tokens")) or 0
    details_in = u.get("input_tokens_details") or u.get("prompt_tokens_details") or {}
    details_out = u.get("output_tokens_details") or u.get("completion_tokens_details") or {}
    cached = details_in.get("cached_tokens") or u.get("cache_read_input_tokens") or 0
    if "cache_read_input_tokens" in u or "cache_creation_input_tokens" in u:  # Anthropic's input excludes cache
        inp += (u.get("cache_read_input_tokens") or 0) + (u.get("cache_creation_input_tokens") or 0)
    reasoning = details_out.get("reasoning_tokens") or 0
    return {
        k: int(v) if isinstance(v, int | float) else 0
        for k, v in zip(KINDS, (inp, out, cached, reasoning), strict=True)
    }


def parse_quotas(raw: str) -> dict[str, dict[str, int]]:
    """MODELYARD_QUOTAS: {"<key id or *>": {"requests_per_<window>" | "tokens_per_<window>": n}}."""
    from .config import ConfigError

    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"MODELYARD_QUOTAS must be JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("MODELYARD_QUOTAS must be an object of key ids (or *) to limits")
    for key, limits in data.items():
        if not isinstance(limits, dict):
            raise ConfigError(f"MODELYARD_QUOTAS[{key!r}] must be an object of limits")
        for name, n in limits.items():
            what, _, window = name.partition("_per_")
            if what not in ("requests", "tokens") or window not in WINDOWS or not isinstance(n, int) or n < 0:
                msg = (
                    f"MODELYARD_QUOTAS[{key!r}]: {name!r} must be requests_per_ or tokens_per_ minute, hour or day,"
                    " with a whole number"
                )
                raise ConfigError(msg)
    return data


class Ledger:
    def __init__(self, backend: str, quotas: dict[str, dict[str, int]] | None = None, clock: Any = time.time) -> None:
        self.backend, self.quotas, self.clock = backend, quotas or {}, clock
        self.store: Store | None = None
        self.pending: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        self.pending_errors: dict[tuple[str, str, int, str], int] = defaultdict(int)
        self.windows: dict[tuple[str, str, int], int] = defaultdict(int)  # (scope, what, window start) -> used
        self.labels: set[tuple[str, str]] = set()
        self._metric_children: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    # -- quotas ------------------------------------------------------------------------------------
    def limits(self, scope: str) -> dict[str, int]:
        return {**self.quotas.get("*", {}), **self.quotas.get(scope, {})}

    def refusal(self, call: Call) -> Any:
        """A 429 response for a call over one of its key's quotas, or None."""
        limits = self.limits(call.scope) if self.quotas else None
        if not limits:
            return None
        now = self.clock()
        for name, limit in limits.items():
            what, _, window = name.partition("_per_")
            span = WINDOWS[window]
            start = int(now // span * span)
            if self.windows[(call.scope, what, start)] >= limit:
                resets = start + span
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(resets))
                wait = int(resets - now) + 1
                msg = f"Quota {name} ({limit}) of this key is used up; it resets at {when} (in {wait} s)."
                err = APIError(
                    429, msg, param=None, code="quota_exceeded", headers={"retry-after": str(int(resets - now) + 1)}
                )
                KEY_ERRORS.labels(
                    self.backend, *self._label(call.scope, call.model or "unknown"), "quota_exceeded"
                ).inc()
                return _error_reply(err, call.route)
        return None

    # -- counting ----------------------------------------------------------------------------------
    def _label(self, scope: str, model: str) -> tuple[str, str]:
        if (scope, model) in self.labels or len(self.labels) < MAX_LABELS:
            self.labels.add((scope, model))
            return scope, model
        return "other", "other"

    def _children(self, scope: str, model: str) -> tuple[Any, dict[str, Any]]:
        """The Prometheus children of one (key, model), looked up once (labels() costs on every request)."""
        found = self._metric_children.get((scope, model))
        if found is None:
            key, label_model = self._label(scope, model)
            found = (
                KEY_REQUESTS.labels(self.backend, key, label_model),
                {kind: KEY_TOKENS.labels(self.backend, key, label_model, kind) for kind in KINDS},
            )
            self._metric_children[(scope, model)] = found
        return found

    def record(self, call: Call) -> None:
        model = call.model or "unknown"
        requests, token_counters = self._children(call.scope, model)
        counted = tokens(call.usage)
        requests.inc()
        for kind, n in counted.items():
            if n:
                token_counters[kind].inc(n)
        error = call.error or (_status_type(call.status) if call.status >= 400 else None)
        now = self.clock()
        bucket = int(now // 3600 * 3600)
        row = self.pending[(call.scope, model, bucket)]
        row[0] += 1
        for i, kind in enumerate(KINDS):
            row[i + 1] += counted[kind]
        if error:
            KEY_ERRORS.labels(self.backend, *self._label(call.scope, model), error).inc()
            self.pending_errors[(call.scope, model, bucket, error)] += 1
        if self.quotas:
            used = counted["input"] + counted["output"]
            for span in WINDOWS.values():
                start = int(now // span * span)
                self.windows[(call.scope, "requests", start)] += 1
                self.windows[(call.scope, "tokens", start)] += used

    # -- the store ---------------------------------------------------------------------------------
    async def start(self, store: Store | None) -> None:
        self.store = store
        if store is not None:
            await self._seed()
            self._task = asyncio.create_task(self._flush_loop(), name="modelyard-usage-flush")

    async def _seed(self) -> None:
        """Quota windows count what earlier runs of this adapter (or others sharing the store) used."""
        if not self.quotas or self.store is None:
            return
        now = self.clock()
        day = int(now // 86400 * 86400)
        rows = await self.store.engine.fetch(
            "SELECT scope, bucket, SUM(requests), SUM(input_tokens + output_tokens) FROM usage WHERE bucket >= ?"
            " GROUP BY scope, bucket",
            (day,),
        )
        hour = int(now // 3600 * 3600)
        for scope, bucket, requests, used in rows:
            self.windows[(scope, "requests", day)] += int(requests)
            self.windows[(scope, "tokens", day)] += int(used)
            if int(bucket) == hour:
                self.windows[(scope, "requests", hour)] += int(requests)
                self.windows[(scope, "tokens", hour)] += int(used)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - kept pending, tried again next round
                log.exception("writing usage counts failed")

    async def flush(self) -> None:
        if self.store is None or not (self.pending or self.pending_errors):
            return
        rows, errors = self.pending, self.pending_errors
        self.pending, self.pending_errors = defaultdict(lambda: [0, 0, 0, 0, 0]), defaultdict(int)
        sql = (
            "INSERT INTO usage (scope, model, bucket, requests, input_tokens, output_tokens, cached_tokens,"
            " reasoning_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, model, bucket) DO UPDATE SET"
            " requests = usage.requests + excluded.requests, input_tokens = usage.input_tokens + excluded.input_tokens,"
            " output_tokens = usage.output_tokens + excluded.output_tokens,"
            " cached_tokens = usage.cached_tokens + excluded.cached_tokens,"
            " reasoning_tokens = usage.reasoning_tokens + excluded.reasoning_tokens"
        )
        esql = (
            "INSERT INTO usage_errors (scope, model, bucket, type, count) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (scope, model, bucket, type) DO UPDATE SET count = usage_errors.count + excluded.count"
        )
        statements = [(sql, (*k, *v)) for k, v in rows.items()] + [(esql, (*k, n)) for k, n in errors.items()]
        try:
            await self.store.writes.write(statements)
        except Exception:
            for k, v in rows.items():  # put back, so nothing is lost
                self.pending[k] = [a + b for a, b in zip(self.pending[k], v, strict=True)]
            for k, n in errors.items():
                self.pending_errors[k] += n
            raise

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def report(self, params: Any) -> dict[str, Any]:
        """GET /v1/usage: counts by key, model and period, from the store (what is pending first)."""
        if self.store is None:
            raise APIError(404, "Usage is kept in the store: set MODELYARD_STORE_URL.", code="not_found")
        await self.flush()
        group = params.get("group_by") or "day"
        if group not in ("day", "hour", "none"):
            raise APIError(400, "'group_by' must be day, hour or none.", param="group_by", code="invalid_value")
        where, args = ["1 = 1"], []
        for name, column in (("key", "scope"), ("model", "model")):
            if params.get(name):
                where.append(f"{column} = ?")
                args.append(params[name])
        for name, op in (("since", ">="), ("until", "<")):
            if params.get(name):
                raw = params[name]
                if not str(raw).isdigit():
                    raise APIError(400, f"'{name}' must be a Unix time in seconds.", param=name, code="invalid_value")
                where.append(f"bucket {op} ?")
                args.append(int(raw) // 3600 * 3600 if op == ">=" else int(raw))
        cond = " AND ".join(where)
        rows = await self.store.engine.fetch(
            "SELECT scope, model, bucket, requests, input_tokens, output_tokens, cached_tokens, reasoning_tokens"
            f" FROM usage WHERE {cond} ORDER BY bucket, scope, model",
            args,
        )
        errs = await self.store.engine.fetch(
            f"SELECT scope, model, bucket, type, count FROM usage_errors WHERE {cond}", args
        )
        return {"object": "list", "group_by": group, "data": _grouped(rows, errs, group)}


def _period(bucket: int, group: str) -> int | None:
    return None if group == "none" else bucket // 86400 * 86400 if group == "day" else bucket


def _grouped(rows: list[tuple[Any, ...]], errs: list[tuple[Any, ...]], group: str) -> list[dict[str, Any]]:
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for scope, model, bucket, req, inp, outp, cached, reasoning in rows:
        k = (scope, model, _period(int(bucket), group))
        zero = {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "reasoning_tokens": 0}
        e = out.setdefault(k, {"key": scope, "model": model, "period_start": k[2], **zero, "errors": {}})
        for name, n in (("requests", req), ("input_tokens", inp), ("output_tokens", outp), ("cached_tokens", cached),
                        ("reasoning_tokens", reasoning)):  # fmt: skip
            e[name] += int(n)
    for scope, model, bucket, kind, n in errs:
        k = (scope, model, _period(int(bucket), group))
        if k in out:
            out[k]["errors"][kind] = out[k]["errors"].get(kind, 0) + int(n)
    return list(out.values())


def _status_type(status: int) -> str:
    from .errors import _TYPES

    return _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def _error_reply(err: APIError, route: str) -> Any:
    from fastapi.responses import Response

    if route.startswith("/v1/messages"):  # Anthropic's error format on its route
        body = {"type": "error", "error": {"type": "rate_limit_error", "message": err.message}}
    else:
        body = err.body()
    return Response(orjson.dumps(body), status_code=err.status, media_type="application/json", headers=err.headers)
