"""Azure OpenAI, v1 surface: `api-key` header auth, chat completions upstream."""

from __future__ import annotations

from .base import Backend


class Azure(Backend):
    name = "azure"

    def headers(self) -> dict[str, str]:
        key = self.settings.api_key
        return {"api-key": key} if key else {}


BACKEND = Azure
