"""NVIDIA NIM, self-hosted or NVIDIA's hosted catalog: chat completions upstream."""

from __future__ import annotations

from ..upstream import Upstream
from .base import Backend


class NIM(Backend):
    name = "nim"
    engine_extras = True  # NIM renders the chat template itself (chat_template_kwargs)
    replicas_supported = True  # MODELYARD_UPSTREAM_URL may list several engines (docs/replicas.md)

    async def probe(self, upstream: Upstream) -> tuple[bool, str]:
        # A self-hosted NIM says when it is ready; the hosted catalog has only the model list.
        if upstream.base_url.startswith("https://integrate.api.nvidia.com"):
            return await super().probe(upstream)
        root = upstream.base_url.removesuffix("/v1")
        resp = await upstream.request("GET", f"{root}/v1/health/ready")
        return resp.status_code == 200, f"GET /v1/health/ready -> {resp.status_code}"


BACKEND = NIM
