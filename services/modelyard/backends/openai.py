"""OpenAI: the Responses API is native upstream, so it is relayed as it is."""

from __future__ import annotations

from .base import Backend


class OpenAI(Backend):
    name = "openai"
    native_responses = True

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        for var, header in (
            ("OPENAI_ORGANIZATION", "openai-organization"),
            ("OPENAI_PROJECT", "openai-project"),
        ):
            if self.settings.env.get(var):
                headers[header] = self.settings.env[var]
        return headers


BACKEND = OpenAI
