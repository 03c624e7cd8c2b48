"""What a backend can tune in the translation, and what a translated request is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class TranslateOptions:
    # Request params (as a 400 names them, list indices left out: "background", "tools.type",
    # "include") to drop and report instead of refusing with a 400.
    tolerate_params: frozenset[str] = frozenset()
    # Reasoning items from earlier turns: re-sent as the next assistant message's `reasoning_content`,
    # or dropped (most chat templates discard earlier reasoning anyway).
    reasoning_history: Literal["send", "drop"] = "drop"
    # Split reasoning out of content that starts with these tags when the upstream has no reasoning
    # field (a vLLM without --reasoning-parser); None leaves content as it is.
    think_tags: tuple[str, str] | None = ("<think>", "</think>")
    # The chat role a Responses `developer` message is sent as.
    developer_role: Literal["developer", "system"] = "system"
    # An upstream context-length error: a 400 (OpenAI's behaviour), or an `incomplete` Response with no
    # output (NeMo Gym's; see `overflow_response` and `StreamTranslator.overflow`).
    context_overflow: Literal["error", "incomplete"] = "error"
    # The chat field `max_output_tokens` becomes: vLLM and NIM take max_tokens, OpenAI's reasoning
    # models only max_completion_tokens.
    max_tokens_param: str = "max_tokens"
    # RL token data (docs/rl-token-data.md): history items carrying `prompt_token_ids` and
    # `generation_token_ids` are read (ChatRequest.token_prefix), and replies' token ids and logprobs
    # are put on the last output item.
    token_ids: bool = False


@dataclass
class ChatRequest:
    body: dict[str, Any]  # the chat.completions request body to send upstream
    dropped: list[str]  # tolerated params dropped from the request, as their 400 would have named them
    # With TranslateOptions.token_ids: the latest history item that carried token ids, as (index of the
    # assistant message in body["messages"] it belongs to, its prompt + generation token ids).
    token_prefix: tuple[int, list[int]] | None = None
