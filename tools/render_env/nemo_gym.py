"""Reading a NeMo Gym model config: the policy settings and the extras the adapters honour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .convert import ConfigError, _Invalid
from .interpolate import interpolate_nemo_gym
from .schema import NEMO_GYM_EXTRAS, NEMO_GYM_POLICY_KEYS, NEMO_GYM_SILENT, NEMO_GYM_TYPES, TOP, _convert


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
            spec = NEMO_GYM_EXTRAS[key]
            rendered = _convert(spec, value, f"{prefix}.{key}", where, problems)
            if rendered is not None and spec.var:
                extras[spec.var] = rendered
        elif key not in NEMO_GYM_SILENT and value not in (None, {}, [], False):
            notes.append(f"{where}: {prefix}.{key} is ignored (modelyard does not use it)")
    return _NemoGym(kind, policy, extras, notes)
