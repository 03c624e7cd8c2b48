"""OpenRouter: chat completions upstream, with its attribution headers."""

from __future__ import annotations

from .base import Backend


class OpenRouter(Backend):
    name = "openrouter"

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        for var, header in (("OPENROUTER_HTTP_REFERER", "http-referer"), ("OPENROUTER_X_TITLE", "x-title")):
            if self.settings.env.get(var):
                headers[header] = self.settings.env[var]
        return headers


BACKEND = OpenRouter
