"""env.yaml -> .env: the one file a user edits, rendered into the variables compose.yaml reads.

env.yaml.example documents every key. String values may reference the process environment
(`${VAR}`, `${VAR:-default}`) so keys can stay out of the file. A NeMo Gym model config
(configs/README.md) can supply the policy settings. Secrets are never printed: `--check` shows them
as ***, and error messages name a secret key without its value. The .env is written mode 0600.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import ipaddress
import json
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BACKENDS = ("cpu", "vllm", "nim", "nim-hosted", "openai", "azure", "openrouter")
DEFAULT_BACKEND = "cpu"
# The gateway routes by adapter name: the CPU engine sits behind adapter-vllm, hosted NIM behind adapter-nim.
GATEWAY_BACKEND = {"cpu": "vllm", "nim-hosted": "nim"}
NIM_HOSTED_URL = "https://integrate.api.nvidia.com/v1"
# Where each profile's adapter takes policy_base_url and policy_api_key.
POLICY_VARS = {
    "cpu": ("VLLM_BASE_URL", "VLLM_API_KEY"),
    "vllm": ("VLLM_BASE_URL", "VLLM_API_KEY"),
    "nim": ("NIM_BASE_URL", "NVIDIA_API_KEY"),
    "nim-hosted": ("NIM_BASE_URL", "NVIDIA_API_KEY"),
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "azure": ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"),
    "openrouter": ("OPENROUTER_BASE_URL", "OPENROUTER_API_KEY"),
}
# Profiles whose adapter may spread over several engine replicas (policy_base_url as a list).
REPLICA_PROFILES = ("cpu", "vllm", "nim", "nim-hosted")
# Profiles that start an engine of their own next to the adapter.
LOCAL_ENGINE = {"cpu": "vllm-cpu", "vllm": "vllm", "nim": "nim"}


class ConfigError(Exception):
    """Problems in env.yaml or a NeMo Gym config, one line each, every line naming its key."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class _Invalid(ValueError):
    """A value of the wrong type or form; the message says what was expected."""


# ---------------------------------------------------------------- value converters (value -> .env text)


def text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | float):
        raise _Invalid("a string (quote it in YAML)")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime.date):  # YAML reads an unquoted 2024-10-21 as a date
        return value.isoformat()
    raise _Invalid("a string")


def word(value: Any) -> str:
    value = text(value)
    if not value.strip() or any(c.isspace() for c in value):
        raise _Invalid("a single word without spaces")
    return value


def url(value: Any) -> str:
    value = text(value)
    if not re.fullmatch(r"https?://[^\s/]+\S*", value):
        raise _Invalid("an http:// or https:// URL")
    return value


def url_list(value: Any) -> str:
    """One base URL, or several engine replicas' (a YAML list, or comma-separated): comma-joined."""
    items = value if isinstance(value, list) else str(value if value is not None else "").split(",")
    urls = [url(str(v).strip()) for v in items if str(v).strip()]
    if not urls:
        raise _Invalid("an http:// or https:// URL, or a list of them (engine replicas)")
    return ",".join(urls)


def integer(low: int, high: int | None = None) -> Callable[[Any], str]:
    expected = f"an integer {low}-{high}" if high is not None else f"an integer >= {low}"

    def convert(value: Any) -> str:
        if isinstance(value, bool):
            raise _Invalid(expected)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if not isinstance(value, int) or value < low or (high is not None and value > high):
            raise _Invalid(expected)
        return str(value)

    return convert


def fraction(value: Any) -> str:
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not 0 < number <= 1:
        raise _Invalid("a number in (0, 1]")
    return str(value).strip()


def boolean(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower()
    if not isinstance(value, bool):
        raise _Invalid("true or false")
    return "true" if value else "false"


def choice(*options: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in options:
            raise _Invalid("one of " + ", ".join(options))
        return value

    return convert


_TOKENS = re.compile(r"\d+(\.\d+)?[kmgt]|\d+[KMGT]?")


def model_len(value: Any) -> str:
    """vLLM's --max-model-len: tokens, with 32k / 32K suffixes, or auto."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Invalid("a token count such as 8192, 32k or 32K, or auto")
    if value.lower() == "auto" or _TOKENS.fullmatch(value) and re.search(r"[1-9]", value):
        return value
    raise _Invalid("a token count such as 8192, 32k or 32K, or auto")


def gpu_count(value: Any) -> str:
    if value == "all":
        return value
    try:
        return integer(1)(value)
    except _Invalid:
        raise _Invalid("a number of GPUs (>= 1) or all") from None


def args(value: Any) -> str:
    """Extra engine flags: a YAML list (one item per argv word) or one shell-quoted string."""
    if isinstance(value, list):
        return shlex.join(text(item) for item in value)
    value = text(value)
    try:
        shlex.split(value)
    except ValueError:
        raise _Invalid("a list of arguments, or a string that splits like a shell command line") from None
    return value


def json_object(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _Invalid("a mapping (or a JSON object)") from None
    if not isinstance(value, dict):
        raise _Invalid("a mapping (or a JSON object)")
    return json.dumps(value, separators=(",", ":"), default=str)


def string_map(value: Any) -> str:
    rendered = json_object(value)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in json.loads(rendered).items()):
        raise _Invalid("a mapping of names to names")
    return rendered


def word_list(value: Any) -> str:
    if not isinstance(value, list):
        value = [item.strip() for item in text(value).split(",") if item.strip()]
    return ",".join(word(item) for item in value)


def image(value: Any) -> str:
    value = text(value)
    if not re.fullmatch(r"[\w][\w.\-/:@]*", value):
        raise _Invalid("an image reference such as registry/name:tag")
    return value


def bind(value: Any) -> str:
    try:
        address = ipaddress.ip_address(text(value).strip("[]"))
    except ValueError:
        raise _Invalid("an IP address to publish the gateway on, such as 127.0.0.1 or 0.0.0.0") from None
    return f"[{address}]" if address.version == 6 else str(address)


def nginx_size(value: Any) -> str:
    value = text(value)
    if not re.fullmatch(r"\d+[kKmMgG]?", value):
        raise _Invalid("an nginx size such as 32m, 512k or 0 (no limit)")
    return value


def nginx_time(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}s"
    value = text(value)
    if not re.fullmatch(r"(\d+(ms|s|m|h|d|w|M|y)? *)+", value.strip()):
        raise _Invalid("an nginx time such as 3600s, 60m or 1h")
    return value.strip()


def api_keys(value: Any) -> str:
    """Client keys for the gateway: a list (or one comma-separated string) of tokens nginx can match."""
    if not isinstance(value, list):
        value = [item for item in re.split(r"[,\s]+", text(value)) if item]
    keys = [text(item) for item in value]
    if not all(re.fullmatch(r"[A-Za-z0-9._~+/=-]{8,}", key) for key in keys):
        raise _Invalid("a list of keys, each 8 or more of A-Z a-z 0-9 . _ ~ + / = -")
    return ",".join(keys)


def nginx_rate(value: Any) -> str:
    """Requests per second (a number) or an nginx rate (10r/s, 600r/m); 0: no limit."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    value = text(value).strip()
    if not re.fullmatch(r"\d+(r/[sm])?", value):
        raise _Invalid("a rate such as 10 (per second), 10r/s or 600r/m; 0: no limit")
    return value


def developer_role(value: Any) -> str:
    return "system" if boolean(value) == "true" else "developer"


def reasoning_history(value: Any) -> str:
    """NeMo Gym's uses_interleaved_reasoning: earlier turns' reasoning is sent back (or dropped)."""
    return "send" if boolean(value) == "true" else "drop"


def think_tags(value: Any) -> str:
    if isinstance(value, str):
        value = value.split()
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(t, str) and t.strip() for t in value)):
        raise _Invalid('two tags, such as ["<think>", "</think>"]')
    return json.dumps(value)


# ---------------------------------------------------------------- the schema


@dataclass(frozen=True)
class Key:
    convert: Callable[[Any], str]
    var: str | None = None  # the .env variable it sets; None: mapped per profile in code
    secret: bool = False
    only: tuple[str, ...] = ()  # the profiles that use it; empty: every profile


V, C, N, OR = ("vllm",), ("cpu",), ("nim",), ("openrouter",)
VLLM_LIKE = ("cpu", "vllm")  # the profiles whose adapter talks to vLLM
ENGINES = ("cpu", "vllm", "nim", "nim-hosted")  # vLLM and NIM adapters

TOP: dict[str, Key] = {
    "policy_backend": Key(choice(*BACKENDS)),
    "policy_base_url": Key(url_list),  # a list: engine replicas (docs/replicas.md)
    "policy_api_key": Key(text, secret=True),
    "policy_model_name": Key(text),
    "policy_api_version": Key(text, "AZURE_OPENAI_API_VERSION", only=("azure",)),
    "nemo_gym_config": Key(text),
    "image_tag": Key(word, "MODELYARD_TAG"),
}

SECTIONS: dict[str, dict[str, Key]] = {
    "vllm": {
        "model": Key(text, "VLLM_MODEL", only=V),
        "served_model_name": Key(text, "VLLM_SERVED_MODEL_NAME", only=V),
        "tool_call_parser": Key(word, "VLLM_TOOL_CALL_PARSER", only=V),
        "reasoning_parser": Key(word, "VLLM_REASONING_PARSER", only=V),
        "tensor_parallel_size": Key(integer(1), "VLLM_TENSOR_PARALLEL_SIZE", only=V),
        "max_model_len": Key(model_len, "VLLM_MAX_MODEL_LEN", only=V),
        "gpu_memory_utilization": Key(fraction, "VLLM_GPU_MEMORY_UTILIZATION", only=V),
        "extra_args": Key(args, "VLLM_EXTRA_ARGS", only=V),
        "gpu_count": Key(gpu_count, "VLLM_GPU_COUNT", only=V),
        "hf_token": Key(text, "HF_TOKEN", secret=True, only=V),
        "base_image": Key(image, "VLLM_BASE_IMAGE"),
    },
    "cpu": {
        "kvcache_space_gb": Key(integer(1), "VLLM_CPU_KVCACHE_SPACE", only=C),
        "max_model_len": Key(model_len, "VLLM_MAX_MODEL_LEN", only=C),
        "extra_args": Key(args, "VLLM_EXTRA_ARGS", only=C),
        "base_image": Key(image, "VLLM_CPU_BASE_IMAGE"),
    },
    "nim": {
        "image": Key(image, "NIM_IMAGE", only=N),
        "ngc_api_key": Key(text, "NGC_API_KEY", secret=True, only=N),
        "gpu_count": Key(gpu_count, "NIM_GPU_COUNT", only=N),
        # native: NIM 2.x's own /v1/responses instead of the translation core over chat (docs/nim.md)
        "responses_mode": Key(choice("translate", "native"), "NIM_RESPONSES_MODE", only=("nim", "nim-hosted")),
    },
    "openai": {
        "organization": Key(text, "OPENAI_ORGANIZATION", only=("openai",)),
        "project": Key(text, "OPENAI_PROJECT", only=("openai",)),
    },
    "azure": {
        "api_version": Key(text, "AZURE_OPENAI_API_VERSION", only=("azure",)),
        "url_style": Key(choice("v1", "dated"), "AZURE_OPENAI_URL_STYLE", only=("azure",)),
        "deployment": Key(text, "AZURE_OPENAI_DEPLOYMENT", only=("azure",)),
        "deployment_map": Key(string_map, "AZURE_OPENAI_DEPLOYMENT_MAP", only=("azure",)),
        "reasoning_deployments": Key(word_list, "AZURE_OPENAI_REASONING_DEPLOYMENTS", only=("azure",)),
        "responses_mode": Key(choice("native", "translate"), "AZURE_OPENAI_RESPONSES_MODE", only=("azure",)),
        "ad_token": Key(text, "AZURE_OPENAI_AD_TOKEN", secret=True, only=("azure",)),
        "ad_token_file": Key(text, "AZURE_OPENAI_AD_TOKEN_FILE", only=("azure",)),
    },
    "openrouter": {
        "http_referer": Key(text, "OPENROUTER_HTTP_REFERER", only=OR),
        "x_title": Key(text, "OPENROUTER_X_TITLE", only=OR),
        "responses_mode": Key(choice("translate", "native"), "OPENROUTER_RESPONSES_MODE", only=OR),
    },
    "gateway": {
        "port": Key(integer(1, 65535), "GATEWAY_PORT"),
        "bind": Key(bind, "GATEWAY_BIND"),
        "max_body_size": Key(nginx_size, "GATEWAY_MAX_BODY_SIZE"),
        "read_timeout": Key(nginx_time, "GATEWAY_READ_TIMEOUT"),
        "api_keys": Key(api_keys, "GATEWAY_API_KEYS", secret=True),
        "rate_per_key": Key(nginx_rate, "GATEWAY_RATE_PER_KEY"),
        "rate_global": Key(nginx_rate, "GATEWAY_RATE_GLOBAL"),
        "burst": Key(integer(0), "GATEWAY_BURST"),
        "max_conns_per_key": Key(integer(0), "GATEWAY_MAX_CONNS_PER_KEY"),
        "max_conns": Key(integer(0), "GATEWAY_MAX_CONNS"),
        "retry_after": Key(integer(1), "GATEWAY_RETRY_AFTER"),
        "client_header_timeout": Key(nginx_time, "GATEWAY_CLIENT_HEADER_TIMEOUT"),
        "client_body_timeout": Key(nginx_time, "GATEWAY_CLIENT_BODY_TIMEOUT"),
        "send_timeout": Key(nginx_time, "GATEWAY_SEND_TIMEOUT"),
        "base_image": Key(image, "GATEWAY_BASE_IMAGE"),
    },
    # How the vLLM and NIM adapters shape requests and read replies (NeMo Gym's vllm_model names;
    # a NeMo Gym config's values win over these).
    "generation": {
        "return_token_id_information": Key(boolean, "MODELYARD_RETURN_TOKEN_IDS", only=VLLM_LIKE),
        "uses_reasoning_parser": Key(boolean, "MODELYARD_USES_REASONING_PARSER", only=ENGINES),
        "think_tags": Key(think_tags, "MODELYARD_THINK_TAGS", only=ENGINES),
        "reasoning_history": Key(choice("send", "drop"), "MODELYARD_REASONING_HISTORY", only=ENGINES),
        "chat_template_kwargs": Key(json_object, "MODELYARD_CHAT_TEMPLATE_KWARGS", only=ENGINES),
        "extra_body": Key(json_object, "MODELYARD_EXTRA_BODY", only=ENGINES),
        "sampling_overrides": Key(json_object, "MODELYARD_SAMPLING_OVERRIDES", only=ENGINES),
        "replace_developer_role_with_system": Key(developer_role, "MODELYARD_DEVELOPER_ROLE", only=ENGINES),
    },
    "adapter": {
        "workers": Key(integer(1), "MODELYARD_WORKERS"),
        "log_level": Key(choice("debug", "info", "warning", "error", "critical"), "MODELYARD_LOG_LEVEL"),
        "tolerate_params": Key(word_list, "MODELYARD_TOLERATE_PARAMS"),
        "context_overflow": Key(choice("error", "incomplete"), "MODELYARD_CONTEXT_OVERFLOW"),
        "shutdown_grace": Key(integer(1, 30), "MODELYARD_SHUTDOWN_GRACE"),  # under compose's 35 s
        "max_body_bytes": Key(integer(0), "MODELYARD_MAX_BODY_BYTES"),
        "max_input_items": Key(integer(0), "MODELYARD_MAX_INPUT_ITEMS"),
        "max_tools": Key(integer(0), "MODELYARD_MAX_TOOLS"),
        "base_image": Key(image, "ADAPTER_BASE_IMAGE"),
    },
}


# NeMo Gym model server types modelyard can stand in for, and the profiles that serve each.
NEMO_GYM_TYPES: dict[str, tuple[str, ...]] = {
    "vllm_model": ("cpu", "vllm"),
    "openai_model": ("openai",),
    "azure_openai_model": ("azure",),
}
# NeMo Gym's names for the connection settings (vllm_model uses plain names, the OpenAI ones openai_*).
NEMO_GYM_POLICY_KEYS = {
    "base_url": "policy_base_url",
    "api_key": "policy_api_key",
    "model": "policy_model_name",
    "openai_base_url": "policy_base_url",
    "openai_api_key": "policy_api_key",
    "openai_model": "policy_model_name",
}
# Settings of NeMo Gym's model server the adapters are to honour (rendered for compose to pass on).
NEMO_GYM_EXTRAS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "return_token_id_information": ("MODELYARD_RETURN_TOKEN_IDS", boolean),
    "uses_reasoning_parser": ("MODELYARD_USES_REASONING_PARSER", boolean),
    "replace_developer_role_with_system": ("MODELYARD_DEVELOPER_ROLE", developer_role),
    "chat_template_kwargs": ("MODELYARD_CHAT_TEMPLATE_KWARGS", json_object),
    "extra_body": ("MODELYARD_EXTRA_BODY", json_object),
    "sampling_overrides": ("MODELYARD_SAMPLING_OVERRIDES", json_object),
    "uses_interleaved_reasoning": ("MODELYARD_REASONING_HISTORY", reasoning_history),
}
# NeMo Gym's own plumbing: meaningless for modelyard, so ignored without a note.
NEMO_GYM_SILENT = {"entrypoint", "num_workers", "provides"}


# ---------------------------------------------------------------- interpolation

_ENV_REF = re.compile(r"\$\$\{|\$\{([^{}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _oc_env(body: str, environ: Mapping[str, str]) -> str:
    """OmegaConf's ${oc.env:VAR} / ${oc.env:VAR,default}."""
    name, sep, default = body.partition(",")
    name, default = name.strip(), default.strip().strip("'\"")
    if not _ENV_NAME.fullmatch(name):
        raise _Invalid(f"${{oc.env:{body}}} does not name an environment variable")
    if name in environ:
        return environ[name]
    if sep:
        return default
    raise _Invalid(f"${{oc.env:{name}}} is not set in the environment (or write ${{oc.env:{name},default}})")


def expand_env(value: str, environ: Mapping[str, str]) -> str:
    """`${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset); `$${` is a literal `${`."""

    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        if body is None:
            return "${"
        if body.startswith("oc.env:"):
            return _oc_env(body[len("oc.env:") :], environ)
        name, op, default = re.match(r"([^:\-]*)(:-|-)?(.*)", body, re.DOTALL).groups()
        if not _ENV_NAME.fullmatch(name):
            raise _Invalid(f"${{{body}}} does not name an environment variable")
        if op == ":-":
            return environ.get(name) or default
        if op == "-":
            return environ.get(name, default)
        if name not in environ:
            raise _Invalid(f"${{{name}}} is not set in the environment (or write ${{{name}:-default}})")
        return environ[name]

    return _ENV_REF.sub(replace, value)


def _expand_tree(node: Any, environ: Mapping[str, str], where: str, problems: list[str]) -> Any:
    if isinstance(node, str):
        try:
            return expand_env(node, environ)
        except _Invalid as exc:
            problems.append(f"{where}: {exc}")
            return None
    if isinstance(node, dict):
        return {k: _expand_tree(v, environ, f"{where}.{k}", problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_tree(v, environ, f"{where}[{i}]", problems) for i, v in enumerate(node)]
    return node


_OC_REF = re.compile(r"\\\$\{|\$\{([^{}]*)\}")


def _lookup(path: str, *trees: Mapping[str, Any]) -> tuple[bool, Any]:
    for tree in trees:
        node: Any = tree
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            return True, node
    return False, None


def interpolate_nemo_gym(
    node: Any, context: Mapping[str, Any], own: Mapping[str, Any], environ: Mapping[str, str]
) -> Any:
    """OmegaConf-style references, as NeMo Gym resolves them: `${key}` names a key of env.yaml (or of
    the config itself, dotted), `${oc.env:VAR,default}` the environment. A node that is one reference
    takes the referenced value with its type. An unset `policy_*` key reads as null (not given), since
    env.yaml needs only the ones its profile requires."""
    if isinstance(node, dict):
        return {k: interpolate_nemo_gym(v, context, own, environ) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_nemo_gym(v, context, own, environ) for v in node]
    if not isinstance(node, str):
        return node

    def resolve(body: str) -> Any:
        body = body.strip()
        if body.startswith("oc.env:"):
            return _oc_env(body[len("oc.env:") :], environ)
        found, value = _lookup(body, context, own)
        if found:
            return interpolate_nemo_gym(value, context, own, environ)
        if body.startswith("policy_") and "." not in body:
            return None
        raise _Invalid(f"${{{body}}} refers to a key that neither env.yaml nor the config has")

    whole = _OC_REF.fullmatch(node)
    if whole and whole.group(1) is not None:
        return resolve(whole.group(1))

    def replace(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "${"
        value = resolve(match.group(1))
        if value is None:
            raise _Invalid(f"${{{match.group(1)}}} is not set, so it cannot be part of a longer string")
        return str(value)

    return _OC_REF.sub(replace, node)


# ---------------------------------------------------------------- resolving a configuration


@dataclass
class Rendered:
    profile: str
    variables: dict[str, str]
    secrets: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def _unknown(key: str, allowed: Sequence[str], where: str) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(allowed)})"
    return f"{where}: unknown key '{key}'{hint}"


def _convert(spec: Key, value: Any, name: str, source: str, problems: list[str]) -> str | None:
    if value is None or value == "":
        return None
    try:
        rendered = spec.convert(value)
    except _Invalid as exc:
        shown = "" if spec.secret else f", got {value!r}"
        problems.append(f"{source}: {name} must be {exc}{shown}")
        return None
    return rendered or None


def load_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the {what}: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the {what} must be a mapping of keys to values"])
    return data


@dataclass
class _NemoGym:
    type: str
    policy: dict[str, Any]
    extras: dict[str, str]
    notes: list[str]


def _read_nemo_gym(
    path: Path, context: Mapping[str, Any], environ: Mapping[str, str], problems: list[str]
) -> _NemoGym | None:
    where = str(path)
    data = load_yaml(path, "NeMo Gym config")
    models = data.get("policy_model", {})
    models = models.get("responses_api_models") if isinstance(models, dict) else None
    if not isinstance(models, dict) or len(models) != 1:
        problems.append(f"{where}: expected policy_model.responses_api_models.<type> with one model type")
        return None
    ((kind, block),) = models.items()
    prefix = f"policy_model.responses_api_models.{kind}"
    if kind not in NEMO_GYM_TYPES:
        problems.append(
            f"{where}: {prefix}: NeMo Gym model type '{kind}' is not one modelyard serves "
            f"(supported: {', '.join(NEMO_GYM_TYPES)})"
        )
        return None
    if not isinstance(block, dict):
        problems.append(f"{where}: {prefix} must be a mapping")
        return None
    try:
        block = interpolate_nemo_gym(block, context, data, environ)
    except _Invalid as exc:
        problems.append(f"{where}: {prefix}: {exc}")
        return None
    except RecursionError:
        problems.append(f"{where}: {prefix}: its ${{...}} references loop back on themselves")
        return None

    policy: dict[str, Any] = {}
    extras: dict[str, str] = {}
    notes: list[str] = []
    for key, value in block.items():
        if key in NEMO_GYM_POLICY_KEYS:
            if isinstance(value, list) and key not in ("base_url", "openai_base_url"):
                if len(value) > 1:
                    problems.append(f"{where}: {prefix}.{key}: expected one value, got {len(value)}")
                    continue
                value = value[0] if value else None
            # Several vLLM servers (a base_url list) are engine replicas behind one adapter (docs/replicas.md).
            target = NEMO_GYM_POLICY_KEYS[key]
            policy[target] = _convert(TOP[target], value, f"{prefix}.{key}", where, problems)
        elif key == "default_query" and isinstance(value, dict) and "api-version" in value:
            name = f"{prefix}.default_query.api-version"
            policy["policy_api_version"] = _convert(
                TOP["policy_api_version"], value["api-version"], name, where, problems
            )
        elif key in NEMO_GYM_EXTRAS:
            var, convert = NEMO_GYM_EXTRAS[key]
            rendered = _convert(Key(convert), value, f"{prefix}.{key}", where, problems)
            if rendered is not None:
                extras[var] = rendered
        elif key not in NEMO_GYM_SILENT and value not in (None, {}, [], False):
            notes.append(f"{where}: {prefix}.{key} is ignored (modelyard does not use it)")
    return _NemoGym(kind, policy, extras, notes)


def _known(data: Mapping[str, Any], source: str, problems: list[str]) -> dict[str, Any]:
    """The known keys of env.yaml's data; unknown ones are dropped here and reported with every other
    problem at the end."""
    allowed = [*TOP, *SECTIONS]
    for key, value in data.items():
        if key not in allowed:
            problems.append(_unknown(str(key), allowed, source))
        elif key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                problems.append(f"{source}: {key} must be a mapping of its settings")
                continue
            for sub in value:
                if sub not in SECTIONS[key]:
                    problems.append(_unknown(str(sub), list(SECTIONS[key]), f"{source}: {key}"))
    return {
        k: {s: x for s, x in v.items() if s in SECTIONS[k]} if k in SECTIONS and isinstance(v, dict) else v
        for k, v in data.items()
        if k in TOP or (k in SECTIONS and (v is None or isinstance(v, dict)))
    }


def resolve(
    data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    source: str = "env.yaml",
    base_dir: Path | None = None,
    nemo_gym_config: Path | None = None,
) -> Rendered:
    """Validate env.yaml's data and map it onto compose's variables; ConfigError lists every problem."""
    environ = os.environ if environ is None else environ
    base_dir = base_dir or Path.cwd()
    problems: list[str] = []

    # 1. Shape: known keys only, sections are mappings.
    data = _known(data, source, problems)

    # 2. ${VAR} references from the process environment.
    data = {k: _expand_tree(v, environ, f"{source}: {k}", problems) for k, v in data.items()}

    # 3. A NeMo Gym model config supplies the policy settings and picks the kind of backend.
    notes: list[str] = []
    settings = {k: data.get(k) for k in TOP}
    nemo = None
    named = _convert(TOP["nemo_gym_config"], settings["nemo_gym_config"], "nemo_gym_config", source, problems)
    if nemo_gym_config is None and named:
        nemo_gym_config = base_dir / named  # relative to env.yaml; an absolute path stays as it is
    if nemo_gym_config is not None:
        try:
            nemo = _read_nemo_gym(nemo_gym_config, data, environ, problems)
        except ConfigError as exc:
            problems += exc.problems
        if nemo:
            notes += nemo.notes
            settings.update({k: v for k, v in nemo.policy.items() if v is not None})

    # 4. Types.
    top = {k: _convert(TOP[k], v, k, source, problems) for k, v in settings.items()}
    sections: dict[str, dict[str, str]] = {}
    for name, keys in SECTIONS.items():
        given = data.get(name) or {}
        sections[name] = {}
        for sub, value in given.items():
            rendered = _convert(keys[sub], value, f"{name}.{sub}", source, problems)
            if rendered is not None:
                sections[name][sub] = rendered

    _own_gateway(top, sections, source, notes)

    # 5. The profile.
    backend = top["policy_backend"]
    if nemo:
        fits = NEMO_GYM_TYPES[nemo.type]
        if backend and backend not in fits:
            problems.append(
                f"{source}: policy_backend '{backend}' does not serve NeMo Gym model type '{nemo.type}' "
                f"from {nemo_gym_config} (it fits: {', '.join(fits)})"
            )
        elif not backend:
            # vllm_model: a GPU engine when env.yaml names its model, else the embedded CPU default.
            backend = "vllm" if fits == ("cpu", "vllm") and "model" in sections["vllm"] else fits[0]
    backend = backend or DEFAULT_BACKEND
    if problems:
        raise ConfigError(problems)

    # 6. What the profile needs.
    problems += _required(backend, top, sections, source)
    if problems:
        raise ConfigError(problems)
    return _variables(backend, top, sections, nemo, notes, source)


def _own_gateway(top: dict[str, str | None], sections: dict[str, dict[str, str]], source: str, notes: list[str]):
    """A policy_base_url at this stack's own gateway is where NeMo Gym sends its requests (one config serves
    both, configs/nemo_gym_vllm_model_for_training.yaml), not an engine: the profile's own engine serves."""
    given = top["policy_base_url"]
    port = sections["gateway"].get("port", "8080")
    own = re.compile(rf"https?://(127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\]):{port}(/[a-z]+)?(/v1)?/?")
    if given and own.fullmatch(given):
        notes.append(f"{source}: policy_base_url {given} is this stack's gateway (NeMo Gym's side): not an engine")
        top["policy_base_url"] = None


def _required(backend: str, top: dict[str, str | None], sections: dict[str, dict[str, str]], source: str):
    needs = f"by profile '{backend}' (policy_backend: {backend})"
    problems = []
    if backend in ("openai", "openrouter", "nim-hosted") and not top["policy_api_key"]:
        problems.append(f"{source}: policy_api_key is required {needs}")
    if backend == "azure":
        azure = sections["azure"]
        if not top["policy_base_url"]:
            problems.append(
                f"{source}: policy_base_url is required {needs}: the resource endpoint, "
                "https://<resource>.openai.azure.com"
            )
        if not (top["policy_api_key"] or azure.get("ad_token") or azure.get("ad_token_file")):
            problems.append(f"{source}: policy_api_key (or azure.ad_token/ad_token_file) is required {needs}")
        if azure.get("url_style") == "dated" and not (azure.get("api_version") or top["policy_api_version"]):
            problems.append(f"{source}: azure.api_version is required {needs} with azure.url_style: dated")
    if "," in (top["policy_base_url"] or "") and backend not in REPLICA_PROFILES:
        problems.append(
            f"{source}: policy_base_url lists several URLs (engine replicas), which only profiles "
            f"{', '.join(REPLICA_PROFILES)} take; {needs} takes one"
        )
    if backend == "nim" and not sections["nim"].get("ngc_api_key"):
        problems.append(f"{source}: nim.ngc_api_key is required {needs}: NIM pulls its model from NGC")
    if backend == "vllm" and not sections["vllm"].get("model") and not top["policy_base_url"]:
        problems.append(f"{source}: vllm.model is required {needs}: the Hugging Face model id or path")
    if backend == "vllm":
        served, policy = sections["vllm"].get("served_model_name"), top["policy_model_name"]
        if served and policy and served != policy and not top["policy_base_url"]:
            problems.append(
                f"{source}: vllm.served_model_name '{served}' differs from policy_model_name '{policy}' "
                f"{needs}: the adapter would ask the engine for a model it does not serve; set one of them"
            )
    return problems


def _variables(
    backend: str,
    top: dict[str, str | None],
    sections: dict[str, dict[str, str]],
    nemo: _NemoGym | None,
    notes: list[str],
    source: str,
) -> Rendered:
    out: dict[str, str | None] = {
        "COMPOSE_PROFILES": backend,
        "POLICY_BACKEND": GATEWAY_BACKEND.get(backend, backend),
    }
    secrets: set[str] = set()
    url_var, key_var = POLICY_VARS[backend]
    external = top["policy_base_url"]
    out[url_var] = external or (NIM_HOSTED_URL if backend == "nim-hosted" else None)
    out[key_var] = top["policy_api_key"]
    secrets.add(key_var)
    out["POLICY_MODEL_NAME"] = top["policy_model_name"]
    if top["image_tag"]:
        out["MODELYARD_TAG"] = top["image_tag"]
    if backend == "azure":
        out["AZURE_OPENAI_API_VERSION"] = top["policy_api_version"]
    elif top["policy_api_version"]:
        notes.append(f"{source}: policy_api_version is ignored: profile '{backend}' does not use it")

    for name, values in sections.items():
        for sub, value in values.items():
            spec = SECTIONS[name][sub]
            if spec.only and backend not in spec.only:
                notes.append(f"{source}: {name}.{sub} is ignored: profile '{backend}' does not use it")
                continue
            out[spec.var] = value
            if spec.secret:
                secrets.add(spec.var)

    # The engine serves the model under the name the adapter pins, so policy_model_name works as is.
    if backend in ("cpu", "vllm") and not external and top["policy_model_name"]:
        out.setdefault("VLLM_SERVED_MODEL_NAME", top["policy_model_name"])
    if external and backend in LOCAL_ENGINE:
        notes.append(
            f"{source}: policy_base_url sends profile '{backend}' to {external}; its local engine "
            f"({LOCAL_ENGINE[backend]}) still starts but is not used"
        )
    if nemo:
        out.update(nemo.extras)
    variables = {k: v for k, v in out.items() if v is not None and v != ""}
    return Rendered(backend, variables, secrets & set(variables), notes)


# ---------------------------------------------------------------- the .env file

_PLAIN = re.compile(r"[A-Za-z0-9_./:,@+=-]+")


def quote(name: str, value: str) -> str:
    """One value as both compose's .env parser and a POSIX shell (`set -a; . ./.env`) read it back.

    Plain words stay bare; anything else goes in single quotes (literal in both, line breaks included);
    a value holding a single quote goes in double quotes with \\ " $ escaped, which both parsers undo.
    """
    if _PLAIN.fullmatch(value):
        return value
    if "'" not in value:
        return f"'{value}'"
    if "`" in value or any(ord(c) < 32 for c in value):
        raise ConfigError(
            [
                f"{name}: a value with both a single quote and a backtick or control character "
                "cannot be written so that compose and the shell read it alike"
            ]
        )
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def env_text(rendered: Rendered, source: str) -> str:
    lines = [
        f"# Written by scripts/render-env from {source}: edit that, then run scripts/render-env again.",
        "# Holds keys: keep it private (mode 0600) and out of version control.",
    ]
    first = [k for k in ("COMPOSE_PROFILES", "POLICY_BACKEND") if k in rendered.variables]
    for name in [*first, *sorted(k for k in rendered.variables if k not in first)]:
        lines.append(f"{name}={quote(name, rendered.variables[name])}")
    return "\n".join(lines) + "\n"


def write_env(path: Path, content: str) -> None:
    """Atomically, mode 0600 whatever the umask or the old file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".env.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def masked(rendered: Rendered) -> list[str]:
    return [f"{k}={'***' if k in rendered.secrets else v}" for k, v in rendered.variables.items()]


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None, root: Path | None = None) -> int:
    here = root or Path.cwd()
    parser = argparse.ArgumentParser(
        prog="render-env", description="Render the .env that compose.yaml reads from env.yaml."
    )
    parser.add_argument("--env-file", type=Path, default=here / "env.yaml", help="default: env.yaml")
    parser.add_argument("--out", type=Path, default=here / ".env", help="default: .env")
    parser.add_argument("--nemo-gym-config", type=Path, help="a NeMo Gym model config (configs/*.yaml)")
    parser.add_argument(
        "--check", action="store_true", help="validate and print the settings (secrets as ***); write nothing"
    )
    opts = parser.parse_args(argv)

    source = str(opts.env_file)
    try:
        if opts.env_file.exists():
            data = load_yaml(opts.env_file, "env.yaml")
        else:
            print(f"render-env: {source} not found: built-in defaults (profile cpu)", file=sys.stderr)
            data = {}
        base_dir, nemo = opts.env_file.parent, opts.nemo_gym_config
        rendered = resolve(data, source=source, base_dir=base_dir, nemo_gym_config=nemo)
        content = env_text(rendered, source)  # quoting problems surface before anything is written
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"render-env: error: {problem}", file=sys.stderr)
        return 2
    for note in rendered.notes:
        print(f"render-env: note: {note}", file=sys.stderr)

    if opts.check:
        print(f"{source}: OK, profile {rendered.profile} (secrets shown as ***)")
        for line in masked(rendered):
            print(f"  {line}")
        return 0
    write_env(opts.out, content)
    print(f"render-env: wrote {opts.out} (profile {rendered.profile}, {len(rendered.variables)} variables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
