"""The parts of a Response that are not output: the envelope (the request's echo), usage, logprobs.

The echo is computed once, by `responses_to_chat`, from the request it checked: what was refused or
dropped is echoed as what was done (`background: false`, `truncation: "disabled"`, `store: false`, …).
Sampling is echoed as it is in force: as the chat request sent upstream says it (the request's value, or
a backend's pinned `sampling_overrides`), else the engine's default; never null where the spec wants a
number.
"""

from __future__ import annotations

from typing import Any

# Sampling fields the chat request carries under the same name, and the engines' defaults for them.
SAMPLING_DEFAULTS = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_logprobs": 0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}


def envelope(echo: dict[str, Any], sent: dict[str, Any], response_id: str, created_at: int) -> dict[str, Any]:
    """A Response in progress, with no output yet: every field the spec requires, `echo` over the
    defaults, and the sampling in force in `sent` (the chat request body)."""
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": None,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": None,
        "safety_identifier": None,
        "service_tier": "default",
        "store": False,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": None,
        "top_p": None,
        "presence_penalty": None,
        "frequency_penalty": None,
        "truncation": "disabled",
        "usage": None,
        "metadata": {},
    }
    response.update(echo)
    for key, default in SAMPLING_DEFAULTS.items():
        value = sent.get(key)
        response[key] = value if isinstance(value, int | float) and not isinstance(value, bool) else default
    return response


def usage(chat_usage: dict[str, Any]) -> dict[str, Any]:
    """Chat usage -> Responses usage; details the upstream leaves out (vLLM sends null) count 0."""
    prompt = chat_usage.get("prompt_tokens") or 0
    completion = chat_usage.get("completion_tokens") or 0
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": chat_usage.get("total_tokens") or prompt + completion,
    }


def logprobs(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat `logprobs.content` -> output_text logprobs (bytes filled in where the upstream gives none)."""
    return [
        {
            "token": lp["token"],
            "logprob": lp["logprob"],
            "bytes": lp.get("bytes") or list(lp["token"].encode()),
            "top_logprobs": [
                {
                    "token": top["token"],
                    "logprob": top["logprob"],
                    "bytes": top.get("bytes") or list(top["token"].encode()),
                }
                for top in lp.get("top_logprobs") or ()
            ],
        }
        for lp in content
    ]


def delta_logprobs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Output_text logprobs -> the lighter shape text delta/done events carry (no bytes)."""
    return [
        {
            "token": lp["token"],
            "logprob": lp["logprob"],
            "top_logprobs": [{"token": t["token"], "logprob": t["logprob"]} for t in lp["top_logprobs"]],
        }
        for lp in entries
    ]
