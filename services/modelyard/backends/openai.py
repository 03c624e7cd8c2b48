"""OpenAI: the Responses API is native upstream, so it is relayed as it is, stored responses included."""

from __future__ import annotations

from .base import Backend


class OpenAI(Backend):
    name = "openai"
    native_responses = True
    stored_responses = True  # GET/DELETE /responses/{id}, /cancel, /input_items

    def headers(self) -> dict[str, str]:
        # The header names the openai SDK sends for OpenAI(organization=..., project=...).
        headers = super().headers()
        for var, header in (
            ("OPENAI_ORGANIZATION", "openai-organization"),
            ("OPENAI_PROJECT", "openai-project"),
        ):
            if self.settings.env.get(var):
                headers[header] = self.settings.env[var]
        return headers


BACKEND = OpenAI
