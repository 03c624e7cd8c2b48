"""vLLM (GPU or the embedded CPU engine): chat completions upstream, readiness from the engine's /health.

RL token data (MODELYARD_RETURN_TOKEN_IDS, docs/rl-token-data.md): the engine is asked for token ids and
logprobs, which the translation puts on the Responses output. Token ids a client echoes back on history
items are the source of truth for that part of the next prompt: the new prompt is rendered by the engine's
/tokenize, its part up to the end of the echoed turn is replaced by the echoed prompt + generation ids
(as NeMo RL's `_replace_prefix_tokens` does), and the result goes to the chat endpoint as
`kv_transfer_params.prompt_token_ids`, which stock vLLM (0.32) feeds to the engine as the prompt while
still running the chat pipeline (tool and reasoning parsers) on the output.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ..endpoints import Endpoint
from ..errors import APIError, invalid
from ..translate import ChatRequest, TranslateOptions
from ..upstream import Upstream
from .base import Backend

log = logging.getLogger("modelyard")

# /tokenize sits at the server root, beside /v1 (relative, so it follows whichever base URL is used).
TOKENIZE_PATH = "../tokenize"


class VLLM(Backend):
    name = "vllm"
    engine_extras = True
    replicas_supported = True  # MODELYARD_UPSTREAM_URL may list several engines (docs/replicas.md)
    tokenizer_endpoints = True  # /tokenize and /detokenize at the server root (tokenize.py)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turn_end: int | None = None  # the token a chat template ends an assistant turn with
        self._turn_end_known = False

    async def probe(self, endpoint: Endpoint) -> tuple[bool, str]:
        # /health lives at the server root, beside /v1.
        root = endpoint.base_url.removesuffix("/v1")
        resp = await endpoint.request("GET", f"{root}/health")
        return resp.status_code == 200, f"GET /health -> {resp.status_code}"

    # -- RL token data ---------------------------------------------------------------------------
    def translate_options(self) -> TranslateOptions:
        return dataclasses.replace(super().translate_options(), token_ids=self.settings.return_token_ids)

    def take_extras(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.settings.return_token_ids and "n" in body:
            _one_choice(body.pop("n"))
        return super().take_extras(body)

    def prepare_chat(self, body: dict[str, Any]) -> None:
        super().prepare_chat(body)
        if self.settings.return_token_ids:
            _one_choice(body.get("n"))
            body["return_token_ids"] = True  # prompt_token_ids and choices[].token_ids in the reply

    async def before_chat(self, upstream: Upstream, chat: ChatRequest) -> None:
        if not self.settings.return_token_ids:
            return
        body = chat.body
        body["logprobs"] = True  # a logprob per generated token: generation_log_probs
        body.setdefault("top_logprobs", 0)
        if chat.token_prefix is not None:
            await self._continue_prefix(upstream, chat.body, *chat.token_prefix)

    async def _continue_prefix(self, upstream: Upstream, body: dict[str, Any], at: int, ids: list[int]) -> None:
        """Make the prompt continue the echoed ids exactly: the template's rendering of everything up to
        the end of the echoed assistant turn is replaced by them."""
        end = await self._turn_end_token(upstream, body)
        messages = body["messages"]
        prefix = await self._tokenize(upstream, body, messages[: at + 1], generation_prompt=False)
        full = await self._tokenize(upstream, body, messages, generation_prompt=True)
        # Where the template closes the echoed turn: its last turn-end token within the prefix.
        cut = next((i for i in range(min(len(prefix), len(full)) - 1, -1, -1) if full[i] == end), None)
        if end is None or cut is None:
            log.warning("echoed token ids not used: the chat template's turn end was not found; prompt re-rendered")
            return
        # A generation that stopped on the turn-end token has it already; the template's comes next.
        keep = len(ids) - 1 if ids[-1] == end else len(ids)
        kv = body.get("kv_transfer_params")
        kv = dict(kv) if isinstance(kv, dict) else {}
        body["kv_transfer_params"] = {**kv, "prompt_token_ids": ids[:keep] + full[cut:]}

    async def count_tokens(self, upstream: Upstream, body: dict[str, Any]) -> int:
        """The prompt's length as the engine renders it (/v1/messages/count_tokens, /v1/responses/input_tokens);
        a prompt fixed by echoed token ids (before_chat) is those ids."""
        kv = body.get("kv_transfer_params")
        if isinstance(kv, dict) and isinstance(kv.get("prompt_token_ids"), list):
            return len(kv["prompt_token_ids"])
        return len(await self._tokenize(upstream, body, body["messages"], generation_prompt=True))

    async def _tokenize(
        self, upstream: Upstream, body: dict[str, Any], messages: list[dict[str, Any]], *, generation_prompt: bool
    ) -> list[int]:
        """The engine's own rendering and tokenization of `messages`, as its chat endpoint does it."""
        # The chat endpoint reads an assistant message's reasoning_content as `reasoning`; /tokenize does not.
        messages = [_reasoning_renamed(m) if "reasoning_content" in m else m for m in messages]
        request: dict[str, Any] = {"model": body.get("model"), "messages": messages}
        request["add_generation_prompt"] = generation_prompt
        kwargs = dict(body.get("chat_template_kwargs") or {})
        effort = body.get("reasoning_effort")
        if effort is not None:  # the chat endpoint turns thinking on with it; /tokenize has no such field
            kwargs.setdefault("enable_thinking", effort != "none")
        if kwargs:
            request["chat_template_kwargs"] = kwargs
        for key in ("tools", "chat_template", "mm_processor_kwargs"):
            if body.get(key) is not None:
                request[key] = body[key]
        return await self._tokens(upstream, request)

    async def _tokens(self, upstream: Upstream, request: dict[str, Any]) -> list[int]:
        reply = await upstream.call("POST", TOKENIZE_PATH, request)
        tokens = reply.json.get("tokens") if isinstance(reply.json, dict) else None
        if not isinstance(tokens, list):
            raise APIError(502, "The engine's /tokenize reply has no tokens.", code="bad_upstream_reply")
        return tokens

    async def _turn_end_token(self, upstream: Upstream, body: dict[str, Any]) -> int | None:
        """The token the chat template puts right after an assistant message's text (<|im_end|>,
        <|eot_id|>, …), learned once from the engine: render a tiny exchange and look after the answer."""
        if not self._turn_end_known:
            model = body.get("model")
            user = [{"role": "user", "content": "x"}]
            asked = await self._tokens(upstream, {"model": model, "messages": user, "add_generation_prompt": True})
            chat = user + [{"role": "assistant", "content": "y"}]
            said = await self._tokens(upstream, {"model": model, "messages": chat, "add_generation_prompt": False})
            answer = await self._tokens(upstream, {"model": model, "prompt": "y", "add_special_tokens": False})
            rest = said[len(asked) :] if said[: len(asked)] == asked else said
            n = len(answer)
            at = next((i for i in range(len(rest) - n - 1, -1, -1) if rest[i : i + n] == answer), None)
            self._turn_end = rest[at + n] if at is not None and n else None
            self._turn_end_known = True
            log.info("chat template turn-end token: %s", self._turn_end, extra={"backend": self.name})
        return self._turn_end


def _reasoning_renamed(message: dict[str, Any]) -> dict[str, Any]:
    message = dict(message)
    reasoning = message.pop("reasoning_content")
    message.setdefault("reasoning", reasoning)
    return message


def _one_choice(n: Any) -> None:
    if n not in (None, 1):
        msg = "Invalid 'n': token ids are returned for one choice only (MODELYARD_RETURN_TOKEN_IDS); use n=1."
        raise invalid(msg, "n")


BACKEND = VLLM
