"""Responses request -> Chat Completions request, in one pass that also computes the Response's echo.

Every client mistake is a 400 naming its `param`. What a chat upstream cannot do is refused by name as
well (`unsupported`), unless the backend tolerates it: then it is dropped and reported in
`Translation.dropped`. What cannot be honoured but changes nothing a client relies on is dropped and
reported the same way without being asked to. Nothing is dropped silently. Decisions worth knowing:

- A param set to null counts as absent.
- `store: true`: refused (nothing is stored); with a store configured, state.py takes `store` (and the
  other stateful fields) off the request before it gets here.
- `reasoning.summary`: dropped and named; the model's reasoning comes back in full as `reasoning_text`
  content, with an empty `summary`.
- `stream_options.include_obfuscation: true`: dropped and named (no event carries obfuscation here).
- `prompt_cache_breakpoint` on content parts, `phase` on assistant messages: dropped and named (a chat
  request has no place for them).
- `namespace` tools: their function members are offered flattened (`<namespace>__<name>`, tools.py) and
  calls come back under the names sent; `custom` tools are offered as a function of one string argument
  and come back as `custom_tool_call` items.
- `include`: `message.output_text.logprobs` turns logprobs on; `reasoning.encrypted_content` returns the
  engine's reasoning sealed by the adapter (seal.py) and opens sealed items sent back; the other values
  concern built-in tools or inputs and are no-ops.
- `client_metadata`: accepted (checked as an object), never sent upstream; stored and captured with the
  request as sent.
- `text.verbosity`: sent as the chat param `TranslateOptions.verbosity_param` names, else unsupported.
- `service_tier`, `prompt_cache_key`, `safety_identifier`, `user`: passed on under the same chat names;
  the upstream honours or refuses them.
- Reasoning items from earlier turns: see `TranslateOptions.reasoning_history`; dropped ones are named.
- Assistant history: text parts are joined into one string, a refusal is sent as what the assistant said;
  consecutive function calls (and the assistant message just before them) become one assistant message.
- An empty `input` list is fine as long as something (instructions) is sent.

`check_responses_request` holds the value checks every backend applies, a request relayed natively to an
upstream's own Responses API included (some, like OpenRouter's, accept bad values silently).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import APIError, invalid, unsupported
from .options import TranslateOptions, Translation
from .schema import check_schema, strict_compatible
from .seal import SealError
from .tools import CUSTOM_KEYS, NAMESPACE_KEYS, custom_arguments, custom_function, engine_name

_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_SUMMARIES = ("auto", "concise", "detailed")
_TOOL_CHOICES = ("auto", "none", "required")
_LOGPROBS_INCLUDE = "message.output_text.logprobs"
# `include` values that concern built-in tools or echoing inputs: nothing to add here.
_NOOP_INCLUDES = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
    }
)
# Params a chat upstream has no counterpart for: refused when set (not null, not false).
_UNSUPPORTED = {
    "background": "responses run in the foreground only",
    "previous_response_id": "nothing is stored; send the whole conversation as input",
    "conversation": "nothing is stored; send the whole conversation as input",
    "prompt": "stored prompt templates are not available",
    "max_tool_calls": "built-in tools are not available",
    "context_management": "server-side context management is not available",
    "prompt_cache_retention": "prompt cache retention cannot be set",
    "prompt_cache_options": "prompt cache options cannot be set",
    "moderation": "moderation is not available",
}
# Item and tool types of the Responses API that belong to its built-in tools or stored state: refused by
# name (or dropped where tolerated). Any other type is a client error.
_BUILT_IN_ITEMS = frozenset(
    {
        "item_reference", "additional_tools", "apply_patch_call", "apply_patch_call_output", "code_interpreter_call",
        "compaction", "compaction_trigger", "computer_call", "computer_call_output",
        "file_search_call", "image_generation_call", "local_shell_call",
        "local_shell_call_output", "mcp_approval_request", "mcp_approval_response", "mcp_call", "mcp_list_tools",
        "program", "program_output", "shell_call", "shell_call_output", "tool_search_call", "tool_search_output",
        "web_search_call",
    }
)  # fmt: skip
_BUILT_IN_TOOLS = frozenset(
    {
        "apply_patch", "code_interpreter", "computer", "computer_use_preview", "file_search",
        "image_generation", "local_shell", "mcp", "programmatic_tool_calling", "shell", "tool_search",
        "web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11",
    }
)  # fmt: skip
_FUNCTION_TOOL_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})
_FORMATS = "text, json_object or json_schema"
_CHOICES = 'auto, none, required, or {"type": "function", "name": …}'
_STRING_OR_ITEMS = "a string or an array of input items"
_STRING_OR_PARTS = "a string or an array of content parts"
# The content part types each role's message takes (input_file and file_id are refused by name).
_PART_TYPES = {
    "user": "input_text, output_text, input_image or input_audio",
    "assistant": "output_text, input_text or refusal",
    "system": "input_text or output_text",
    "developer": "input_text or output_text",
}
_INDEX = re.compile(r"\[\d+\]")
# Output items a client may echo back carrying RL token data (NeMo Gym puts it on a turn's last item).
_TOKEN_ITEMS = ("message", "function_call", "reasoning")
# Handled once the rest is known (the messages; tool_choice needs the tools).
_LATER = ("model", "input", "instructions", "tool_choice")


def responses_to_chat(request: dict[str, Any], opts: TranslateOptions) -> Translation:
    """Translate a Responses API request body; raises APIError (400) on invalid or unsupported input."""
    return _Translation(opts).run(request)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def type_error(param: str, expected: str, value: Any) -> APIError:
    msg = f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead."
    return invalid(msg, param, "invalid_type")


def _missing(param: str) -> APIError:
    return invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise type_error(param, "a string", value)
    return value


def _number(value: Any, param: str, low: float, high: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise type_error(param, "a number", value)
    if not low <= value <= high:
        raise invalid(f"Invalid '{param}': {value} is not between {low:g} and {high:g}.", param)
    return value


def _int(value: Any, param: str, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise type_error(param, "an integer", value)
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise invalid(f"Invalid '{param}': {value} is not {bound}.", param)
    return value


def _bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise type_error(param, "a boolean", value)
    return value


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise type_error(param, "an object", value)
    return value


def _list(value: Any, param: str, expected: str = "an array") -> list[Any]:
    if not isinstance(value, list):
        raise type_error(param, expected, value)
    return value


def _reasoning(value: Any, extras: frozenset[str] | None) -> dict[str, Any]:
    """`reasoning`, its values checked; keys other than effort and summary: kept where `extras` lists them
    (or any, where it is None), else left for the caller to refuse."""
    value = _object(value, "reasoning")
    for key, setting in value.items():
        if setting is None:
            continue
        if key == "effort" and setting not in _EFFORTS:
            msg = f"Invalid value for 'reasoning.effort': {setting!r}; use one of {', '.join(_EFFORTS)}."
            raise invalid(msg, "reasoning.effort")
        if key in ("summary", "generate_summary") and setting not in _SUMMARIES:
            msg = f"Invalid value for 'reasoning.{key}': {setting!r}; use one of {', '.join(_SUMMARIES)}."
            raise invalid(msg, f"reasoning.{key}")
    return value


def _metadata(value: Any) -> dict[str, Any]:
    value = _object(value, "metadata")
    if len(value) > 16:
        raise invalid(f"Invalid 'metadata': {len(value)} key-value pairs; at most 16 are allowed.", "metadata")
    for key, item in value.items():
        if len(key) > 64:
            raise invalid(f"Invalid 'metadata': key {key[:64]!r}… is longer than 64 characters.", "metadata")
        if not isinstance(item, str):
            raise type_error(f"metadata.{key}", "a string", item)
        if len(item) > 512:
            raise invalid(f"Invalid 'metadata.{key}': longer than 512 characters.", f"metadata.{key}")
    return value


# The value checks of `check_responses_request`: params whose domain the spec fixes.
_VALUES = {
    "temperature": lambda v: _number(v, "temperature", 0, 2),
    "top_p": lambda v: _number(v, "top_p", 0, 1),
    "top_logprobs": lambda v: _int(v, "top_logprobs", 0, 20),
    "max_output_tokens": lambda v: _int(v, "max_output_tokens", 1),
    "parallel_tool_calls": lambda v: _bool(v, "parallel_tool_calls"),
    "store": lambda v: _bool(v, "store"),
    "stream": lambda v: _bool(v, "stream"),
    "metadata": _metadata,
    "reasoning": lambda v: _reasoning(v, None),
}


def check_responses_request(body: Any) -> None:
    """The checks of a Responses request every backend applies, also where it is relayed to an upstream's
    own Responses API as it is: the values the spec fixes (sampling ranges, `reasoning.effort` and
    `.summary`, booleans, metadata limits) give the same 400 as on a translated request. Keys are not
    checked: a native upstream may know more of them than the translation does."""
    body = _object(body, "body")
    for key, check in _VALUES.items():
        if body.get(key) is not None:
            check(body[key])


def _function_call(item: dict[str, Any], p: str) -> dict[str, Any]:
    for key in ("call_id", "name", "arguments"):
        if item.get(key) is None:
            raise _missing(f"{p}.{key}")
    name, arguments = _str(item["name"], f"{p}.name"), _str(item["arguments"], f"{p}.arguments")
    return {
        "id": _str(item["call_id"], f"{p}.call_id"),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _custom_call(item: dict[str, Any], p: str) -> dict[str, Any]:
    for key in ("call_id", "name", "input"):
        if item.get(key) is None:
            raise _missing(f"{p}.{key}")
    name, text = _str(item["name"], f"{p}.name"), _str(item["input"], f"{p}.input")
    return {
        "id": _str(item["call_id"], f"{p}.call_id"),
        "type": "function",
        "function": {"name": name, "arguments": custom_arguments(text)},
    }


def _reasoning_text(item: dict[str, Any], p: str) -> str:
    """The text of an earlier turn's reasoning item: its full content, else its summary."""
    texts = []
    for key in ("content", "summary"):
        parts = item.get(key)
        if parts is None:
            continue
        for j, part in enumerate(_list(parts, f"{p}.{key}")):
            texts.append(_str(_object(part, f"{p}.{key}[{j}]").get("text"), f"{p}.{key}[{j}].text"))
        if texts:
            break
    return "\n\n".join(texts)


class _Translation:
    def __init__(self, opts: TranslateOptions) -> None:
        self.opts = opts
        self.dropped: list[str] = []
        self.token_prefix: tuple[int, list[int]] | None = None
        self.echo: dict[str, Any] = {}  # the Response's fields that echo the request (envelope.py)
        self.logprobs = False  # output_text logprobs asked for
        self.tool_map: dict[str, tuple[str, str | None, str]] = {}  # engine name -> (kind, namespace, name)
        self.seal = False  # reasoning.encrypted_content asked for

    def refuse(self, param: str, why: str) -> None:
        """Refuse `param` with a 400, or drop and report it where the backend tolerates it."""
        key = _INDEX.sub("", param)
        if key in self.opts.tolerate_params:
            self.dropped.append(param)
            return
        raise unsupported(param, f"{why} (the adapter can be configured to drop it: tolerate '{key}').")

    # -- the request -------------------------------------------------------------------------
    def run(self, request: Any) -> Translation:
        request = _object(request, "body")
        model = request.get("model")
        if model is None:
            raise _missing("model")
        messages: list[dict[str, Any]] = []  # filled in once the rest is checked
        body: dict[str, Any] = {"model": _str(model, "model"), "messages": messages}
        self.echo["model"] = body["model"]
        for key, value in request.items():
            if value is not None and key not in _LATER:
                self.option(key, value, body)

        instructions = request.get("instructions")
        if isinstance(instructions, str):
            messages.append({"role": "system", "content": instructions})
        elif instructions is not None:
            items = _list(instructions, "instructions", _STRING_OR_ITEMS)
            messages.extend(self.items(items, "instructions", len(messages)))
        self.echo["instructions"] = instructions
        value = request.get("input")
        if isinstance(value, str):
            messages.append({"role": "user", "content": value})
        elif value is not None:
            messages.extend(self.items(_list(value, "input", _STRING_OR_ITEMS), "input", len(messages)))
        if not messages:
            raise invalid("The request has no input: send 'input' (or 'instructions').", "input", "empty_input")

        if request.get("tool_choice") is not None:
            self.tool_choice(request["tool_choice"], body)
        if "tools" in body and request.get("parallel_tool_calls") is not None:
            body["parallel_tool_calls"] = request["parallel_tool_calls"]
        if self.logprobs:
            body["logprobs"] = True
        # Markup in content is a call the engine's parser missed, unless the client said no calls.
        markup = "tools" in body and body.get("tool_choice") != "none"
        self.force_tool_choice(request, body)
        out = Translation(body, self.dropped, self.token_prefix, self.echo, self.logprobs, self.opts, markup)
        out.tool_map, out.seal = self.tool_map, self.seal
        return out

    def force_tool_choice(self, request: dict[str, Any], body: dict[str, Any]) -> None:
        """The operator's forced tool choice (MODELYARD_FORCE_TOOL_CHOICE), on a turn's first step only
        (the input does not end with a tool's output), so an agent loop still ends."""
        force = self.opts.force_tool_choice
        if not force or "tools" not in body:
            return
        items = request.get("input")
        last = items[-1] if isinstance(items, list) and items else {}
        if isinstance(last, dict) and str(last.get("type", "")).endswith("_output"):
            return
        if force in ("required", "auto", "none"):
            body["tool_choice"] = force
            return
        for wanted in force.split(","):  # several names: the first one offered (one setting, several harnesses)
            name = next((e for e, (_, ns, n) in self.tool_map.items() if wanted in (n, f"{ns}.{n}")), wanted)
            for tool in body["tools"]:
                if tool["function"]["name"] == name:
                    body["tool_choice"] = {"type": "function", "function": {"name": name}}
                    # Strict, so the engine constrains the arguments to the schema (vLLM does so only then).
                    tool["function"]["strict"] = True
                    return

    def option(self, key: str, value: Any, body: dict[str, Any]) -> None:
        """One top-level param (not null): checked, put on the chat body, echoed."""
        if key in _VALUES:
            _VALUES[key](value)
        if key == "tools":
            tools = self.tools(value)
            if tools:
                body["tools"] = tools
        elif key == "max_output_tokens":
            body[self.opts.max_tokens_param] = self.echo[key] = value
        elif key in ("temperature", "top_p", "top_logprobs"):
            body[key] = value  # echoed from the chat body, as it is in force once the backend is done
            self.logprobs = self.logprobs or key == "top_logprobs"
        elif key == "parallel_tool_calls":
            self.echo[key] = value
        elif key == "text":
            self.text(value, body)
        elif key == "reasoning":
            self.reasoning(value, body)
        elif key == "metadata":
            self.echo[key] = value
        elif key == "client_metadata":
            _object(value, key)  # the harness's session ids: kept with the request as sent, never upstream
        elif key == "include":
            self.logprobs = self.include(value) or self.logprobs
        elif key == "stream":
            if value:
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
        elif key == "stream_options":
            self.stream_options(value)
        elif key == "store":
            if value:
                self.refuse(
                    key, "no response store is configured (MODELYARD_STORE_URL); send store: false or leave it out"
                )
        elif key == "truncation":
            if value == "auto":
                self.refuse(key, "the input is never truncated to fit")
            elif value != "disabled":
                raise invalid(f"Invalid value for 'truncation': {value!r}; use 'disabled' or 'auto'.", key)
        elif key in ("user", "service_tier", "prompt_cache_key", "safety_identifier"):
            body[key] = self.echo[key] = _str(value, key)
        elif key in _UNSUPPORTED:
            if value is not False:
                self.refuse(key, _UNSUPPORTED[key])
        elif key in self.opts.tolerate_params:
            self.dropped.append(key)
        else:
            raise invalid(f"Unknown parameter: '{key}'.", key, "unknown_parameter")

    def stream_options(self, value: Any) -> None:
        for key, setting in _object(value, "stream_options").items():
            if setting is None:
                continue
            if key != "include_obfuscation":
                raise invalid(
                    f"Unknown parameter: 'stream_options.{key}'.", f"stream_options.{key}", "unknown_parameter"
                )
            if _bool(setting, "stream_options.include_obfuscation"):
                self.dropped.append("stream_options.include_obfuscation")  # no event here carries obfuscation

    # -- tools -------------------------------------------------------------------------------
    def tools(self, value: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        echo = self.echo["tools"] = []
        for i, tool in enumerate(_list(value, "tools")):
            p = f"tools[{i}]"
            tool = _object(tool, p)
            kind = tool.get("type")
            if kind is None:
                raise _missing(f"{p}.type")
            if _str(kind, f"{p}.type") in _BUILT_IN_TOOLS:
                self.refuse(f"{p}.type", f"built-in tool '{kind}' is not available; only function tools are")
                continue
            if kind == "namespace":
                out.extend(self.namespace(tool, p))
                echo.append(tool)
            elif kind == "custom":
                out.append(self.custom(tool, p, None))
                echo.append(tool)
            elif kind == "function":
                out.append(self.function(tool, p, None))
            else:
                msg = f"Invalid value for '{p}.type': {kind!r} is not a tool type; use function, custom or namespace."
                raise invalid(msg, f"{p}.type")
        names = [t["function"]["name"] for t in out]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise invalid(f"Invalid 'tools': the function name(s) {', '.join(twice)} occur more than once.", "tools")
        return out

    def tool_name(self, tool: dict[str, Any], p: str) -> str:
        if tool.get("name") is None:
            raise _missing(f"{p}.name")
        name = _str(tool["name"], f"{p}.name")
        if not name:
            raise invalid(f"Invalid '{p}.name': empty string; expected a non-empty string.", f"{p}.name")
        return name

    def namespace(self, tool: dict[str, Any], p: str) -> list[dict[str, Any]]:
        """A namespace's members, flattened for the engine; calls map back (tool_map)."""
        space = self.tool_name(tool, p)
        for key, extra in tool.items():
            if key not in NAMESPACE_KEYS and extra is not None:
                raise invalid(f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}", "unknown_parameter")
        out = []
        for j, member in enumerate(_list(tool.get("tools") or [], f"{p}.tools")):
            q = f"{p}.tools[{j}]"
            kind = _object(member, q).get("type")
            if kind == "function":
                out.append(self.function(member, q, space))
            elif kind == "custom":
                out.append(self.custom(member, q, space))
            else:
                msg = f"Invalid value for '{q}.type': {kind!r}; a namespace holds function or custom tools."
                raise invalid(msg, f"{q}.type")
        return out

    def custom(self, tool: dict[str, Any], p: str, space: str | None) -> dict[str, Any]:
        """A freeform tool: a function of one string argument for the engine."""
        name = self.tool_name(tool, p)
        for key, extra in tool.items():
            if key not in CUSTOM_KEYS and extra is not None:
                raise invalid(f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}", "unknown_parameter")
        description = tool.get("description")
        if description is not None:
            _str(description, f"{p}.description")
        fmt = tool.get("format")
        if fmt is not None and _object(fmt, f"{p}.format").get("type") not in ("text", "grammar"):
            msg = f"Invalid value for '{p}.format.type': {fmt.get('type')!r}; use text or grammar."
            raise invalid(msg, f"{p}.format.type")
        flat = engine_name(space, name)
        self.tool_map[flat] = ("custom", space, name)
        return {"type": "function", "function": custom_function(flat, description, fmt)}

    def function(self, tool: dict[str, Any], p: str, space: str | None) -> dict[str, Any]:
        echo = self.echo["tools"]
        function: dict[str, Any] = {"name": self.tool_name(tool, p)}
        if space is not None:
            self.tool_map[engine_name(space, function["name"])] = ("function", space, function["name"])
            function["name"] = engine_name(space, function["name"])
        if tool.get("description") is not None:
            function["description"] = _str(tool["description"], f"{p}.description")
        if tool.get("parameters") is not None:
            check_schema(tool["parameters"], f"{p}.parameters")
            function["parameters"] = tool["parameters"]
        if tool.get("strict") is not None:
            function["strict"] = _bool(tool["strict"], f"{p}.strict")
        elif "parameters" in function and strict_compatible(function["parameters"]):
            # The Responses API's default: strict when the schema allows it (chat's default is off).
            function["strict"] = True
        for key, extra in tool.items():
            if key not in _FUNCTION_TOOL_KEYS and extra not in (None, False):
                self.refuse(f"{p}.{key}", "function tool options beyond name, description, parameters and strict")
        if space is None:  # echoed as enforced: an omitted `strict` means strict where the schema allows it
            fields = ("name", "description", "parameters")
            strict = function.get("strict", False)
            echo.append({"type": "function", **{k: function.get(k) for k in fields}, "strict": strict})
        return {"type": "function", "function": function}

    def tool_choice(self, value: Any, body: dict[str, Any]) -> None:
        names = {t["function"]["name"] for t in body.get("tools", ())}
        if isinstance(value, str):
            if value not in _TOOL_CHOICES:
                msg = f"Invalid value for 'tool_choice': {value!r}; use {_CHOICES}."
                raise invalid(msg, "tool_choice")
            if value == "required" and not names:
                raise invalid("tool_choice 'required' needs function tools in 'tools'.", "tool_choice")
            if names:
                body["tool_choice"] = value
            self.echo["tool_choice"] = value
            return
        kind = _object(value, "tool_choice").get("type")
        if kind not in ("function", "custom"):
            self.refuse("tool_choice", f"tool_choice of type {kind!r} (only auto, none, required, function and custom)")
            return  # dropped: the model chooses freely, the echo's default "auto"
        if value.get("name") is None:
            raise _missing("tool_choice.name")
        sent = _str(value["name"], "tool_choice.name")
        space = value.get("namespace")
        name = engine_name(_str(space, "tool_choice.namespace"), sent) if space is not None else sent
        if name not in names:
            known = ", ".join(sorted(names)) or "none"
            msg = f"tool_choice names function {name!r}, which is not in 'tools' (function tools: {known})."
            raise invalid(msg, "tool_choice.name")
        body["tool_choice"] = {"type": "function", "function": {"name": name}}
        self.echo["tool_choice"] = {k: v for k, v in value.items() if v is not None}

    # -- output options ----------------------------------------------------------------------
    def text(self, value: Any, body: dict[str, Any]) -> None:
        for key, setting in _object(value, "text").items():
            if setting is None:
                continue
            if key == "verbosity":
                if setting not in ("low", "medium", "high"):
                    msg = f"Invalid value for 'text.verbosity': {setting!r}; use low, medium or high."
                    raise invalid(msg, "text.verbosity")
                if self.opts.verbosity_param:
                    body[self.opts.verbosity_param] = setting
                else:
                    self.refuse("text.verbosity", "output verbosity cannot be set on this backend")
            elif key != "format":
                raise invalid(f"Unknown parameter: 'text.{key}'.", f"text.{key}", "unknown_parameter")
        fmt = value.get("format")
        if fmt is None:
            return
        kind = _object(fmt, "text.format").get("type")
        if kind in ("text", "json_object"):
            self.echo["text"] = {"format": {"type": kind}}
        if kind == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif kind == "json_schema":
            for key in ("name", "schema"):
                if fmt.get(key) is None:
                    raise _missing(f"text.format.{key}")
            schema = {"name": _str(fmt["name"], "text.format.name")}
            if fmt.get("description") is not None:
                schema["description"] = _str(fmt["description"], "text.format.description")
            check_schema(fmt["schema"], "text.format.schema")
            schema["schema"] = fmt["schema"]
            if fmt.get("strict") is not None:
                schema["strict"] = _bool(fmt["strict"], "text.format.strict")
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
            self.echo["text"] = {"format": {"type": "json_schema", **schema}}
        elif kind is None:
            raise _missing("text.format.type")
        elif kind != "text":
            msg = f"Invalid value for 'text.format.type': {kind!r}; use {_FORMATS}."
            raise invalid(msg, "text.format.type")

    def reasoning(self, value: Any, body: dict[str, Any]) -> None:
        extras = self.opts.reasoning_extras
        sent: dict[str, Any] = {}
        for key, setting in _reasoning(value, extras).items():
            if setting is None:
                continue
            if key == "effort":
                sent["effort"] = setting
            elif key in ("summary", "generate_summary"):
                self.dropped.append(f"reasoning.{key}")  # the reasoning comes back in full, not summarized
            elif key in extras:
                sent[key] = setting
            else:
                self.refuse(f"reasoning.{key}", "only reasoning effort can be set")
        if self.opts.reasoning_param == "reasoning":
            if sent:
                body["reasoning"] = sent
        elif "effort" in sent:
            body["reasoning_effort"] = sent["effort"]
        self.echo["reasoning"] = {"effort": sent.get("effort"), "summary": None}

    def include(self, value: Any) -> bool:
        """Check `include`; True where it asks for logprobs."""
        logprobs = False
        for i, entry in enumerate(_list(value, "include")):
            entry = _str(entry, f"include[{i}]")
            if entry == _LOGPROBS_INCLUDE:
                logprobs = True
            elif entry == "reasoning.encrypted_content":
                if self.opts.sealer is not None:
                    self.seal = True
                else:
                    why = "reasoning is not sealed here (MODELYARD_SEAL_KEYS); send reasoning items back as they are"
                    self.refuse(f"include[{i}]", why)
            elif entry not in _NOOP_INCLUDES:
                known = ", ".join(sorted({_LOGPROBS_INCLUDE, *_NOOP_INCLUDES}))
                raise invalid(f"Invalid value for 'include[{i}]': {entry!r}; use one of {known}.", f"include[{i}]")
        return logprobs

    # -- input items -------------------------------------------------------------------------
    def items(self, items: list[Any], param: str, base: int = 0) -> list[dict[str, Any]]:
        """Input items -> chat messages; `base`: how many messages come before these (token_prefix)."""
        messages: list[dict[str, Any]] = []
        assistant: dict[str, Any] | None = None  # where following function calls merge in
        assistant_at = -1  # its index in `messages`
        reasoning: list[str] = []  # earlier reasoning waiting for its assistant message
        reasoning_ids: list[int] | None = None  # token ids a reasoning item carried, likewise
        send_reasoning = self.opts.reasoning_history == "send"
        for i, item in enumerate(items):
            p = f"{param}[{i}]"
            item = _object(item, p)
            kind = item.get("type")
            if kind is None and "role" in item:
                kind = "message"
            ids = self.token_ids(item, p) if self.opts.token_ids and kind in _TOKEN_ITEMS else None
            if kind == "message":
                message = self.message(item, p)
                messages.append(message)
                assistant = message if message["role"] == "assistant" else None
                assistant_at = len(messages) - 1
            elif kind in ("function_call", "custom_tool_call"):
                call = _function_call(item, p) if kind == "function_call" else _custom_call(item, p)
                if item.get("namespace") is not None:  # the flattened name the engine was offered
                    space = _str(item["namespace"], f"{p}.namespace")
                    call["function"]["name"] = engine_name(space, call["function"]["name"])
                if assistant is None:
                    assistant = {"role": "assistant"}
                    messages.append(assistant)
                    assistant_at = len(messages) - 1
                assistant.setdefault("tool_calls", []).append(call)
            elif kind in ("function_call_output", "custom_tool_call_output"):
                messages.append(self.tool_output(item, p))
                assistant = None
            elif kind == "reasoning":
                text = self.unseal(item, p)
                if send_reasoning and text:
                    reasoning.append(text)
                elif text:
                    self.dropped.append(p)  # an earlier turn's reasoning, not sent (reasoning_history)
                if ids is not None:
                    reasoning_ids = ids
                continue
            elif isinstance(kind, str) and kind in _BUILT_IN_ITEMS:
                self.refuse(f"{p}.type", f"input items of type '{kind}' are not available")
                continue
            elif kind is None:
                raise _missing(f"{p}.type")
            else:
                kind = _str(kind, f"{p}.type")
                known = "message, function_call, function_call_output, custom_tool_call, "
                known += "custom_tool_call_output or reasoning"
                raise invalid(f"Invalid value for '{p}.type': {kind!r}; use {known}.", f"{p}.type")
            if reasoning:  # it belongs to the assistant turn right after it, if that is what came
                if assistant is not None:
                    earlier = assistant.get("reasoning_content")
                    assistant["reasoning_content"] = "\n\n".join([earlier, *reasoning] if earlier else reasoning)
                reasoning.clear()
            ids = ids if ids is not None else reasoning_ids
            reasoning_ids = None
            if ids is not None and assistant is not None:  # the latest turn's ids win
                self.token_prefix = (base + assistant_at, ids)
        return messages

    def unseal(self, item: dict[str, Any], p: str) -> str:
        """An earlier turn's reasoning: sealed by this adapter (encrypted_content, authoritative), else as sent."""
        sealed = item.get("encrypted_content")
        if sealed is None:
            return _reasoning_text(item, p)
        sealer = self.opts.sealer
        if sealer is None:
            self.refuse(f"{p}.encrypted_content", "reasoning is not sealed here (MODELYARD_SEAL_KEYS)")
            return ""
        try:
            return sealer.open(_str(sealed, f"{p}.encrypted_content"))
        except SealError as err:
            msg = f"Invalid '{p}.encrypted_content': the reasoning item was {err}."
            raise invalid(msg, f"{p}.encrypted_content", "invalid_encrypted_content") from None

    def token_ids(self, item: dict[str, Any], p: str) -> list[int] | None:
        """An earlier turn's token ids echoed on its output item: its prompt + generation ids."""
        prompt = item.get("prompt_token_ids")
        if prompt is None:
            return None
        generation = item.get("generation_token_ids")
        if generation is None:
            raise _missing(f"{p}.generation_token_ids")
        for key, value in (("prompt_token_ids", prompt), ("generation_token_ids", generation)):
            value = _list(value, f"{p}.{key}")
            if not all(type(t) is int and t >= 0 for t in value):
                raise invalid(f"Invalid '{p}.{key}': expected an array of token ids (integers >= 0).", f"{p}.{key}")
        if not prompt:
            raise invalid(f"Invalid '{p}.prompt_token_ids': empty array.", f"{p}.prompt_token_ids")
        logprobs = item.get("generation_log_probs")
        if logprobs is not None and len(_list(logprobs, f"{p}.generation_log_probs")) != len(generation):
            msg = f"Invalid '{p}.generation_log_probs': {len(logprobs)} values for {len(generation)} generation tokens."
            raise invalid(msg, f"{p}.generation_log_probs")
        return [*prompt, *generation]

    def message(self, item: dict[str, Any], p: str) -> dict[str, Any]:
        role = item.get("role")
        if role is None:
            raise _missing(f"{p}.role")
        if role not in ("user", "assistant", "system", "developer"):
            msg = f"Invalid value for '{p}.role': {role!r}; use user, assistant, system or developer."
            raise invalid(msg, f"{p}.role")
        content = item.get("content")
        if content is None:
            raise _missing(f"{p}.content")
        if not isinstance(content, str):
            content = self.parts(_list(content, f"{p}.content", _STRING_OR_PARTS), role, f"{p}.content")
        if item.get("phase") is not None:
            self.dropped.append(f"{p}.phase")  # a chat message has no phase
        if role == "developer":
            role = self.opts.developer_role
        return {"role": role, "content": content}

    def parts(self, parts: list[Any], role: str, p: str) -> str | list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for j, part in enumerate(parts):
            pp = f"{p}[{j}]"
            kind = _object(part, pp).get("type")
            if part.get("prompt_cache_breakpoint") is not None:
                self.dropped.append(f"{pp}.prompt_cache_breakpoint")  # the upstream caches prompts its own way
            if kind in ("input_text", "output_text"):
                out.append({"type": "text", "text": _str(part.get("text"), f"{pp}.text")})
            elif kind == "refusal" and role == "assistant":
                out.append({"type": "text", "text": _str(part.get("refusal"), f"{pp}.refusal")})
            elif kind == "input_image" and role == "user":
                if part.get("file_id") is not None:
                    self.refuse(f"{pp}.file_id", "uploaded files are not available; send the image by URL or data URL")
                    continue
                if part.get("image_url") is None:
                    raise _missing(f"{pp}.image_url")
                image = {"url": _str(part["image_url"], f"{pp}.image_url")}
                if part.get("detail") is not None:
                    image["detail"] = _str(part["detail"], f"{pp}.detail")
                out.append({"type": "image_url", "image_url": image})
            elif kind == "input_audio" and role == "user":
                if part.get("input_audio") is None:
                    raise _missing(f"{pp}.input_audio")
                audio = _object(part["input_audio"], f"{pp}.input_audio")
                data, fmt = audio.get("data"), audio.get("format")
                audio = {"data": _str(data, f"{pp}.input_audio.data"), "format": _str(fmt, f"{pp}.input_audio.format")}
                out.append({"type": "input_audio", "input_audio": audio})
            elif kind == "input_file" and role == "user":
                self.refuse(f"{pp}.type", "file inputs are not available")
            else:
                msg = f"Invalid value for '{pp}.type': {kind!r} in a {role} message; use {_PART_TYPES[role]}."
                raise invalid(msg, f"{pp}.type")
        if role == "assistant":  # chat templates expect the assistant's turn as one string
            return "".join(part["text"] for part in out)
        return out

    def tool_output(self, item: dict[str, Any], p: str) -> dict[str, Any]:
        if item.get("call_id") is None:
            raise _missing(f"{p}.call_id")
        call_id = _str(item["call_id"], f"{p}.call_id")
        output = item.get("output")
        if output is None:
            raise _missing(f"{p}.output")
        if not isinstance(output, str):
            parts = []
            for j, part in enumerate(_list(output, f"{p}.output", "a string or an array of input_text parts")):
                kind = _object(part, f"{p}.output[{j}]").get("type")
                if kind == "input_text":
                    parts.append({"type": "text", "text": _str(part.get("text"), f"{p}.output[{j}].text")})
                elif kind in ("input_image", "input_file"):
                    self.refuse(f"{p}.output[{j}].type", "chat tool messages carry text only")
                else:
                    msg = f"Invalid value for '{p}.output[{j}].type': {kind!r}; use input_text."
                    raise invalid(msg, f"{p}.output[{j}].type")
            output = parts
        return {"role": "tool", "tool_call_id": call_id, "content": output}
