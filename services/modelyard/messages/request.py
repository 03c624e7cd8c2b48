"""Anthropic Messages request -> Chat Completions request.

The same rule as the Responses core (translate/request.py): every field is honoured, refused with a 400
naming it, or, where the backend tolerates it (TranslateOptions.tolerate_params), dropped and reported in
`ChatRequest.dropped`. Nothing is dropped silently. Decisions worth knowing (docs/messages.md has the table):

- `cache_control` (top level or on a block) is accepted and changes nothing: prompt caching upstream is
  automatic where it exists (vLLM's prefix cache, OpenAI's prompt cache).
- `tool_result` blocks of a user turn become chat `tool` messages, sent before the turn's other content
  (chat wants them right after the assistant's calls); `is_error: true` prefixes the result with "Error: ".
- `thinking` becomes the backend's reasoning settings (see `THINKING_STYLES`); earlier turns' thinking
  blocks go back as `reasoning_content` or are dropped, as TranslateOptions.reasoning_history says.
- A final assistant message (a prefill) is continued where the engine can (`continue_final_message`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson

from ..errors import invalid, unsupported
from ..translate.options import ChatRequest, TranslateOptions
from ..translate.request import _bool, _int, _list, _missing, _number, _object, _str, type_error
from ..translate.schema import check_schema, strict_compatible

# How `thinking` reaches each kind of backend:
# "template": a chat-template engine (vLLM, NIM): chat_template_kwargs.enable_thinking;
# "effort": OpenAI-style reasoning models (OpenAI, Azure): reasoning_effort, from the budget;
# "openrouter": OpenRouter's `reasoning` object (max_tokens = the budget).
ThinkingStyle = Literal["template", "effort", "openrouter"]
THINKING_STYLES: dict[str, ThinkingStyle] = {"vllm": "template", "nim": "template", "openrouter": "openrouter"}
_EFFORTS = ("low", "medium", "high", "xhigh", "max")
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# Params with no chat counterpart: refused when set (or dropped where tolerated).
_UNSUPPORTED = {
    "container": "code-execution containers are not available",
    "mcp_servers": "MCP servers are not available",
    "context_management": "server-side context management is not available",
    "inference_geo": "the inference region cannot be chosen",
    "diagnostics": "prompt-cache diagnostics are not available",
    "user_profile_id": "user profiles are not available",
    "workspace_id": "workspaces are not available",
}
_NO_OPS = ("cache_control",)
# Assistant blocks of Anthropic's server tools: refused by name (or dropped where tolerated).
_SERVER_BLOCKS = frozenset(
    {
        "server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
        "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "mcp_tool_use",
        "mcp_tool_result", "container_upload", "tool_search_tool_result",
    }
)  # fmt: skip
_TEXT_KEYS = frozenset({"type", "text", "cache_control", "citations"})
_TOKEN_KEYS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")
_INDEX = re.compile(r"\[\d+\]")
_LATER = ("model", "messages", "system", "tool_choice", "thinking")


def messages_to_chat(
    request: dict[str, Any], opts: TranslateOptions, thinking: ThinkingStyle = "effort", *, count: bool = False
) -> ChatRequest:
    """Translate a Messages request body (`count`: a count_tokens body, with no max_tokens); raises APIError
    (400) on invalid or unsupported input."""
    return _Translation(opts, thinking, count).run(request)


def budget_effort(budget: int) -> str:
    """A thinking budget as an OpenAI reasoning effort."""
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


class _Translation:
    def __init__(self, opts: TranslateOptions, thinking: ThinkingStyle, count: bool) -> None:
        self.opts, self.style, self.count = opts, thinking, count
        self.dropped: list[str] = []
        self.token_prefix: tuple[int, list[int]] | None = None

    def refuse(self, param: str, why: str) -> None:
        key = _INDEX.sub("", param)
        if key in self.opts.tolerate_params:
            self.dropped.append(param)
            return
        raise unsupported(param, f"{why} (the adapter can be configured to drop it: tolerate '{key}').")

    # -- the request -------------------------------------------------------------------------
    def run(self, request: Any) -> ChatRequest:
        request = _object(request, "body")
        for key in ("model", "messages") if self.count else ("model", "max_tokens", "messages"):
            if request.get(key) is None:
                raise _missing(key)
        messages: list[dict[str, Any]] = []
        body: dict[str, Any] = {"model": _str(request["model"], "model"), "messages": messages}
        for key, value in request.items():
            if value is None or key in _LATER:
                continue
            self.param(key, value, body)
        if request.get("system") is not None:
            messages.append({"role": "system", "content": self.system(request["system"])})
        messages.extend(self.turns(_list(request["messages"], "messages"), len(messages), body))
        if request.get("tool_choice") is not None:
            self.tool_choice(request["tool_choice"], body)
        if request.get("thinking") is not None:
            self.thinking(request["thinking"], body)
        self.force_tool_choice(request["messages"], body)
        return ChatRequest(body, self.dropped, self.token_prefix)

    def force_tool_choice(self, turns: list[Any], body: dict[str, Any]) -> None:
        """The operator's forced tool choice (MODELYARD_FORCE_TOOL_CHOICE), on a turn's first step only
        (the last message carries no tool_result), the function made strict so the engine holds it to
        the schema; as translate/request.py does for /v1/responses."""
        force = self.opts.force_tool_choice
        if not force or "tools" not in body or not turns or not isinstance(turns[-1], dict):
            return
        content = turns[-1].get("content")
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return
        if force in ("required", "auto", "none"):
            body["tool_choice"] = force
            return
        for tool in body["tools"]:
            if tool["function"]["name"] in force.split(","):  # the first offered of the names listed
                body["tool_choice"] = {"type": "function", "function": {"name": tool["function"]["name"]}}
                tool["function"]["strict"] = True
                return

    def param(self, key: str, value: Any, body: dict[str, Any]) -> None:
        """One top-level param other than the messages."""
        if key == "max_tokens":
            if self.count:
                raise invalid("Unknown parameter for count_tokens: 'max_tokens'.", key, "unknown_parameter")
            body[self.opts.max_tokens_param] = _int(value, key, 1)
        elif key == "temperature":
            body["temperature"] = _number(value, key, 0, 1)
        elif key == "top_p":
            body["top_p"] = _number(value, key, 0, 1)
        elif key == "top_k":
            body["top_k"] = _int(value, key, 1)
        elif key == "stop_sequences":
            stops = [_str(s, f"stop_sequences[{i}]") for i, s in enumerate(_list(value, key))]
            if stops:
                body["stop"] = stops
        elif key == "stream":
            if self.count:
                raise invalid("Unknown parameter for count_tokens: 'stream'.", key, "unknown_parameter")
            if _bool(value, key):
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
        elif key == "tools":
            tools = self.tools(value)
            if tools:
                body["tools"] = tools
        elif key == "metadata":
            self.metadata(value, body)
        elif key == "output_config":
            self.output_config(value, body)
        elif key == "service_tier":
            if value not in ("auto", "standard_only"):  # one tier here: both are what happens
                raise invalid(f"Invalid value for 'service_tier': {value!r}; use auto or standard_only.", key)
        elif key == "speed":
            if value == "fast":
                self.refuse(key, "fast mode is not available")
            elif value != "standard":
                raise invalid(f"Invalid value for 'speed': {value!r}; use standard or fast.", key)
        elif key in _NO_OPS:
            _object(value, key)
        elif key in _UNSUPPORTED:
            self.refuse(key, _UNSUPPORTED[key])
        elif key in self.opts.tolerate_params:
            self.dropped.append(key)
        else:
            raise invalid(f"Unknown parameter: '{key}'.", key, "unknown_parameter")

    def system(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        return "\n\n".join(self.text(block, f"system[{i}]") for i, block in enumerate(_list(value, "system")))

    def text(self, block: Any, p: str) -> str:
        block = _object(block, p)
        if block.get("type") != "text":
            raise invalid(f"Invalid value for '{p}.type': {block.get('type')!r}; use text.", f"{p}.type")
        if block.get("citations"):
            self.refuse(f"{p}.citations", "citations cannot be sent to a chat model")
        for key in block:
            if key not in _TEXT_KEYS:
                raise invalid(f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}", "unknown_parameter")
        return _str(block.get("text"), f"{p}.text")

    def metadata(self, value: Any, body: dict[str, Any]) -> None:
        for key, item in _object(value, "metadata").items():
            if key == "user_id":
                if item is not None:
                    user = _str(item, "metadata.user_id")
                    if len(user) > 256:
                        raise invalid("Invalid 'metadata.user_id': longer than 256 characters.", "metadata.user_id")
                    body["user"] = user
            else:
                raise invalid(f"Unknown parameter: 'metadata.{key}'.", f"metadata.{key}", "unknown_parameter")

    def output_config(self, value: Any, body: dict[str, Any]) -> None:
        for key, item in _object(value, "output_config").items():
            if item is None:
                continue
            if key == "effort":
                if item not in _EFFORTS:
                    raise invalid(f"Invalid value for 'output_config.effort': {item!r}.", "output_config.effort")
                self.effort(item, body)
            elif key == "format":
                fmt = _object(item, "output_config.format")
                if fmt.get("type") != "json_schema":
                    msg = f"Invalid value for 'output_config.format.type': {fmt.get('type')!r}; use json_schema."
                    raise invalid(msg, "output_config.format.type")
                if fmt.get("schema") is None:
                    raise _missing("output_config.format.schema")
                check_schema(fmt["schema"], "output_config.format.schema")
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": fmt["schema"]},
                }
            else:
                raise invalid(f"Unknown parameter: 'output_config.{key}'.", f"output_config.{key}", "unknown_parameter")

    # -- tools -------------------------------------------------------------------------------
    def tools(self, value: Any) -> list[dict[str, Any]]:
        out = []
        for i, tool in enumerate(_list(value, "tools")):
            p = f"tools[{i}]"
            tool = _object(tool, p)
            kind = tool.get("type")
            if kind not in (None, "custom"):
                self.refuse(f"{p}.type", f"server tool {kind!r} is not available; only client tools are")
                continue
            if tool.get("name") is None:
                raise _missing(f"{p}.name")
            if tool.get("input_schema") is None:
                raise _missing(f"{p}.input_schema")
            function: dict[str, Any] = {"name": _str(tool["name"], f"{p}.name")}
            if not re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", function["name"]):
                raise invalid(f"Invalid '{p}.name': use 1 to 128 of a-z A-Z 0-9 _ -.", f"{p}.name")
            if tool.get("description") is not None:
                function["description"] = _str(tool["description"], f"{p}.description")
            check_schema(tool["input_schema"], f"{p}.input_schema")
            function["parameters"] = tool["input_schema"]
            for key, extra in tool.items():
                if extra is None or key in ("type", "name", "description", "input_schema", "cache_control"):
                    continue
                if key == "strict":
                    function["strict"] = _bool(extra, f"{p}.strict")
                elif key == "eager_input_streaming":
                    _bool(extra, f"{p}.{key}")  # tool input is always streamed as it is generated
                elif key in ("input_examples", "defer_loading", "allowed_callers"):
                    if extra not in (False, []):
                        self.refuse(f"{p}.{key}", "tool options beyond name, description, input_schema and strict")
                else:
                    raise invalid(f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}", "unknown_parameter")
            if "strict" not in function and strict_compatible(function["parameters"]):
                # As the Responses core does: engines hold the model to the schema only when strict (vLLM
                # without it lets a small model answer `"Paris"` for an object), and a schema that allows
                # strict mode loses nothing by it.
                function["strict"] = True
            out.append({"type": "function", "function": function})
        return out

    def tool_choice(self, value: Any, body: dict[str, Any]) -> None:
        value = _object(value, "tool_choice")
        kind = value.get("type")
        names = {t["function"]["name"] for t in body.get("tools", ())}
        if kind not in ("auto", "any", "tool", "none"):
            raise invalid(
                f"Invalid value for 'tool_choice.type': {kind!r}; use auto, any, tool or none.", "tool_choice"
            )
        if kind in ("any", "tool") and not names:
            raise invalid(f"tool_choice {kind!r} needs tools in 'tools'.", "tool_choice")
        if kind == "tool":
            if value.get("name") is None:
                raise _missing("tool_choice.name")
            name = _str(value["name"], "tool_choice.name")
            if name not in names:
                raise invalid(f"tool_choice names tool {name!r}, which is not in 'tools'.", "tool_choice.name")
            choice: Any = {"type": "function", "function": {"name": name}}
        else:
            choice = _TOOL_CHOICES[kind]
        for key in value:
            if key not in ("type", "name", "disable_parallel_tool_use"):
                raise invalid(f"Unknown parameter: 'tool_choice.{key}'.", f"tool_choice.{key}", "unknown_parameter")
        if not names:
            return
        body["tool_choice"] = choice
        disable = value.get("disable_parallel_tool_use")
        if disable is not None and kind != "none":
            body["parallel_tool_calls"] = not _bool(disable, "tool_choice.disable_parallel_tool_use")

    # -- thinking ----------------------------------------------------------------------------
    def thinking(self, value: Any, body: dict[str, Any]) -> None:
        value = _object(value, "thinking")
        kind = value.get("type")
        display = value.get("display")
        if display not in (None, "summarized", "omitted"):
            raise invalid(f"Invalid value for 'thinking.display': {display!r}.", "thinking.display")
        if display == "omitted":
            self.refuse("thinking.display", "thinking cannot be omitted with a signature kept")
        if kind == "enabled":
            if value.get("budget_tokens") is None:
                raise _missing("thinking.budget_tokens")
            budget = _int(value["budget_tokens"], "thinking.budget_tokens", 1024)
            limit = body.get(self.opts.max_tokens_param)
            if limit is not None and budget >= limit:
                msg = f"Invalid 'thinking.budget_tokens': {budget} must be less than max_tokens ({limit})."
                raise invalid(msg, "thinking.budget_tokens")
            self.think(True, budget, body)
        elif kind == "adaptive":
            self.think(True, None, body)
        elif kind == "disabled":
            self.think(False, None, body)
        elif kind == "between_tools":
            self.refuse("thinking.type", "thinking between tool calls only cannot be set")
        else:
            msg = f"Invalid value for 'thinking.type': {kind!r}; use enabled, adaptive or disabled."
            raise invalid(msg, "thinking.type")

    def think(self, on: bool, budget: int | None, body: dict[str, Any]) -> None:
        if self.style == "template":
            kwargs = body.setdefault("chat_template_kwargs", {})
            kwargs["enable_thinking"] = on
        elif self.style == "openrouter":
            body["reasoning"] = {"max_tokens": budget} if budget else {"enabled": on}
        elif on and budget:  # effort: OpenAI models think by their own default otherwise
            body.setdefault("reasoning_effort", budget_effort(budget))

    def effort(self, effort: str, body: dict[str, Any]) -> None:
        if self.style == "openrouter":
            body["reasoning"] = {**body.get("reasoning", {}), "effort": effort}
        else:
            body["reasoning_effort"] = effort

    # -- the conversation --------------------------------------------------------------------
    def turns(self, turns: list[Any], base: int, body: dict[str, Any]) -> list[dict[str, Any]]:
        if not turns:
            raise invalid("'messages' must hold at least one message.", "messages", "empty_input")
        out: list[dict[str, Any]] = []
        for i, turn in enumerate(turns):
            p = f"messages[{i}]"
            turn = _object(turn, p)
            role = turn.get("role")
            if role is None:
                raise _missing(f"{p}.role")
            if turn.get("content") is None:
                raise _missing(f"{p}.content")
            for key in turn:
                if key not in ("role", "content") and not (self.opts.token_ids and key in _TOKEN_KEYS):
                    raise invalid(f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}", "unknown_parameter")
            if role == "user":
                out.extend(self.user(turn["content"], f"{p}.content"))
            elif role == "assistant":
                out.append(self.assistant(turn["content"], f"{p}.content"))
                ids = self.token_ids(turn, p) if self.opts.token_ids else None
                if ids is not None:
                    self.token_prefix = (base + len(out) - 1, ids)
            else:
                raise invalid(f"Invalid value for '{p}.role': {role!r}; use user or assistant.", f"{p}.role")
        if out[-1]["role"] == "assistant" and not out[-1].get("tool_calls"):
            self.prefill(body)
        return out

    def prefill(self, body: dict[str, Any]) -> None:
        """A final assistant message: the reply continues it."""
        if self.style != "template":
            self.refuse("messages", "a final assistant message (prefill) cannot be continued by this backend")
            return
        body["continue_final_message"] = True
        body["add_generation_prompt"] = False

    def user(self, content: Any, p: str) -> list[dict[str, Any]]:
        """A user turn: its tool results as chat tool messages, then the rest as one user message."""
        if isinstance(content, str):
            return [{"role": "user", "content": content}]
        tools: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(_list(content, p)):
            pp = f"{p}[{j}]"
            kind = _object(block, pp).get("type")
            if kind == "text":
                parts.append({"type": "text", "text": self.text(block, pp)})
            elif kind == "image":
                image = self.image(block, pp)
                if image:
                    parts.append(image)
            elif kind == "tool_result":
                tools.append(self.tool_result(block, pp))
            elif kind in ("document", "search_result", "container_upload"):
                self.refuse(f"{pp}.type", f"{kind} blocks cannot be sent to a chat model")
            else:
                raise invalid(f"Invalid value for '{pp}.type': {kind!r} in a user message.", f"{pp}.type")
        return tools + ([{"role": "user", "content": parts}] if parts or not tools else [])

    def image(self, block: dict[str, Any], p: str) -> dict[str, Any] | None:
        source = _object(block.get("source"), f"{p}.source")
        kind = source.get("type")
        if kind == "base64":
            media = _str(source.get("media_type"), f"{p}.source.media_type")
            if media not in ("image/jpeg", "image/png", "image/gif", "image/webp"):
                raise invalid(f"Invalid value for '{p}.source.media_type': {media!r}.", f"{p}.source.media_type")
            url = f"data:{media};base64,{_str(source.get('data'), f'{p}.source.data')}"
        elif kind == "url":
            url = _str(source.get("url"), f"{p}.source.url")
        elif kind == "file":
            self.refuse(f"{p}.source.type", "uploaded files are not available; send the image as base64 or a URL")
            return None
        else:
            msg = f"Invalid value for '{p}.source.type': {kind!r}; use base64 or url."
            raise invalid(msg, f"{p}.source.type")
        return {"type": "image_url", "image_url": {"url": url}}

    def tool_result(self, block: dict[str, Any], p: str) -> dict[str, Any]:
        if block.get("tool_use_id") is None:
            raise _missing(f"{p}.tool_use_id")
        call_id = _str(block["tool_use_id"], f"{p}.tool_use_id")
        content = block.get("content")
        if content is None:
            content = ""
        elif not isinstance(content, str):
            texts = []
            for k, part in enumerate(_list(content, f"{p}.content")):
                kind = _object(part, f"{p}.content[{k}]").get("type")
                if kind == "text":
                    texts.append({"type": "text", "text": self.text(part, f"{p}.content[{k}]")})
                elif kind in ("image", "document", "search_result"):
                    self.refuse(f"{p}.content[{k}].type", "chat tool messages carry text only")
                else:
                    msg = f"Invalid value for '{p}.content[{k}].type': {kind!r}."
                    raise invalid(msg, f"{p}.content[{k}].type")
            content = texts
        if block.get("is_error") is not None and _bool(block["is_error"], f"{p}.is_error"):
            # Chat has no error flag on a tool message: the model reads it in the text.
            content = (
                "Error: " + content if isinstance(content, str) else [{"type": "text", "text": "Error:"}, *content]
            )
        return {"role": "tool", "tool_call_id": call_id, "content": content}

    def assistant(self, content: Any, p: str) -> dict[str, Any]:
        if isinstance(content, str):
            return {"role": "assistant", "content": content}
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        reasoning: list[str] = []
        for j, block in enumerate(_list(content, p)):
            pp = f"{p}[{j}]"
            kind = _object(block, pp).get("type")
            if kind == "text":
                texts.append(self.text(block, pp))
            elif kind == "tool_use":
                calls.append(self.tool_use(block, pp))
            elif kind == "thinking":
                reasoning.append(_str(block.get("thinking"), f"{pp}.thinking"))
            elif kind == "redacted_thinking":
                _str(block.get("data"), f"{pp}.data")  # encrypted by another provider: nothing to read
            elif kind in _SERVER_BLOCKS:
                self.refuse(f"{pp}.type", f"{kind} blocks belong to server tools, which are not available")
            else:
                raise invalid(f"Invalid value for '{pp}.type': {kind!r} in an assistant message.", f"{pp}.type")
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
        if calls:
            message["tool_calls"] = calls
        if reasoning and self.opts.reasoning_history == "send":
            message["reasoning_content"] = "\n\n".join(reasoning)
        return message

    def tool_use(self, block: dict[str, Any], p: str) -> dict[str, Any]:
        for key in ("id", "name", "input"):
            if block.get(key) is None:
                raise _missing(f"{p}.{key}")
        arguments = _object(block["input"], f"{p}.input")
        return {
            "id": _str(block["id"], f"{p}.id"),
            "type": "function",
            "function": {"name": _str(block["name"], f"{p}.name"), "arguments": orjson.dumps(arguments).decode()},
        }

    def token_ids(self, turn: dict[str, Any], p: str) -> list[int] | None:
        """An earlier reply's token ids, echoed on its assistant message: its prompt + generation ids."""
        prompt, generation = turn.get("prompt_token_ids"), turn.get("generation_token_ids")
        if prompt is None:
            return None
        if generation is None:
            raise _missing(f"{p}.generation_token_ids")
        for key, value in (("prompt_token_ids", prompt), ("generation_token_ids", generation)):
            if not isinstance(value, list) or not all(type(t) is int and t >= 0 for t in value):
                raise type_error(f"{p}.{key}", "an array of token ids (integers >= 0)", value)
        if not prompt:
            raise invalid(f"Invalid '{p}.prompt_token_ids': empty array.", f"{p}.prompt_token_ids")
        return [*prompt, *generation]
