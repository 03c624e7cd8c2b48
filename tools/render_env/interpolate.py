"""`${VAR}` references to the environment, and OmegaConf-style ones in NeMo Gym configs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .convert import _Invalid

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
