"""NVIDIA NIM, self-hosted or NVIDIA's hosted catalog (docs/nim.md).

/v1/responses goes through the translation core over NIM's chat completions (the default), or is relayed
to NIM's own /v1/responses (NIM 2.x) with MODELYARD_RESPONSES_MODE=native. Readiness: a self-hosted NIM's
/v1/health/ready (200 once the model is loaded), and where a model is pinned, that /v1/models lists it;
the hosted catalog has no health endpoint, so there the model list alone. NIM's error bodies (vLLM's
`{"object": "error", ...}`, NIM 2.x's `{"error": {...}}`, FastAPI's `{"detail": ...}`, the catalog
gateway's `{"status", "title", "detail"}`) are mapped to OpenAI's format by the translation core.
"""

from __future__ import annotations

from typing import Any

from ..config import NimSettings
from ..endpoints import Endpoint
from ..upstream import json_reply
from .base import Backend

HOSTED = "https://integrate.api.nvidia.com"


class NIM(Backend):
    name = "nim"
    engine_extras = True  # NIM renders the chat template itself (chat_template_kwargs)
    replicas_supported = True  # MODELYARD_UPSTREAM_URL may list several engines (docs/replicas.md)
    tokenizer_endpoints = True  # a vLLM-based NIM has /tokenize; where its engine has not, its 404 is relayed

    def __init__(self, settings: Any) -> None:
        cfg: NimSettings = settings.of(NimSettings)
        # NIM 2.x serves the Responses API itself, and GET /v1/responses/{id} and cancel with it.
        self.native_responses = self.stored_responses = cfg.native_responses
        super().__init__(settings)

    async def probe(self, upstream: Endpoint) -> tuple[bool, str]:
        if upstream.base_url.startswith(HOSTED):
            return await super().probe(upstream)
        root = upstream.base_url.removesuffix("/v1")
        resp = await upstream.request("GET", f"{root}/v1/health/ready")
        detail = f"GET /v1/health/ready -> {resp.status_code}"
        if resp.status_code != 200 or not self.settings.model:
            return resp.status_code == 200, detail
        # Loaded, but is it the model this stack is pinned to? (A NIM image serves the model it was built for.)
        listed = await upstream.request("GET", self.models_path)
        ids = [m.get("id") for m in (json_reply(listed) or {}).get("data", [])] if listed.status_code == 200 else []
        if self.settings.model not in ids:
            return False, f"{detail}; GET /v1/models -> {listed.status_code}, '{self.settings.model}' not in {ids}"
        return True, f"{detail}; GET /v1/models lists '{self.settings.model}'"


BACKEND = NIM
