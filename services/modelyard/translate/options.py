"""What a backend can tune in the translation, and what a translated request is (`Translation`): the chat
body to send, and everything the reply side needs, computed once from the Responses request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .envelope import envelope
from .stream import StreamTranslator


@dataclass(frozen=True)
class TranslateOptions:
    # Request params (as a 400 names them, list indices left out: "background", "tools.type",
    # "include") to drop and report instead of refusing with a 400.
    tolerate_params: frozenset[str] = frozenset()
    # Reasoning items from earlier turns: re-sent as the next assistant message's `reasoning_content`,
    # or dropped (most chat templates discard earlier reasoning anyway) and named in `dropped`.
    reasoning_history: Literal["send", "drop"] = "drop"
    # Split reasoning out of content that starts with these tags when the upstream has no reasoning
    # field (a vLLM without --reasoning-parser); None leaves content as it is.
    think_tags: tuple[str, str] | None = ("<think>", "</think>")
    # The chat role a Responses `developer` message is sent as.
    developer_role: Literal["developer", "system"] = "system"
    # An upstream context-length error: a 400 (OpenAI's behaviour), or an `incomplete` Response with no
    # output (NeMo Gym's; see `Translation.overflow`).
    context_overflow: Literal["error", "incomplete"] = "error"
    # The chat field `max_output_tokens` becomes: vLLM and NIM take max_tokens, OpenAI's reasoning
    # models only max_completion_tokens.
    max_tokens_param: str = "max_tokens"
    # How `reasoning` goes on the chat request: `reasoning_effort` (OpenAI, vLLM, NIM), or OpenRouter's
    # `reasoning` object, which also takes the keys listed in `reasoning_extras` as they are.
    reasoning_param: Literal["reasoning_effort", "reasoning"] = "reasoning_effort"
    reasoning_extras: frozenset[str] = frozenset()
    # RL token data (docs/rl-token-data.md): history items carrying `prompt_token_ids` and
    # `generation_token_ids` are read (Translation.token_prefix), and replies' token ids and logprobs
    # are put on the last output item.
    token_ids: bool = False


@dataclass
class Translation:
    """A Responses request translated: `body` goes upstream (backends may still change it: the echo of
    sampling is read from it when the reply starts, so pinned values show); the rest answers the reply."""

    body: dict[str, Any]  # the chat.completions request body to send upstream
    dropped: list[str]  # params dropped from the request, as their 400 would have named them
    # With TranslateOptions.token_ids: the latest history item that carried token ids, as (index of the
    # assistant message in body["messages"] it belongs to, its prompt + generation token ids).
    token_prefix: tuple[int, list[int]] | None = None
    echo: dict[str, Any] = field(default_factory=dict)  # the Response's fields that echo the request
    text_logprobs: bool = False  # the request asked for output_text logprobs (include or top_logprobs)
    opts: TranslateOptions = field(default_factory=TranslateOptions)
    # Function tools were offered: content that is tool-call markup the engine's parser left in
    # (`<tool_call>…`, a call cut short) becomes a function_call item, never text.
    tool_markup: bool = False

    def envelope(self, response_id: str, created_at: int) -> dict[str, Any]:
        """The Response in progress, no output yet."""
        return envelope(self.echo, self.body, response_id, created_at)

    def stream(self, response_id: str, created_at: int) -> StreamTranslator:
        """The translator of this request's chat stream into Responses events."""
        return StreamTranslator(
            self.envelope(response_id, created_at),
            opts=self.opts,
            text_logprobs=self.text_logprobs,
            tool_markup=self.tool_markup,
        )

    def reply(self, chat: dict[str, Any], *, response_id: str, created_at: int) -> dict[str, Any]:
        """The Response for a non-streamed chat completion, through the stream's machine (so they agree)."""
        translator = StreamTranslator(
            self.envelope(response_id, created_at),
            opts=self.opts,
            text_logprobs=self.text_logprobs,
            tool_markup=self.tool_markup,
            events=False,
        )
        return translator.whole(chat)

    def overflow_events(self, *, response_id: str, created_at: int) -> list[dict[str, Any]]:
        """An input the upstream refused as too long, where context_overflow="incomplete", as a stream:
        response.created, response.in_progress, response.incomplete."""
        return self.stream(response_id, created_at).overflow()

    def overflow(self, *, response_id: str, created_at: int) -> dict[str, Any]:
        """The same, not streamed: the Response of `overflow_events`' last event (no output, no usage,
        `incomplete_details.reason` "max_output_tokens", the spec's only fitting reason)."""
        return self.overflow_events(response_id=response_id, created_at=created_at)[-1]["response"]


ChatRequest = Translation  # the name backends' type hints know it by
