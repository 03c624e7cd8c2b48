"""The parts of a Response that are not output: the echo of the request, usage, logprobs.

The request was checked by `responses_to_chat` before it got here, so the echo reads it without
checking again. What the request asked for but was refused or dropped is echoed as what was done
(`background: false`, `truncation: "disabled"`, `store: false`, …).
"""

from __future__ import annotations

from typing import Any

from .schema import strict_compatible

_FORMAT_KEYS = ("type", "name", "description", "schema", "strict")


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.get("name"),
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        # Echo what was enforced: an omitted `strict` means strict where the schema allows it.
        "strict": tool["strict"] if tool.get("strict") is not None else strict_compatible(tool.get("parameters")),
    }


def _tool_choice(choice: Any) -> Any:
    # A refused (tolerated) tool_choice was dropped: the model chose freely.
    if isinstance(choice, str) or (isinstance(choice, dict) and choice.get("type") == "function"):
        return choice
    return "auto"


def envelope(request: dict[str, Any], response_id: str, created_at: int) -> dict[str, Any]:
    """A Response in progress, with no output yet: every field the spec requires, and the request's echo."""
    tools = [_tool(t) for t in request.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
    fmt = (request.get("text") or {}).get("format")
    reasoning = request.get("reasoning")
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": request.get("model"),
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
        "previous_response_id": None,
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")} if reasoning else None,
        "safety_identifier": request.get("safety_identifier"),
        "service_tier": request.get("service_tier"),
        "store": False,
        "temperature": request.get("temperature"),
        "text": {"format": {k: fmt[k] for k in _FORMAT_KEYS if k in fmt}} if fmt else {"format": {"type": "text"}},
        "tool_choice": _tool_choice(request.get("tool_choice")),
        "tools": tools,
        "top_logprobs": request.get("top_logprobs"),
        "top_p": request.get("top_p"),
        "truncation": "disabled",
        "metadata": request.get("metadata") or {},
    }
    if request.get("user") is not None:  # the spec has no null for it
        response["user"] = request["user"]
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
