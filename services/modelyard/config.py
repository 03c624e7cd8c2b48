"""Adapter settings, read once from the environment (rendered from env.yaml by scripts/render-env)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import APIError


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _nonneg(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _json_object(env: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = env.get(name, "")
    if raw == "":
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def _think_tags(env: Mapping[str, str]) -> tuple[str, str]:
    """MODELYARD_THINK_TAGS: a JSON array of the two tags, or the two tags separated by whitespace."""
    raw = env.get("MODELYARD_THINK_TAGS", "").strip()
    if raw == "":
        return ("<think>", "</think>")
    tags: Any = raw.split()
    if raw.startswith("["):
        try:
            tags = json.loads(raw)
        except ValueError:
            tags = None
    if not (isinstance(tags, list) and len(tags) == 2 and all(isinstance(t, str) and t.strip() for t in tags)):
        raise ConfigError(f'MODELYARD_THINK_TAGS must be two tags, such as ["<think>", "</think>"], got {raw!r}')
    return (tags[0], tags[1])


def _urls(raw: str, backend: str) -> tuple[str, ...]:
    """MODELYARD_UPSTREAM_URL: one base URL, or several replicas' separated by commas."""
    urls = tuple(u.strip().rstrip("/") for u in raw.split(",") if u.strip())
    if not urls:
        raise ConfigError(f"MODELYARD_UPSTREAM_URL is required for the {backend} adapter")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"MODELYARD_UPSTREAM_URL must start with http:// or https://, got {url!r}")
    if len(set(urls)) != len(urls):
        raise ConfigError(f"MODELYARD_UPSTREAM_URL names a replica twice: {raw!r}")
    return urls


def _quotas(raw: str) -> str:
    from .usage import parse_quotas

    parse_quotas(raw)  # a bad quota is a start-up error naming it
    return raw


def _secret(env: Mapping[str, str], name: str) -> str:
    """A secret from NAME, or from the file named by NAME_FILE (compose secrets)."""
    path = env.get(f"{name}_FILE", "")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return env.get(name, "")


@dataclass(frozen=True)
class Settings:
    backend: str
    upstream_url: str  # the first of upstream_urls
    api_key: str = field(default="", repr=False)  # never printed
    model: str = ""  # the pinned policy model ("" = whatever the client asks for)
    model_policy: str = "validate"  # validate: other models get a 404; override: rewritten
    connect_timeout: float = 5.0
    read_timeout: float = 600.0
    max_connections: int = 1000
    port: int = 8000
    workers: int = 1
    log_level: str = "info"
    readiness_ttl: float = 2.0
    # Graceful shutdown: how long in-flight requests may run after SIGTERM (new ones get a 503).
    shutdown_grace: float = 30.0
    # Bad input (docs/reliability.md): the largest body, and the most input items/messages and tools.
    max_body_bytes: int = 32 * 1024 * 1024
    max_input_items: int = 10_000
    max_tools: int = 512
    # The upstream path (policy.py, docs/reliability.md): total timeout, retries, limits, breaker.
    total_timeout: float = 1800.0
    retries: int = 3
    retry_backoff_base: float = 0.25
    retry_backoff_max: float = 8.0
    retry_after_max: float = 30.0
    retry_budget_ratio: float = 0.2
    retry_budget_min: float = 10.0
    retry_budget_window: float = 10.0
    max_concurrency: int = 1000
    queue_size: int = 4000
    queue_timeout: float = 300.0
    breaker_failures: int = 5
    breaker_cooldown: float = 10.0
    tolerate_params: frozenset[str] = frozenset()
    # An input too long for the model: "error" (a 400, OpenAI's behaviour) or "incomplete" (an
    # `incomplete` Response with no output, NeMo Gym's behaviour).
    context_overflow: str = "error"
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    developer_role: str = "system"
    # RL token data (docs/rl-token-data.md): prompt/generation token ids and logprobs on Responses output.
    return_token_ids: bool = False
    # True: the engine runs a reasoning parser, its reasoning field is the only reasoning; False: reasoning
    # comes in content between think_tags; None: either, whichever the reply has.
    uses_reasoning_parser: bool | None = None
    think_tags: tuple[str, str] = ("<think>", "</think>")
    reasoning_history: str = "drop"  # earlier turns' reasoning items: "send" (interleaved) or "drop"
    # Sampling params pinned on every engine request, over what the client sent (on-policy RL).
    sampling_overrides: dict[str, Any] = field(default_factory=dict)
    # Several engine replicas (docs/replicas.md): MODELYARD_UPSTREAM_URL lists them, comma-separated.
    upstream_urls: tuple[str, ...] = ()
    replica_probe_interval: float = 2.0  # seconds between health probes of each replica
    # Replicas that come and go (docs/fleet.md): a host name whose addresses are the replicas, re-resolved
    # every probe interval; or a set open to registration (POST /admin/replicas) even with one URL.
    upstream_dns: str = ""
    dynamic_replicas: bool = False
    rebalance_factor: float = 4.0  # a session moves when its replica is this many times busier (0: never)
    admin_key: str = field(default="", repr=False)  # x-modelyard-admin-key for /admin/* ("" = no admin API)
    session_table_size: int = 100_000  # x-session-id -> replica entries kept (least recently used go)
    # Stored responses (docs/state.md): where ("" = nothing stored), stored unless a request says
    # store: false, and how long objects are kept (seconds; 0 = until deleted).
    store_url: str = field(default="", repr=False)  # a Postgres URL may carry a password
    store_default: bool = True
    store_ttl: float = 30 * 24 * 3600.0
    # Per-rollout capture and per-key usage (docs/capture-and-usage.md): capture on, how long captured calls
    # are kept (seconds; 0 = until deleted), and quotas per key id (JSON, usage.parse_quotas).
    capture: bool = False
    capture_ttl: float = 7 * 24 * 3600.0
    quotas: str = ""
    ws_idle_timeout: float = 600.0  # a WebSocket session with no message for this long is closed
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # backend-specific extras

    @classmethod
    def from_env(cls, backend: str, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        dns = env.get("MODELYARD_UPSTREAM_DNS", "").strip()
        urls = _urls(env.get("MODELYARD_UPSTREAM_URL", "") or dns, backend)
        policy = env.get("MODELYARD_MODEL_POLICY", "validate") or "validate"
        if policy not in ("validate", "override"):
            raise ConfigError(f"MODELYARD_MODEL_POLICY must be validate or override, got {policy!r}")
        role = env.get("MODELYARD_DEVELOPER_ROLE", "") or "system"
        if role not in ("system", "developer"):
            raise ConfigError(f"MODELYARD_DEVELOPER_ROLE must be system or developer, got {role!r}")
        history = env.get("MODELYARD_REASONING_HISTORY", "") or "drop"
        if history not in ("send", "drop"):
            raise ConfigError(f"MODELYARD_REASONING_HISTORY must be send or drop, got {history!r}")
        parser = env.get("MODELYARD_USES_REASONING_PARSER", "").strip()
        extra_body = _json_object(env, "MODELYARD_EXTRA_BODY")
        overrides = _json_object(env, "MODELYARD_SAMPLING_OVERRIDES")
        token_ids = _bool(env, "MODELYARD_RETURN_TOKEN_IDS", False)
        if token_ids:
            for name, extra in (("MODELYARD_EXTRA_BODY", extra_body), ("MODELYARD_SAMPLING_OVERRIDES", overrides)):
                if extra.get("n") not in (None, 1):
                    raise ConfigError(f"{name} sets n={extra['n']!r}: token ids (MODELYARD_RETURN_TOKEN_IDS) need n=1")
        tolerate = frozenset(p.strip() for p in env.get("MODELYARD_TOLERATE_PARAMS", "").split(",") if p.strip())
        overflow = env.get("MODELYARD_CONTEXT_OVERFLOW", "").strip() or "error"
        if overflow not in ("error", "incomplete"):
            raise ConfigError(f"MODELYARD_CONTEXT_OVERFLOW must be error or incomplete, got {overflow!r}")
        return cls(
            backend=backend,
            upstream_url=urls[0],
            upstream_urls=urls,
            replica_probe_interval=_float(env, "MODELYARD_REPLICA_PROBE_INTERVAL", 2.0),
            session_table_size=_count(env, "MODELYARD_SESSION_TABLE_SIZE", 100_000),
            upstream_dns=dns,
            dynamic_replicas=_bool(env, "MODELYARD_DYNAMIC_REPLICAS", False) or bool(dns),
            rebalance_factor=_nonneg(env, "MODELYARD_REBALANCE_FACTOR", 4.0),
            admin_key=_secret(env, "MODELYARD_ADMIN_KEY"),
            api_key=_secret(env, "MODELYARD_UPSTREAM_API_KEY"),
            model=env.get("MODELYARD_MODEL", ""),
            model_policy=policy,
            connect_timeout=_float(env, "MODELYARD_CONNECT_TIMEOUT", 5.0),
            read_timeout=_float(env, "MODELYARD_READ_TIMEOUT", 600.0),
            max_connections=_int(env, "MODELYARD_MAX_CONNECTIONS", 1000),
            port=_int(env, "MODELYARD_PORT", 8000),
            workers=_int(env, "MODELYARD_WORKERS", 1),
            log_level=env.get("MODELYARD_LOG_LEVEL", "info") or "info",
            readiness_ttl=_float(env, "MODELYARD_READINESS_TTL", 2.0),
            shutdown_grace=_nonneg(env, "MODELYARD_SHUTDOWN_GRACE", 30.0),
            max_body_bytes=_count(env, "MODELYARD_MAX_BODY_BYTES", 32 * 1024 * 1024),
            max_input_items=_count(env, "MODELYARD_MAX_INPUT_ITEMS", 10_000),
            max_tools=_count(env, "MODELYARD_MAX_TOOLS", 512),
            total_timeout=_nonneg(env, "MODELYARD_TOTAL_TIMEOUT", 1800.0),
            retries=_count(env, "MODELYARD_RETRIES", 3),
            retry_backoff_base=_nonneg(env, "MODELYARD_RETRY_BACKOFF_BASE", 0.25),
            retry_backoff_max=_nonneg(env, "MODELYARD_RETRY_BACKOFF_MAX", 8.0),
            retry_after_max=_nonneg(env, "MODELYARD_RETRY_AFTER_MAX", 30.0),
            retry_budget_ratio=_nonneg(env, "MODELYARD_RETRY_BUDGET_RATIO", 0.2),
            retry_budget_min=_nonneg(env, "MODELYARD_RETRY_BUDGET_MIN", 10.0),
            retry_budget_window=_nonneg(env, "MODELYARD_RETRY_BUDGET_WINDOW", 10.0),
            max_concurrency=_count(env, "MODELYARD_MAX_CONCURRENCY", 1000),
            queue_size=_count(env, "MODELYARD_QUEUE_SIZE", 4000),
            queue_timeout=_nonneg(env, "MODELYARD_QUEUE_TIMEOUT", 300.0),
            breaker_failures=_count(env, "MODELYARD_BREAKER_FAILURES", 5),
            breaker_cooldown=_nonneg(env, "MODELYARD_BREAKER_COOLDOWN", 10.0),
            tolerate_params=tolerate,
            context_overflow=overflow,
            chat_template_kwargs=_json_object(env, "MODELYARD_CHAT_TEMPLATE_KWARGS"),
            extra_body=extra_body,
            developer_role=role,
            return_token_ids=token_ids,
            uses_reasoning_parser=_bool(env, "MODELYARD_USES_REASONING_PARSER", False) if parser else None,
            think_tags=_think_tags(env),
            reasoning_history=history,
            sampling_overrides=overrides,
            store_url=_secret(env, "MODELYARD_STORE_URL"),
            store_default=_bool(env, "MODELYARD_STORE_DEFAULT", True),
            store_ttl=_nonneg(env, "MODELYARD_STORE_TTL", 30 * 24 * 3600.0),
            ws_idle_timeout=_nonneg(env, "MODELYARD_WS_IDLE_TIMEOUT", 600.0),
            capture=_bool(env, "MODELYARD_CAPTURE", False),
            capture_ttl=_nonneg(env, "MODELYARD_CAPTURE_TTL", 7 * 24 * 3600.0),
            quotas=_quotas(env.get("MODELYARD_QUOTAS", "")),
            env=env,
        )

    def check_model(self, body: dict[str, Any]) -> None:
        """Apply the model pin to a request body in place, so a rollout cannot silently hit another model."""
        if not self.model:
            return
        asked = body.get("model")
        if asked in (None, "", self.model) or self.model_policy == "override":
            body["model"] = self.model
            return
        raise APIError(
            404,
            f"The model '{asked}' is not served here: this stack is pinned to '{self.model}'.",
            param="model",
            code="model_not_found",
        )
