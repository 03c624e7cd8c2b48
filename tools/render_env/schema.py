"""The env.yaml schema: its keys, the .env variable each sets and the profiles that use it."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.config import Setting, table

from .convert import (
    _Invalid,
    api_keys,
    args,
    bind,
    choice,
    developer_role,
    fraction,
    gpu_count,
    image,
    integer,
    model_len,
    nginx_rate,
    nginx_size,
    nginx_time,
    reasoning_history,
    text,
    url_list,
    word,
)

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

# ---------------------------------------------------------------- the schema


@dataclass(frozen=True)
class Key:
    convert: Callable[[Any], str]
    var: str | None = None  # the .env variable it sets; None: mapped per profile in code
    secret: bool = False
    only: tuple[str, ...] = ()  # the profiles that use it; empty: every profile


V, C, N = ("vllm",), ("cpu",), ("nim",)

# env.yaml forms that differ from the adapter's (NeMo Gym's booleans for two of its choices), and a
# tighter bound than the adapter's: a grace under compose's 35 s stop_grace_period.
FORMS: dict[str, Callable[[Any], str]] = {
    "MODELYARD_DEVELOPER_ROLE": developer_role,
    "MODELYARD_SHUTDOWN_GRACE": integer(1, 30),
}


def profiles(backends: tuple[str, ...]) -> tuple[str, ...]:
    """The profiles whose adapter is one of `backends` (cpu runs adapter-vllm, nim-hosted adapter-nim)."""
    return tuple(p for p in BACKENDS if GATEWAY_BACKEND.get(p, p) in backends) if backends else ()


def checked(spec: Setting) -> Callable[[Any], str]:
    """An adapter setting's converter: env.yaml's value as the variable's text, which the adapter then
    reads with the same kind (so render-env accepts exactly what the adapter accepts)."""
    form = FORMS.get(spec.var, spec.kind.dump)

    def convert(value: Any) -> str:
        try:
            rendered = form(value)
            spec.kind.parse(rendered.strip())
        except _Invalid as exc:
            raise _Invalid(str(exc) or spec.kind.expected) from None
        return rendered

    return convert


def adapter_keys() -> dict[str, dict[str, Key]]:
    """The env.yaml keys of the adapters' own settings, from their declarations (modelyard.config)."""
    sections: dict[str, dict[str, Key]] = {}
    for name, spec in table():
        if spec.env_yaml:
            section, _, key = spec.env_yaml.partition(".")
            var = spec.dotenv or spec.var
            sections.setdefault(section, {})[key or name] = Key(
                checked(spec), var, spec.secret, profiles(spec.backends)
            )
    return sections


ADAPTER_KEYS = adapter_keys()


def adapter_var(section: str, key: str) -> str:
    var = ADAPTER_KEYS[section][key].var
    assert var
    return var


TOP: dict[str, Key] = {
    "policy_backend": Key(choice(*BACKENDS)),
    "policy_base_url": Key(url_list),  # a list: engine replicas (docs/replicas.md)
    "policy_api_key": Key(text, secret=True),
    "policy_model_name": Key(text),
    "policy_api_version": Key(text, adapter_var("azure", "api_version"), only=("azure",)),
    "nemo_gym_config": Key(text),
    "image_tag": Key(word, "MODELYARD_TAG"),
}

# The keys that set engines, images and the gateway; the adapters' own come from ADAPTER_KEYS.
OWN: dict[str, dict[str, Key]] = {
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
    },
    "openai": {},
    "azure": {},
    "openrouter": {},
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
    "generation": {},
    "adapter": {"base_image": Key(image, "ADAPTER_BASE_IMAGE")},
}
SECTIONS: dict[str, dict[str, Key]] = {name: {**ADAPTER_KEYS.get(name, {}), **keys} for name, keys in OWN.items()}
assert set(ADAPTER_KEYS) <= set(SECTIONS), "a setting's env_yaml names a section env.yaml does not have"


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
_GENERATION = SECTIONS["generation"]
NEMO_GYM_EXTRAS: dict[str, Key] = {
    **{
        name: _GENERATION[name]
        for name in (
            "return_token_id_information",
            "uses_reasoning_parser",
            "replace_developer_role_with_system",
            "chat_template_kwargs",
            "extra_body",
            "sampling_overrides",
        )
    },
    "uses_interleaved_reasoning": Key(reasoning_history, _GENERATION["reasoning_history"].var),
}
# NeMo Gym's own plumbing: meaningless for modelyard, so ignored without a note.
NEMO_GYM_SILENT = {"entrypoint", "num_workers", "provides"}


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
