"""vLLM (GPU or the embedded CPU engine): chat completions upstream, readiness from the engine's /health."""

from __future__ import annotations

from ..upstream import Upstream
from .base import Backend


class VLLM(Backend):
    name = "vllm"

    async def probe(self, upstream: Upstream) -> tuple[bool, str]:
        # /health lives at the server root, beside /v1.
        root = upstream.base_url.removesuffix("/v1")
        resp = await upstream.request("GET", f"{root}/health")
        return resp.status_code == 200, f"GET /health -> {resp.status_code}"


BACKEND = VLLM
