"""vLLM's /tokenize and /detokenize, relayed to the engine (docs/rl-token-data.md).

RL clients render prompts with the engine's own tokenizer: NeMo Gym's `vllm_model` server with
`return_token_id_information: true` calls `POST <base_url without /v1>/tokenize` after each chat completion
for the prompt's ids. The adapter serves both at its root and under /v1 and relays them to the engine's root
(vLLM has them beside /v1, not under it). They go through the same upstream object as generation, so with
replicas the session header or cookie that placed the generation places them too (replicas.ReplicaRouting).
Backends without a tokenizer endpoint (the hosted ones) answer a 404 in OpenAI's format.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from .errors import APIError
from .upstream import Upstream

# Relative to the upstream base URL (…/v1), as backends/vllm.py reaches /tokenize: the server root.
ENGINE_PATHS = {"tokenize": "../tokenize", "detokenize": "../detokenize"}
ROUTES = ("/tokenize", "/detokenize", "/v1/tokenize", "/v1/detokenize")


def serves_tokenizer(backend: Any) -> bool:
    """The backend's engine has /tokenize and /detokenize (a `tokenizer_endpoints` class flag)."""
    return backend.tokenizer_endpoints


async def relay_tokenize(upstream: Upstream, backend: Any, path: str, body: dict[str, Any], headers: dict) -> Response:
    """Relay one tokenizer request (`path` is the adapter path it came in on) and return the engine's reply."""
    kind = path.rstrip("/").rsplit("/", 1)[-1]
    if kind not in ENGINE_PATHS:
        raise APIError(404, f"Unknown path {path} on the {backend.name} adapter.", code="unknown_url")
    if not serves_tokenizer(backend):
        msg = f"The {backend.name} backend has no tokenizer endpoint: /{kind} is served for vLLM and NIM engines."
        raise APIError(404, msg, code="unknown_url")
    backend.settings.check_model(body)
    reply = await upstream.call("POST", ENGINE_PATHS[kind], body, headers=headers)  # an error: OpenAI's format
    return Response(reply.content, media_type="application/json")
