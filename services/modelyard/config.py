"""Adapter settings, read once from the environment (rendered from env.yaml by scripts/render-env).

Each setting is declared once, as a field: `setting(VAR, kind, default, doc=...)` names its variable,
how its text is read (modelyard.kinds), its default and what it means. `Settings.from_env` reads every
declared field; an unset or empty variable is the default. The same declarations drive the rest:
scripts/render-env (tools/render_env) takes a setting with `env_yaml` from that env.yaml section, and
scripts/sync-settings writes compose.yaml's adapter variables and docs/settings.md from them (a unit
test checks both are current). docs/architecture.md, "Where a new setting goes", has an example.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, TypeVar

from .errors import APIError
from .kinds import Invalid, Kind, flag, integer, json_object, names, number, one_of, string_map, text, think_tags

T = TypeVar("T")
ENGINES = ("vllm", "nim")  # the adapters in front of an engine that renders the chat template


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    var: str  # the adapter's environment variable
    kind: Kind
    doc: str
    # The env.yaml key: "section" (the key is the field's name) or "section.key"; "": not in env.yaml.
    env_yaml: str = ""
    backends: tuple[str, ...] = ()  # the adapters that use it; (): every one
    # The .env variable compose hands on as `var`, where it differs (one .env serves every adapter).
    dotenv: str = ""
    secret: bool = False
    from_file: bool = False  # or from the file VAR_FILE names (compose secrets)
    # The compose stack's value where the setting is left unset (a path in the stack's own volume, say);
    # "": the adapter's default. It is the one place such a value is written: sync-settings copies it.
    stack_default: str = ""


def setting(
    var: str,
    kind: Kind,
    default: Any,
    *,
    doc: str,
    env_yaml: str = "",
    backends: tuple[str, ...] = (),
    dotenv: str = "",
    secret: bool = False,
    from_file: bool = False,
    stack_default: str = "",
) -> Any:
    """A dataclass field declaring one setting (see the module docstring)."""
    meta = {"setting": Setting(var, kind, doc, env_yaml, backends, dotenv, secret, from_file, stack_default)}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


def declared(cls: type) -> Iterator[tuple[Field[Any], Setting]]:
    for f in fields(cls):
        if "setting" in f.metadata:
            yield f, f.metadata["setting"]


def read(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """The declared fields of `cls` whose variable is set, read from env."""
    values = {}
    for f, spec in declared(cls):
        raw = (_secret(env, spec.var) if spec.from_file else env.get(spec.var, "")).strip()
        if raw == "":
            continue
        try:
            values[f.name] = spec.kind.parse(raw)
        except Invalid:
            shown = "" if spec.secret else f", got {raw!r}"
            raise ConfigError(f"{spec.var} must be {spec.kind.expected}{shown}") from None
    return values


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


# Client profiles (MODELYARD_CLIENTS, docs/agent-harnesses.md): what each agent harness sends on every
# request that this stack cannot honour on every backend, dropped and named in x-modelyard-dropped-params.
CLIENT_PROFILES: dict[str, frozenset[str]] = {
    # web_search (and any other hosted tool) in `tools`; `text.verbosity` where the backend has none.
    "codex": frozenset({"tools.type", "text.verbosity"}),
    # /v1/messages: `context_management` (clear_thinking edits) on every request; nothing to clear here.
    "claude-code": frozenset({"context_management"}),
}


def _client_names(raw: str) -> frozenset[str]:
    chosen = frozenset(n.strip() for n in raw.split(",") if n.strip())
    if not chosen <= CLIENT_PROFILES.keys():
        raise Invalid("client profile names")
    return chosen


def _names_text(value: Any) -> str:
    return ",".join(sorted(value)) if not isinstance(value, str) else value


def _seal_keys(raw: str) -> tuple[bytes, ...]:
    from .translate.seal import parse_keys

    try:
        return parse_keys(raw)
    except ValueError:
        raise Invalid("keys") from None


def _keys_text(value: Any) -> str:
    return value if isinstance(value, str) else ",".join(k.hex() for k in value)


def client_params(clients: frozenset[str]) -> frozenset[str]:
    """The params the named client profiles drop."""
    return frozenset().union(*(CLIENT_PROFILES[c] for c in clients))


def _modes(default: str) -> Kind:
    """MODELYARD_RESPONSES_MODE: relay /v1/responses to the upstream's own (native) or translate it."""
    return one_of(default, *(m for m in ("native", "translate") if m != default))


class _ResponsesMode:
    """For a backend whose settings declare `responses_mode` (each with its own default)."""

    responses_mode: str

    @property
    def native_responses(self) -> bool:
        return self.responses_mode == "native"


# ---------------------------------------------------------------- per-backend settings


@dataclass(frozen=True)
class NimSettings(_ResponsesMode):
    responses_mode: str = setting(
        "MODELYARD_RESPONSES_MODE",
        _modes("translate"),
        "translate",
        doc="native: NIM 2.x's own /v1/responses instead of the translation core over chat (docs/nim.md)",
        env_yaml="nim",
        dotenv="NIM_RESPONSES_MODE",
    )


@dataclass(frozen=True)
class OpenAISettings:
    organization: str = setting("OPENAI_ORGANIZATION", text, "", doc="sent as openai-organization", env_yaml="openai")
    project: str = setting("OPENAI_PROJECT", text, "", doc="sent as openai-project", env_yaml="openai")


@dataclass(frozen=True)
class AzureSettings(_ResponsesMode):
    api_version: str = setting(
        "AZURE_OPENAI_API_VERSION",
        text,
        "",
        doc="the api-version query parameter (dated URLs default to 2025-04-01-preview)",
        env_yaml="azure",
    )
    url_style: str = setting(
        "AZURE_OPENAI_URL_STYLE", one_of("v1", "dated"), "v1", doc="v1 or dated URLs (docs/azure.md)", env_yaml="azure"
    )
    deployment: str = setting(
        "AZURE_OPENAI_DEPLOYMENT", text, "", doc="the deployment every request goes to", env_yaml="azure"
    )
    deployment_map: dict[str, str] = setting(
        "AZURE_OPENAI_DEPLOYMENT_MAP", string_map, {}, doc="model name -> deployment", env_yaml="azure"
    )
    reasoning_deployments: frozenset[str] = setting(
        "AZURE_OPENAI_REASONING_DEPLOYMENTS",
        names,
        frozenset(),
        doc="deployments that take max_completion_tokens (besides o* and gpt-5*)",
        env_yaml="azure",
    )
    responses_mode: str = setting(
        "MODELYARD_RESPONSES_MODE",
        _modes("native"),
        "native",
        doc="translate: a chat-only deployment, /v1/responses through the translation core",
        env_yaml="azure",
        dotenv="AZURE_OPENAI_RESPONSES_MODE",
    )
    ad_token: str = setting(
        "AZURE_OPENAI_AD_TOKEN", text, "", doc="an Entra ID token (wins over the key)", env_yaml="azure", secret=True
    )
    ad_token_file: str = setting(
        "AZURE_OPENAI_AD_TOKEN_FILE",
        text,
        "",
        doc="a file holding the Entra ID token, read again when it changes",
        env_yaml="azure",
    )


@dataclass(frozen=True)
class OpenRouterSettings(_ResponsesMode):
    http_referer: str = setting(
        "OPENROUTER_HTTP_REFERER", text, "", doc="sent as http-referer (attribution)", env_yaml="openrouter"
    )
    x_title: str = setting("OPENROUTER_X_TITLE", text, "", doc="sent as x-title (attribution)", env_yaml="openrouter")
    responses_mode: str = setting(
        "MODELYARD_RESPONSES_MODE",
        _modes("translate"),
        "translate",
        doc="native: OpenRouter's stateless Responses endpoint instead of the translation core",
        env_yaml="openrouter",
        dotenv="OPENROUTER_RESPONSES_MODE",
    )


BACKEND_SETTINGS: dict[str, type] = {
    "nim": NimSettings,
    "openai": OpenAISettings,
    "azure": AzureSettings,
    "openrouter": OpenRouterSettings,
}


# ---------------------------------------------------------------- every adapter's settings

ADAPTER = "adapter"  # the env.yaml section of the settings every adapter takes
GENERATION = "generation"  # ... and of those the vLLM and NIM adapters take (NeMo Gym's vllm_model names)


@dataclass(frozen=True)
class Settings:
    backend: str
    upstream_url: str  # the first of upstream_urls
    api_key: str = field(default="", repr=False)  # MODELYARD_UPSTREAM_API_KEY(_FILE); never printed
    # Several engine replicas (docs/replicas.md): MODELYARD_UPSTREAM_URL lists them, comma-separated.
    upstream_urls: tuple[str, ...] = ()
    model: str = setting(
        "MODELYARD_MODEL",
        text,
        "",
        doc="the pinned policy model (empty: whatever the client asks for); env.yaml: `policy_model_name`",
        dotenv="POLICY_MODEL_NAME",
    )
    model_policy: str = setting(
        "MODELYARD_MODEL_POLICY",
        one_of("validate", "override"),
        "validate",
        doc="a request for another model: validate (a 404) or override (rewritten to the pinned one)",
        env_yaml=ADAPTER,
    )
    connect_timeout: float = setting(
        "MODELYARD_CONNECT_TIMEOUT", number(), 5.0, doc="seconds to connect", env_yaml=ADAPTER
    )
    read_timeout: float = setting(
        "MODELYARD_READ_TIMEOUT",
        number(),
        600.0,
        doc="longest silence while reading a reply (a stall mid-stream ends it)",
        env_yaml=ADAPTER,
    )
    max_connections: int = setting(
        "MODELYARD_MAX_CONNECTIONS", integer(1), 1000, doc="upstream connections kept open", env_yaml=ADAPTER
    )
    port: int = setting("MODELYARD_PORT", integer(1), 8000, doc="the port the adapter listens on")
    workers: int = setting("MODELYARD_WORKERS", integer(1), 1, doc="uvicorn worker processes", env_yaml=ADAPTER)
    keep_alive: int = setting(
        "MODELYARD_KEEP_ALIVE",
        integer(1),
        75,
        doc="seconds an idle client connection stays open (above the gateway's 60 s, so the gateway closes it first)",
        env_yaml=ADAPTER,
    )
    log_level: str = setting(
        "MODELYARD_LOG_LEVEL",
        one_of("debug", "info", "warning", "error", "critical", fold=True),
        "info",
        doc="the adapter's log level",
        env_yaml=ADAPTER,
    )
    readiness_ttl: float = setting(
        "MODELYARD_READINESS_TTL", number(), 2.0, doc="seconds a readiness probe's answer is reused", env_yaml=ADAPTER
    )
    shutdown_grace: float = setting(
        "MODELYARD_SHUTDOWN_GRACE",
        number(),
        30.0,
        doc="seconds running requests get after SIGTERM (uvicorn's graceful-shutdown timeout); new ones get a 503",
        env_yaml=ADAPTER,
    )
    # Bad input (docs/reliability.md): the largest body, and the most input items/messages and tools.
    max_body_bytes: int = setting(
        "MODELYARD_MAX_BODY_BYTES",
        integer(0),
        32 * 1024 * 1024,
        doc="largest request body; over it a 413 `request_too_large` (checked on `Content-Length` before "
        "reading); 0 = none",
        env_yaml=ADAPTER,
    )
    max_input_items: int = setting(
        "MODELYARD_MAX_INPUT_ITEMS",
        integer(0),
        10_000,
        doc="most Responses `input` items / chat `messages`; over it a 400 `array_above_max_length`; 0 = none",
        env_yaml=ADAPTER,
    )
    max_tools: int = setting(
        "MODELYARD_MAX_TOOLS", integer(0), 512, doc="most `tools` in one request; 400 above; 0 = none", env_yaml=ADAPTER
    )
    # The upstream path (policy.py, docs/reliability.md): total timeout, retries, limits, breaker.
    total_timeout: float = setting(
        "MODELYARD_TOTAL_TIMEOUT",
        number(),
        1800.0,
        doc="request start to reply (a stream: to its first byte), retries included; 0 = none",
        env_yaml=ADAPTER,
    )
    retries: int = setting(
        "MODELYARD_RETRIES", integer(0), 3, doc="attempts after the first; 0 = no retries", env_yaml=ADAPTER
    )
    retry_backoff_base: float = setting(
        "MODELYARD_RETRY_BACKOFF_BASE",
        number(),
        0.25,
        doc="seconds, doubled per retry, fully jittered",
        env_yaml=ADAPTER,
    )
    retry_backoff_max: float = setting(
        "MODELYARD_RETRY_BACKOFF_MAX", number(), 8.0, doc="cap of one backoff", env_yaml=ADAPTER
    )
    retry_after_max: float = setting(
        "MODELYARD_RETRY_AFTER_MAX",
        number(),
        30.0,
        doc="longest `Retry-After` waited out; longer ones go to the client",
        env_yaml=ADAPTER,
    )
    retry_budget_ratio: float = setting(
        "MODELYARD_RETRY_BUDGET_RATIO", number(), 0.2, doc="retries per request over the window", env_yaml=ADAPTER
    )
    retry_budget_min: float = setting(
        "MODELYARD_RETRY_BUDGET_MIN",
        number(),
        10.0,
        doc="retries per second always allowed (a quiet adapter still retries)",
        env_yaml=ADAPTER,
    )
    retry_budget_window: float = setting(
        "MODELYARD_RETRY_BUDGET_WINDOW", number(), 10.0, doc="seconds the retry budget looks back", env_yaml=ADAPTER
    )
    max_concurrency: int = setting(
        "MODELYARD_MAX_CONCURRENCY",
        integer(0),
        1000,
        doc="generation requests in flight upstream; 0 = unlimited",
        env_yaml=ADAPTER,
    )
    queue_size: int = setting(
        "MODELYARD_QUEUE_SIZE", integer(0), 4000, doc="requests waiting for a slot before 429", env_yaml=ADAPTER
    )
    queue_timeout: float = setting(
        "MODELYARD_QUEUE_TIMEOUT",
        number(),
        300.0,
        doc="seconds a request may wait for a slot; 0 = up to the total timeout",
        env_yaml=ADAPTER,
    )
    breaker_failures: int = setting(
        "MODELYARD_BREAKER_FAILURES",
        integer(0),
        5,
        doc="consecutive failures that open the circuit; 0 = no breaker",
        env_yaml=ADAPTER,
    )
    breaker_cooldown: float = setting(
        "MODELYARD_BREAKER_COOLDOWN", number(), 10.0, doc="seconds open before a probe", env_yaml=ADAPTER
    )
    tolerate_params: frozenset[str] = setting(
        "MODELYARD_TOLERATE_PARAMS",
        names,
        frozenset(),
        doc="request params to drop and name in a header instead of refusing them (docs/responses-api.md)",
        env_yaml=ADAPTER,
    )
    # Agent harnesses (docs/agent-harnesses.md).
    clients: frozenset[str] = setting(
        "MODELYARD_CLIENTS",
        Kind(_client_names, f"client profile names ({', '.join(sorted(CLIENT_PROFILES))})", _names_text),
        frozenset(),
        doc="client profiles (codex, claude-code): what each agent harness sends that this backend cannot "
        "honour, dropped and named in x-modelyard-dropped-params (docs/agent-harnesses.md)",
        env_yaml=ADAPTER,
    )
    seal_keys: tuple[bytes, ...] = setting(
        "MODELYARD_SEAL_KEYS",
        Kind(_seal_keys, "comma-separated 32-byte keys, base64 or 64 hex digits", _keys_text),
        (),
        doc="keys sealing reasoning for include reasoning.encrypted_content (AES-256-GCM): the first seals, all "
        "open; empty: a random key per process (or MODELYARD_SEAL_KEYS_FILE, a file holding them)",
        secret=True,
        from_file=True,
        env_yaml=ADAPTER,
    )
    force_tool_choice: str = setting(
        "MODELYARD_FORCE_TOOL_CHOICE",
        text,
        "",
        doc="required, auto, none or tool names (comma-separated: the first one offered), forced on a turn's first "
        "step (tests with models too small to choose a tool); empty: the client's choice",
        env_yaml=ADAPTER,
    )
    context_overflow: str = setting(
        "MODELYARD_CONTEXT_OVERFLOW",
        one_of("error", "incomplete"),
        "error",
        doc="an input too long for the model: error (a 400, OpenAI's behaviour) or incomplete (an `incomplete` "
        "Response with no output, NeMo Gym's)",
        env_yaml=ADAPTER,
    )
    # How the vLLM and NIM adapters shape requests and read replies (docs/rl-token-data.md).
    chat_template_kwargs: dict[str, Any] = setting(
        "MODELYARD_CHAT_TEMPLATE_KWARGS",
        json_object,
        {},
        doc="passed to the engine's chat template (JSON)",
        env_yaml=GENERATION,
        backends=ENGINES,
    )
    extra_body: dict[str, Any] = setting(
        "MODELYARD_EXTRA_BODY",
        json_object,
        {},
        doc="merged into every engine request (JSON)",
        env_yaml=GENERATION,
        backends=ENGINES,
    )
    developer_role: str = setting(
        "MODELYARD_DEVELOPER_ROLE",
        one_of("system", "developer"),
        "system",
        doc="the chat role a Responses `developer` message becomes",
        env_yaml=f"{GENERATION}.replace_developer_role_with_system",
        backends=ENGINES,
    )
    return_token_ids: bool = setting(
        "MODELYARD_RETURN_TOKEN_IDS",
        flag,
        False,
        doc="prompt/generation token ids and logprobs on Responses output (RL token data)",
        env_yaml=f"{GENERATION}.return_token_id_information",
        backends=("vllm",),
    )
    uses_reasoning_parser: bool | None = setting(
        "MODELYARD_USES_REASONING_PARSER",
        flag,
        None,
        doc="true: the engine's reasoning field is the only reasoning; false: reasoning comes in content "
        "between the think tags; unset: either, whichever the reply has",
        env_yaml=GENERATION,
        backends=ENGINES,
    )
    think_tags: tuple[str, str] = setting(
        "MODELYARD_THINK_TAGS",
        think_tags,
        ("<think>", "</think>"),
        doc="the two tags around reasoning in content (a JSON array, or two words)",
        env_yaml=GENERATION,
        backends=ENGINES,
    )
    reasoning_history: str = setting(
        "MODELYARD_REASONING_HISTORY",
        one_of("send", "drop"),
        "drop",
        doc="earlier turns' reasoning items: send (interleaved) or drop",
        env_yaml=GENERATION,
        backends=ENGINES,
    )
    sampling_overrides: dict[str, Any] = setting(
        "MODELYARD_SAMPLING_OVERRIDES",
        json_object,
        {},
        doc="sampling params pinned on every engine request, over what the client sent (on-policy RL; JSON)",
        env_yaml=GENERATION,
        backends=ENGINES,
    )
    replica_probe_interval: float = setting(
        "MODELYARD_REPLICA_PROBE_INTERVAL",
        number(),
        2.0,
        doc="seconds between health probes of each replica (docs/replicas.md)",
        env_yaml=ADAPTER,
        backends=ENGINES,
    )
    # Replicas that come and go (docs/fleet.md).
    upstream_dns: str = setting(
        "MODELYARD_UPSTREAM_DNS",
        text,
        "",
        doc="a URL whose host name's addresses are the replicas, re-resolved every probe interval (when "
        "MODELYARD_UPSTREAM_URL is empty)",
        backends=ENGINES,
        env_yaml=ADAPTER,
    )
    dynamic_replicas: bool = setting(
        "MODELYARD_DYNAMIC_REPLICAS",
        flag,
        False,
        doc="the replica set is open to registration (POST /admin/replicas) even with one URL; on with "
        "MODELYARD_UPSTREAM_DNS",
        backends=ENGINES,
        env_yaml=ADAPTER,
    )
    rebalance_factor: float = setting(
        "MODELYARD_REBALANCE_FACTOR",
        number(),
        4.0,
        doc="a session moves when its replica is this many times busier; 0 = never",
        backends=ENGINES,
        env_yaml=ADAPTER,
    )
    admin_key: str = setting(
        "MODELYARD_ADMIN_KEY",
        text,
        "",
        doc="the x-modelyard-admin-key for /admin/* (empty: no admin API; or MODELYARD_ADMIN_KEY_FILE, a file "
        "holding it)",
        secret=True,
        from_file=True,
        env_yaml=ADAPTER,
    )
    # A fallback backend for generations the policy backend cannot take (docs/fleet.md; off by default).
    fallback_url: str = setting(
        "MODELYARD_FALLBACK_URL",
        Kind(lambda raw: raw.rstrip("/"), "a base URL"),
        "",
        doc="the fallback backend's base URL (empty: no fallback)",
        env_yaml=ADAPTER,
    )
    fallback_api_key: str = setting(
        "MODELYARD_FALLBACK_API_KEY",
        text,
        "",
        doc="the fallback backend's key (or MODELYARD_FALLBACK_API_KEY_FILE, a file holding it)",
        secret=True,
        from_file=True,
        env_yaml=ADAPTER,
    )
    fallback_model: str = setting(
        "MODELYARD_FALLBACK_MODEL", text, "", doc="the model asked of the fallback", env_yaml=ADAPTER
    )
    fallback_name: str = setting(
        "MODELYARD_FALLBACK_NAME", text, "fallback", doc="the fallback's name in metrics and headers", env_yaml=ADAPTER
    )
    session_table_size: int = setting(
        "MODELYARD_SESSION_TABLE_SIZE",
        integer(0),
        100_000,
        doc="`x-session-id` -> replica entries kept, least recently used dropped first",
        env_yaml=ADAPTER,
        backends=ENGINES,
    )
    # Stored responses (docs/state.md): where ("" = nothing stored), stored unless a request says
    # store: false, and how long objects are kept.
    store_url: str = setting(
        "MODELYARD_STORE_URL",
        text,
        "",
        doc="where responses are stored: sqlite://PATH or postgresql://... (empty: nothing stored; or "
        "MODELYARD_STORE_URL_FILE, a file holding it)",
        secret=True,  # a Postgres URL may carry a password
        from_file=True,
        env_yaml=ADAPTER,
        stack_default="sqlite:////var/lib/modelyard/store.db",
    )
    store_default: bool = setting(
        "MODELYARD_STORE_DEFAULT",
        flag,
        True,
        doc="a response is stored unless its request says store: false",
        env_yaml=ADAPTER,
    )
    native_state: str = setting(
        "MODELYARD_NATIVE_STATE",
        one_of("provider", "local"),
        "provider",
        doc="a native Responses backend's stored responses and chains: provider (OpenAI's or Azure's own store, "
        "relayed) or local (the local store, as for translated backends; needs MODELYARD_STORE_URL); OpenRouter "
        "native mode uses the local store whenever one is set",
        env_yaml=ADAPTER,
        backends=("openai", "azure", "openrouter"),
    )
    store_ttl: float = setting(
        "MODELYARD_STORE_TTL",
        number(),
        30 * 24 * 3600.0,
        doc="seconds stored objects are kept; 0 = until deleted",
        env_yaml=ADAPTER,
    )
    # Per-rollout capture and per-key usage (docs/capture-and-usage.md).
    capture: bool = setting(
        "MODELYARD_CAPTURE", flag, False, doc="capture each call (per-rollout capture)", env_yaml=ADAPTER
    )
    capture_ttl: float = setting(
        "MODELYARD_CAPTURE_TTL",
        number(),
        7 * 24 * 3600.0,
        doc="seconds captured calls are kept; 0 = until deleted",
        env_yaml=ADAPTER,
    )
    quotas: str = setting(
        "MODELYARD_QUOTAS",
        Kind(_quotas, "quotas as JSON (docs/capture-and-usage.md)"),
        "",
        doc='quotas per key id, JSON: {"<key id or *>": {"requests_per_minute" | "tokens_per_day" | ...: n}}',
        env_yaml=ADAPTER,
    )
    ws_idle_timeout: float = setting(
        "MODELYARD_WS_IDLE_TIMEOUT",
        number(),
        600.0,
        doc="seconds a WebSocket session (/v1/responses WebSocket mode) may go without a message before it is closed",
        env_yaml=ADAPTER,
    )
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # the environment it was read from
    # This backend's own settings (BACKEND_SETTINGS), or None for a backend without any.
    backend_settings: Any = None

    @classmethod
    def from_env(cls, backend: str, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        values = read(cls, env)
        # A DNS name stands in for the URL list; its replicas come and go, so the set is dynamic.
        dns = values.get("upstream_dns", "")
        urls = _urls(env.get("MODELYARD_UPSTREAM_URL", "") or dns, backend)
        values["dynamic_replicas"] = values.get("dynamic_replicas", False) or bool(dns)
        if values.get("return_token_ids"):
            for name in ("extra_body", "sampling_overrides"):
                extra = values.get(name, {})
                if extra.get("n") not in (None, 1):
                    var = f"MODELYARD_{name.upper()}"
                    raise ConfigError(f"{var} sets n={extra['n']!r}: token ids (MODELYARD_RETURN_TOKEN_IDS) need n=1")
        if values.get("native_state") == "local" and not values.get("store_url"):
            raise ConfigError("MODELYARD_NATIVE_STATE=local needs a store: set MODELYARD_STORE_URL")
        own = BACKEND_SETTINGS.get(backend)
        return cls(
            backend=backend,
            upstream_url=urls[0],
            upstream_urls=urls,
            api_key=_secret(env, "MODELYARD_UPSTREAM_API_KEY"),
            env=env,
            backend_settings=own(**read(own, env)) if own else None,
            **values,
        )

    def of(self, cls: type[T]) -> T:
        """A backend's own settings (cls, one of BACKEND_SETTINGS), read from the same environment."""
        own = self.backend_settings
        return own if isinstance(own, cls) else cls(**read(cls, self.env))

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


def table() -> Iterator[tuple[str, Setting]]:
    """Every declared setting with the adapters that use it: Settings' first, then each backend's."""
    for f, spec in declared(Settings):
        yield f.name, spec
    for backend, cls in BACKEND_SETTINGS.items():
        for f, spec in declared(cls):
            yield f.name, Setting(**{**spec.__dict__, "backends": (backend,)})
