"""What every backend shares; a backend module overrides only what its upstream does differently.

The hooks, in the order serving.py calls them for a translated `POST /v1/responses`:
  1. take_extras(body)        backend fields popped off the Responses request (sampling pins applied)
  2. translate.responses_to_chat(body, options)   (not a hook: the translation core)
  3. prepare_chat(chat)       last touches on the chat request (extras, template kwargs, pins; Azure's quirks)
  4. before_chat(up, t)       a step that needs the upstream (vLLM: echoed token ids -> prompt ids)
  5. chat_url(chat)           where it goes
A relayed request (chat completions; Responses on a native backend) gets prepare_chat or
prepare_responses, then the upstream. Replies and errors: the upstream calls `error` for a non-200 and
`reply_error` for a 200 that carries an error (upstream.ErrorMap); readiness calls `probe`.
POST /v1/responses/input_tokens and /compact: relayed where `responses_routes` lists them, else counted
by a `count_tokens` method (vLLM, after hooks 1-4) or refused (serving.py).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import httpx
import orjson

from ..config import ConfigError, Settings, client_params
from ..endpoints import Endpoint
from ..errors import APIError, invalid
from ..policy import Policy
from ..replicas import dns_discovery
from ..translate import ChatRequest, TranslateOptions
from ..translate.seal import Sealer
from ..upstream import Fallback, Reply, Upstream, replica_set
from ..upstream_errors import redact, upstream_error

log = logging.getLogger("modelyard")

# OpenAI's routes under /v1/responses beside the stored-response ones: count input tokens, compact.
NATIVE_ROUTES = frozenset({"input_tokens", "compact"})


class Backend:
    name: ClassVar[str] = "base"
    chat_path: ClassVar[str] = "/chat/completions"
    models_path: ClassVar[str] = "/models"
    responses_path: ClassVar[str] = "/responses"
    # Set where the upstream serves the Responses API itself and we relay it as it is (a backend may
    # set it per instance, from its settings).
    native_responses: bool = False
    # Set where the upstream also keeps responses: GET/DELETE /v1/responses/{id}, cancel, input_items.
    stored_responses: bool = False
    # The routes under /responses the upstream serves itself (NATIVE_ROUTES: input_tokens, compact),
    # relayed as they are. Elsewhere input_tokens is counted by `count_tokens` where the backend has one
    # (vLLM), and compact is refused.
    responses_routes: frozenset[str] = frozenset()
    # Set where the upstream renders a chat template (vLLM, NIM): a Responses request may carry
    # `chat_template_kwargs`, at the top level or as NeMo Gym does, JSON in metadata.chat_template_kwargs.
    engine_extras: ClassVar[bool] = False
    # Set where MODELYARD_UPSTREAM_URL may list several engine replicas (self-hosted engines).
    replicas_supported: ClassVar[bool] = False
    tokenizer_endpoints: ClassVar[bool] = False  # the engine has /tokenize and /detokenize at its root (tokenize.py)

    def __init__(self, settings: Settings) -> None:
        if len(settings.upstream_urls) > 1 and not self.replicas_supported:
            n = len(settings.upstream_urls)
            raise ConfigError(f"MODELYARD_UPSTREAM_URL lists {n} URLs: the {self.name} backend takes one")
        self.settings = settings
        self.options = self.translate_options()
        self._pin_logged = False

    # -- what goes upstream ------------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        key = self.settings.api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    def params(self) -> dict[str, str]:
        return {}

    def translate_options(self) -> TranslateOptions:
        s = self.settings
        return TranslateOptions(
            tolerate_params=s.tolerate_params | client_params(s.clients),
            developer_role=s.developer_role,
            context_overflow="incomplete" if s.context_overflow == "incomplete" else "error",
            reasoning_history=s.reasoning_history,
            # With a reasoning parser upstream, content is only ever content.
            think_tags=None if s.uses_reasoning_parser else s.think_tags,
            sealer=Sealer(s.seal_keys) if s.seal_keys else _process_sealer(),
            force_tool_choice=s.force_tool_choice,
        )

    def base_url(self) -> str:
        return self.settings.upstream_url

    def auth(self) -> httpx.Auth | None:
        """A per-request auth hook (Azure's Entra ID token file); None: the headers say it all."""
        return None

    def make_upstream(self, transport: httpx.AsyncBaseTransport | None = None) -> Upstream:
        """The upstream client: one endpoint, or several engine replicas (docs/replicas.md), each probed
        with this backend's `probe` and mapping errors with its `error` and `reply_error`."""
        s = self.settings
        conn = {
            "headers": self.headers(),
            "params": self.params(),
            "connect_timeout": s.connect_timeout,
            "read_timeout": s.read_timeout,
            "max_connections": s.max_connections,
            "transport": transport,
            "auth": self.auth(),
        }
        common = {"policy": Policy.from_settings(s), "name": self.name, "errors": self}
        if len(s.upstream_urls) > 1 or (s.dynamic_replicas and self.replicas_supported):
            dns = s.upstream_dns
            return replica_set(
                () if dns else s.upstream_urls,
                probe=self.probe,
                probe_interval=s.replica_probe_interval,
                session_table_size=s.session_table_size,
                rebalance_factor=s.rebalance_factor,
                discover=dns_discovery(dns) if dns else (_none if s.dynamic_replicas else None),
                **conn,
                **common,
            )
        return Upstream(self.base_url(), probe=self.probe, readiness_ttl=s.readiness_ttl, **conn, **common)

    def make_fallback(self, transport: httpx.AsyncBaseTransport | None = None) -> Fallback | None:
        """The fallback backend (MODELYARD_FALLBACK_URL), an OpenAI-compatible chat upstream, or None."""
        s = self.settings
        if not s.fallback_url:
            return None
        headers = {"authorization": f"Bearer {s.fallback_api_key}"} if s.fallback_api_key else {}
        up = Upstream(
            s.fallback_url, headers=headers, connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
            transport=transport, policy=Policy.from_settings(s), name=f"{self.name}-{s.fallback_name}", errors=self,
        )  # fmt: skip
        return Fallback(s.fallback_name, up, s.fallback_model)

    def chat_url(self, body: dict[str, Any]) -> str:
        """The chat completions path for this request (Azure's dated form names the deployment in it)."""
        return self.chat_path

    def prepare_responses(self, body: dict[str, Any]) -> None:
        """Last touches on a Responses request relayed natively (a backend's quirks, refusals)."""

    def take_extras(self, body: dict[str, Any]) -> dict[str, Any]:
        """Backend-specific fields popped from a Responses request before translation, set on the chat request."""
        # Pinned sampling shows in the Response's echo of temperature and top_p too.
        self.pin_sampling(body, ("temperature", "top_p"))
        if not self.engine_extras:
            return {}
        kwargs: dict[str, Any] = {}
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("chat_template_kwargs"), str):
            kwargs.update(_json_object(metadata["chat_template_kwargs"], "metadata.chat_template_kwargs"))
        given = body.pop("chat_template_kwargs", None)
        if given is not None:
            if not isinstance(given, dict):
                raise invalid("Invalid type for 'chat_template_kwargs': expected an object.", "chat_template_kwargs")
            kwargs.update(given)
        return {"chat_template_kwargs": kwargs} if kwargs else {}

    async def before_chat(self, upstream: Upstream, chat: ChatRequest) -> None:
        """Last step before a translated chat request goes upstream, where it needs the upstream (vLLM)."""

    def pin_sampling(self, body: dict[str, Any], only: tuple[str, ...] | None = None) -> None:
        """Put the configured sampling_overrides on `body`, over what it says (logged the first time)."""
        pins = self.settings.sampling_overrides
        if only is not None:
            pins = {k: v for k, v in pins.items() if k in only}
        if not pins:
            return
        changed = {k: body.get(k) for k, v in pins.items() if body.get(k) != v}
        body.update(pins)
        if changed and not self._pin_logged:
            self._pin_logged = True
            log.info(
                "sampling_overrides pin %s over what requests ask (first seen: %s); logged once",
                self.settings.sampling_overrides,
                changed,
                extra={"backend": self.name},
            )

    # -- what comes back ---------------------------------------------------------------------
    def secrets(self) -> list[str]:
        return [self.settings.api_key, self.settings.fallback_api_key]

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

    def error(self, status: int, content: bytes | dict[str, Any]) -> APIError:
        """An upstream error in OpenAI's format, with any key the upstream echoed taken out."""
        return upstream_error(status, content, self.secrets())

    def reply_error(self, reply: Reply) -> APIError | None:
        """An error an upstream sent with status 200 (OpenRouter does, once a model has started)."""
        return None

    @staticmethod
    def loads(content: bytes | dict[str, Any]) -> Any:
        if isinstance(content, dict):
            return content
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            return None

    def prepare_chat(self, body: dict[str, Any]) -> None:
        """Last touches on a chat request before it goes upstream (configured extras)."""
        if self.settings.extra_body:
            for key, value in self.settings.extra_body.items():
                body.setdefault(key, value)
        if self.settings.chat_template_kwargs:
            body["chat_template_kwargs"] = {
                **self.settings.chat_template_kwargs,
                **(body.get("chat_template_kwargs") or {}),
            }
        self.pin_sampling(body)  # last: the pins win over the request and over extra_body

    # -- readiness ---------------------------------------------------------------------------
    async def probe(self, endpoint: Endpoint) -> tuple[bool, str]:
        """Is the upstream able to serve? Default: the model list, which costs nothing. Readiness calls it
        (cached for MODELYARD_READINESS_TTL) or, with replicas, each replica's background probe."""
        resp = await endpoint.request("GET", self.models_path)
        if resp.status_code == 200:
            return True, f"GET {self.models_path} -> 200"
        err = self.error(resp.status_code, resp.content)
        return (
            False,
            f"GET {endpoint.base_url}{self.models_path} -> {resp.status_code}: {err.message}{_hint(resp.status_code)}",
        )


async def _none() -> list[str]:
    """Discovery for a set open to registration alone: no DNS members."""
    return []


def _hint(status: int) -> str:
    """What an operator does about a probe's failing status."""
    hints = {
        401: " (the key is wrong or missing: policy_api_key in env.yaml)",
        403: " (the key may not use this model or endpoint)",
        404: " (the URL is wrong: policy_base_url should end in /v1)",
    }
    return hints.get(status, "")


def _json_object(raw: str, param: str) -> dict[str, Any]:
    value = Backend.loads(raw.encode())
    if not isinstance(value, dict):
        raise invalid(f"Invalid '{param}': expected a JSON object in the string.", param)
    return value


_SEALER: list[Sealer] = []


def _process_sealer() -> Sealer:
    """Without MODELYARD_SEAL_KEYS: one random key per process (sealed reasoning does not survive a
    restart, and is not opened by another worker or replica)."""
    if not _SEALER:
        log.info("MODELYARD_SEAL_KEYS is not set: reasoning is sealed under a per-process key")
        _SEALER.append(Sealer.random())
    return _SEALER[0]
