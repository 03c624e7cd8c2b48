"""What every backend shares; a backend module overrides only what its upstream does differently."""

from __future__ import annotations

import logging
import re
import time
from typing import Any, ClassVar

import httpx
import orjson

from ..config import ConfigError, Settings
from ..errors import APIError, invalid
from ..policy import Policy
from ..replicas import Replicas
from ..translate import ChatRequest, TranslateOptions, upstream_error
from ..upstream import Upstream

log = logging.getLogger("modelyard")

# A key as providers echo it back masked ("sk-abc*****wxyz"): never passed on to the client.
_MASKED_KEY = re.compile(r"[\w-]*\*{4,}[\w-]*")


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
    # Set where the upstream renders a chat template (vLLM, NIM): a Responses request may carry
    # `chat_template_kwargs`, at the top level or as NeMo Gym does, JSON in metadata.chat_template_kwargs.
    engine_extras: ClassVar[bool] = False
    # Set where MODELYARD_UPSTREAM_URL may list several engine replicas (self-hosted engines).
    replicas_supported: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        if len(settings.upstream_urls) > 1 and not self.replicas_supported:
            n = len(settings.upstream_urls)
            raise ConfigError(f"MODELYARD_UPSTREAM_URL lists {n} URLs: the {self.name} backend takes one")
        self.settings = settings
        self.options = self.translate_options()
        self._ready: tuple[float, bool, str] = (0.0, False, "not checked yet")
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
            tolerate_params=s.tolerate_params,
            developer_role=s.developer_role,
            context_overflow="incomplete" if s.context_overflow == "incomplete" else "error",
            reasoning_history=s.reasoning_history,
            # With a reasoning parser upstream, content is only ever content.
            think_tags=None if s.uses_reasoning_parser else s.think_tags,
        )

    def base_url(self) -> str:
        return self.settings.upstream_url

    def make_upstream(self, transport: httpx.AsyncBaseTransport | None = None) -> Upstream:
        if len(self.settings.upstream_urls) > 1:
            return self.make_replicas(transport)
        return Upstream(self.base_url(), **self._connection(transport))

    def make_replicas(self, transport: httpx.AsyncBaseTransport | None = None) -> Replicas:
        """Several engine replicas (docs/replicas.md), each probed with this backend's `probe`."""
        s = self.settings
        return Replicas(
            s.upstream_urls,
            probe=self.probe,
            probe_interval=s.replica_probe_interval,
            session_table_size=s.session_table_size,
            **self._connection(transport),
        )

    def _connection(self, transport: httpx.AsyncBaseTransport | None) -> dict[str, Any]:
        """What one upstream and a set of replicas are both built with."""
        s = self.settings
        return {
            "headers": self.headers(),
            "params": self.params(),
            "connect_timeout": s.connect_timeout,
            "read_timeout": s.read_timeout,
            "max_connections": s.max_connections,
            "transport": transport,
            "policy": Policy.from_settings(s),
            "name": self.name,
        }

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
        return [self.settings.api_key]

    def redact(self, text: str) -> str:
        for secret in self.secrets():
            if secret:
                text = text.replace(secret, "[redacted]")
        return _MASKED_KEY.sub("[redacted]", text)

    def error(self, status: int, content: bytes | dict[str, Any]) -> APIError:
        """An upstream error in OpenAI's format, with any key the upstream echoed taken out."""
        err = upstream_error(status, content, self.options)
        err.message = self.redact(err.message)
        return err

    def reply_error(self, content: bytes) -> APIError | None:
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
    async def probe(self, upstream: Upstream) -> tuple[bool, str]:
        """Is the upstream able to serve? Default: the model list, which costs nothing."""
        resp = await upstream.request("GET", self.models_path)
        return resp.status_code == 200, f"GET {self.models_path} -> {resp.status_code}"

    async def ready(self, upstream: Upstream) -> tuple[bool, str]:
        """`probe`, cached for readiness_ttl seconds so health checks never load the upstream. With several
        replicas: ready while at least one is up (each is probed in the background)."""
        if isinstance(upstream, Replicas):
            return upstream.readiness()
        checked, ok, detail = self._ready
        now = time.monotonic()
        if now - checked < self.settings.readiness_ttl:
            return ok, detail
        try:
            ok, detail = await self.probe(upstream)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which
            ok, detail = False, getattr(exc, "message", type(exc).__name__)
        self._ready = (now, ok, detail)
        return ok, detail


def _json_object(raw: str, param: str) -> dict[str, Any]:
    value = Backend.loads(raw.encode())
    if not isinstance(value, dict):
        raise invalid(f"Invalid '{param}': expected a JSON object in the string.", param)
    return value
