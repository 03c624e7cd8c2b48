"""Lint, render and schema-check the Helm chart offline; one JSON report on stdout.

Runs in the chart-tools venv (deploy/helm/requirements.txt; tests/unit/test_helm_chart.py builds it),
not in the adapter's. Reads a JSON request on stdin:

    {"chart": "deploy/helm/modelyard", "release": "rel", "namespace": "ml",
     "kube_versions": ["1.27", "1.37"], "cases": {"default": {}, "gpu": {...values...}}}

For each case: Helm's lint with those values (helm-python-sdk: Helm v4's Go library), Helm's render
(the same library: `helm template`, no cluster), and every rendered object validated against the
Kubernetes API's JSON schemas of each kube version, strict (kubernetes-validate: an unknown field, a
wrong type or a missing required field is an error; a kind with no schema is an error too). Once for
the chart: helm-sdkpy's lint (Helm's Go library again, another binding) with the default values, where
that package is installed (it needs Python >= 3.12).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from typing import Any

import helm_python
import kubernetes_validate
import kubernetes_validate.utils
import yaml

# kubernetes-validate reads and parses each schema file (its definitions are megabytes) on every call:
# read each once. The parsed schemas are only read afterwards.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _sdkpy_lint(chart: str) -> dict[str, Any]:
    try:
        import helm_sdkpy
    except ImportError as exc:
        return {"skipped": f"helm-sdkpy is not installed ({exc}); it needs Python >= 3.12"}
    config = helm_sdkpy.Configuration(namespace="default")
    report = asyncio.run(helm_sdkpy.Lint(config).run(chart))
    messages = [{"severity": m["Severity"], "path": m["Path"], "error": str(m["Err"])} for m in report["Messages"]]
    return {"charts": report["TotalChartsLinted"], "messages": messages, "errors": report["Errors"] or []}


def _validate(obj: dict[str, Any], versions: list[str]) -> list[str]:
    errors = []
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{name} against {version}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{name} against {version}: no schema: {exc.message}")
    return errors


def _case(chart: helm_python.Chart, path: str, values: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"objects": [], "schema_errors": [], "render_error": None}
    newest = "v" + request["kube_versions"][-1]
    lint = helm_python.lint(path, values, namespace=request["namespace"], kube_version=newest)
    result["lint"] = {"messages": lint["messages"], "errors": lint["errors"]}
    try:
        files = chart.render(values=values, name=request["release"], namespace=request["namespace"], is_install=True)
    except helm_python.HelmError as exc:
        result["render_error"] = str(exc)
        return result
    for filename in sorted(files):
        if filename.endswith("NOTES.txt"):
            result["notes"] = files[filename]
            continue
        for doc in yaml.load_all(files[filename], Loader=_Loader):
            if doc:
                doc.setdefault("metadata", {})
                result["objects"].append({"template": filename, **doc})
    for obj in result["objects"]:
        clean = {k: v for k, v in obj.items() if k != "template"}
        result["schema_errors"] += _validate(clean, request["kube_versions"])
    return result


def main() -> int:
    request = json.load(sys.stdin)
    chart = helm_python.Chart.load(request["chart"])
    report = {
        "helm": helm_python.helm_sdk_version(),
        "kube_versions": request["kube_versions"],
        "sdkpy_lint": _sdkpy_lint(request["chart"]),
        "cases": {name: _case(chart, request["chart"], values, request) for name, values in request["cases"].items()},
    }
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
