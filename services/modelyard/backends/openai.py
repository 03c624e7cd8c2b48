"""OpenAI: the Responses API is native upstream, so it is relayed as it is, stored responses included."""

from __future__ import annotations

from ..config import OpenAISettings
from .base import NATIVE_ROUTES, Backend


class OpenAI(Backend):
    name = "openai"
    native_responses = True
    stored_responses = True  # GET/DELETE /responses/{id}, /cancel, /input_items
    responses_routes = NATIVE_ROUTES  # POST /responses/input_tokens, /responses/compact

    def headers(self) -> dict[str, str]:
        # The header names the openai SDK sends for OpenAI(organization=..., project=...).
        headers = super().headers()
        own: OpenAISettings = self.settings.of(OpenAISettings)
        for value, header in ((own.organization, "openai-organization"), (own.project, "openai-project")):
            if value:
                headers[header] = value
        return headers


BACKEND = OpenAI
