"""Each setting is declared once (modelyard.config); what derives from the declarations is current."""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from modelyard.config import Settings, table
from tools.render_env import resolve
from tools.render_env.schema import SECTIONS
from tools.render_env.sync import FILES, main, passed, rewrite

ROOT = Path(__file__).resolve().parents[2]


def test_derived_files_are_current() -> None:
    """compose.yaml, env.yaml.example and the docs' tables: scripts/sync-settings has nothing to change."""
    for path in FILES:
        text = (ROOT / path).read_text()
        assert rewrite(path, text) == text, f"{path} is out of date: run scripts/sync-settings"
    assert main(["--check"], root=ROOT) == 0


def test_every_setting_env_yaml_sets_reaches_its_adapters_without_a_default() -> None:
    """By construction, what render-env writes is what compose hands on: each adapter's environment has a
    `VAR: ${DOTENV:-}` line for each setting of that adapter env.yaml can set, and no default."""
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for name, spec in table():
        if not passed(spec):
            continue
        for backend in spec.backends or ("vllm", "nim", "openai", "azure", "openrouter"):
            env = services[f"adapter-{backend}"]["environment"]
            assert env.get(spec.var) == f"${{{spec.dotenv or spec.var}:-{spec.stack_default}}}", (name, backend)


def test_the_renderer_reads_the_adapter_keys_from_the_declarations() -> None:
    for name, spec in table():
        if spec.env_yaml:
            section, _, key = spec.env_yaml.partition(".")
            assert SECTIONS[section][key or name].var == (spec.dotenv or spec.var), name


def test_the_reliability_knobs_are_settable_from_env_yaml() -> None:
    rendered = resolve({"adapter": {"retries": 5, "breaker_failures": 0, "queue_timeout": 2.5}}, {})
    env = {"MODELYARD_UPSTREAM_URL": "http://e", **rendered.variables}
    settings = Settings.from_env("vllm", env)
    assert (settings.retries, settings.breaker_failures, settings.queue_timeout) == (5, 0, 2.5)
    with pytest.raises(Exception, match="adapter.retries must be an integer >= 0, got -1"):
        resolve({"adapter": {"retries": -1}}, {})


def test_docs_list_every_declared_setting() -> None:
    docs = (ROOT / "docs" / "settings.md").read_text()
    for _, spec in table():
        assert f"`{spec.var}`" in docs, spec.var


def test_gateway_defaults_live_in_its_entrypoint_only() -> None:
    gateway = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["gateway"]["environment"]
    entrypoint = (ROOT / "images" / "gateway" / "entrypoint.sh").read_text()
    for var, value in gateway.items():
        assert value == f"${{{var}:-}}", var
        assert re.search(rf"\$\{{{var}:=", entrypoint), f"{var} has no default in the entrypoint"


def _imports(root: Path) -> set[str]:
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_runtime_dependencies_are_what_the_runtime_imports() -> None:
    """No envfile in the package, and no pyyaml or openai among its dependencies (tests and tools use them)."""
    package = ROOT / "services" / "modelyard"
    assert not (package / "envfile.py").exists()
    imported = _imports(package)
    assert "yaml" not in imported and "openai" not in imported
    project = tomllib.loads((ROOT / "services" / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=;]", dep)[0].strip().lower() for dep in project["dependencies"]}
    assert not names & {"pyyaml", "openai"}, names
    test_extra = {re.split(r"[\[<>=;]", dep)[0].strip().lower() for dep in project["optional-dependencies"]["test"]}
    assert {"pyyaml", "openai"} <= test_extra


def test_empty_variables_are_the_defaults() -> None:
    """What compose hands on for a setting env.yaml leaves out: `VAR=` (empty), read as the default."""
    empty = {spec.var: "" for _, spec in table()}
    base = {"MODELYARD_UPSTREAM_URL": "http://e"}
    for backend in ("vllm", "nim", "openai", "azure", "openrouter"):
        read = [replace(Settings.from_env(backend, env), env={}) for env in ({**base, **empty}, base)]
        assert read[0] == read[1], backend
