"""What every backend shares; a backend module overrides only what its upstream does differently."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from ..config import Settings
from ..translate import TranslateOptions
from ..upstream import Upstream


class Backend:
    name: ClassVar[str] = "base"
    chat_path: ClassVar[str] = "/chat/completions"
    models_path: ClassVar[str] = "/models"
    # Set where the upstream serves the Responses API itself and we relay it as it is.
    native_responses: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.options = self.translate_options()
        self._ready: tuple[float, bool, str] = (0.0, False, "not checked yet")

    # -- what goes upstream ------------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        key = self.settings.api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    def params(self) -> dict[str, str]:
        return {}

    def translate_options(self) -> TranslateOptions:
        return TranslateOptions(
            tolerate_params=self.settings.tolerate_params, developer_role=self.settings.developer_role
        )

    def make_upstream(self) -> Upstream:
        s = self.settings
        return Upstream(
            s.upstream_url,
            headers=self.headers(),
            params=self.params(),
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            max_connections=s.max_connections,
        )

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

    # -- readiness ---------------------------------------------------------------------------
    async def probe(self, upstream: Upstream) -> tuple[bool, str]:
        """Is the upstream able to serve? Default: the model list, which costs nothing."""
        resp = await upstream.request("GET", self.models_path)
        return resp.status_code == 200, f"GET {self.models_path} -> {resp.status_code}"

    async def ready(self, upstream: Upstream) -> tuple[bool, str]:
        """`probe`, cached for readiness_ttl seconds so health checks never load the upstream."""
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
