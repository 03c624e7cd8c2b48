"""env.yaml's data -> the variables compose.yaml reads, every problem reported at once."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .convert import ConfigError
from .interpolate import _expand_tree
from .nemo_gym import _NemoGym, _read_nemo_gym
from .schema import (
    DEFAULT_BACKEND,
    GATEWAY_BACKEND,
    LOCAL_ENGINE,
    NEMO_GYM_TYPES,
    NIM_HOSTED_URL,
    POLICY_VARS,
    REPLICA_PROFILES,
    SECTIONS,
    TOP,
    _convert,
    _unknown,
)


@dataclass
class Rendered:
    profile: str
    variables: dict[str, str]
    secrets: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


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
    # Unknown keys are dropped here and reported with every other problem at the end.
    data = {
        k: {s: x for s, x in v.items() if s in SECTIONS[k]} if k in SECTIONS and isinstance(v, dict) else v
        for k, v in data.items()
        if k in TOP or (k in SECTIONS and (v is None or isinstance(v, dict)))
    }

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
