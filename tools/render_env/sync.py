"""scripts/sync-settings: write what is derived from the adapter's setting declarations (modelyard.config).

Each derived block sits between two marker lines in its file and is rewritten whole:
  compose.yaml       `# -- settings: adapters` (every adapter) and `# -- settings: adapter-<name>`:
                     one `VAR: ${VAR:-}` line per setting env.yaml can set; empty is the adapter's default,
                     so compose repeats no default
  env.yaml.example   `# -- settings: env.yaml adapter`: the adapter section's keys, defaults and meanings
  docs/*.md          `<!-- settings: all -->` (every setting) or `<!-- settings: name name ... -->`
Each block ends at `# -- end settings` (`<!-- end settings -->`). `--check` writes nothing and fails when a
file is out of date (tests/unit/test_settings.py runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from modelyard.config import BACKEND_SETTINGS, Setting, Settings, table

FILES = ("compose.yaml", "env.yaml.example", "docs/settings.md", "docs/reliability.md")
_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)(?P<open># --|<!--) settings: (?P<scope>[^\n]*?)(?: -->)?\n"
    r".*?^[ \t]*(?:# --|<!--) end settings.*?$",
    re.M | re.S,
)


def passed(spec: Setting) -> bool:
    """Compose hands on what render-env can write: a setting with an env.yaml key or a .env name."""
    return bool(spec.env_yaml or spec.dotenv)


def compose_lines(scope: str) -> list[str]:
    """`adapters`: the settings every adapter takes; `adapter-<name>`: those only some adapters take."""
    backend = scope.removeprefix("adapter-")
    chosen = [
        spec
        for _, spec in table()
        if passed(spec) and (not spec.backends if scope == "adapters" else backend in spec.backends)
    ]
    return [f"{spec.var}: ${{{spec.dotenv or spec.var}:-{spec.stack_default}}}" for spec in chosen]


def shown(value: Any) -> str:
    """A default as docs and env.yaml.example write it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    if isinstance(value, frozenset | dict) and not value:
        return "none"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return str(value) if value != "" else "none"


def table_rows() -> list[tuple[str, Setting, Any]]:
    """(field name, declaration, default) for every declared setting, in declaration order."""

    def default(f: Any) -> Any:
        return f.default if f.default_factory is MISSING else f.default_factory()

    own = {f.name: default(f) for f in fields(Settings)}
    by_backend = {b: {f.name: default(f) for f in fields(cls)} for b, cls in BACKEND_SETTINGS.items()}
    rows = []
    for name, spec in table():
        # A backend's own setting (its class in BACKEND_SETTINGS) or one of every adapter's (Settings).
        values = by_backend.get(spec.backends[0], own) if len(spec.backends) == 1 else own
        rows.append((name, spec, values.get(name, own.get(name))))
    return rows


def _env_yaml_key(name: str, spec: Setting) -> str:
    section, _, key = spec.env_yaml.partition(".")
    return f"`{section}.{key or name}`" if section else ""


def docs_lines(scope: str) -> list[str]:
    wanted = scope.split()
    rows = [r for r in table_rows() if scope == "all" or r[0] in wanted]
    if scope == "all":
        head = ["| variable | env.yaml | adapters | default | meaning |", "|---|---|---|---|---|"]
        body = [
            f"| `{s.var}` | {_env_yaml_key(n, s)} | {', '.join(s.backends) or 'all'} | {shown(d)} | {s.doc} |"
            for n, s, d in rows
        ]
        return head + body
    order = {name: i for i, name in enumerate(wanted)}
    rows.sort(key=lambda r: order[r[0]])
    return ["| variable | default | meaning |", "|---|---|---|"] + [
        f"| `{s.var}` | {shown(d)} | {s.doc} |" for _, s, d in rows
    ]


def example_lines(scope: str) -> list[str]:
    """env.yaml.example's commented keys of one section (`env.yaml adapter`)."""
    section = scope.removeprefix("env.yaml ")
    lines = []
    for name, spec, default in table_rows():
        if spec.env_yaml.partition(".")[0] != section:
            continue
        value = "[]" if default == frozenset() else '""' if default == "" else shown(default)
        if spec.stack_default:  # what the compose stack uses when it is left out
            value = spec.stack_default
        entry = f"# {spec.env_yaml.partition('.')[2] or name}: {value}"
        doc = textwrap.wrap(spec.doc, 110 - 40)
        lines.append(f"{entry:<38}  # {doc[0]}")
        lines += [f"#{'':<37}  # {more}" for more in doc[1:]]
    return lines


GENERATORS: dict[str, Callable[[str], list[str]]] = {
    "compose.yaml": compose_lines,
    "env.yaml.example": example_lines,
}


def rewrite(path: str, text: str) -> str:
    generate = GENERATORS.get(path, docs_lines)

    def block(m: re.Match[str]) -> str:
        # The scope, less any note in parentheses after it.
        indent, scope, md = m["indent"], re.sub(r"\s*\(.*\)$", "", m["scope"].strip()), m["open"] == "<!--"
        opener = m.group(0).splitlines()[0]
        closer = f"{indent}<!-- end settings -->" if md else f"{indent}# -- end settings"
        return "\n".join([opener, *(f"{indent}{line}" for line in generate(scope)), closer])

    return _BLOCK.sub(block, text)


def main(argv: Sequence[str] | None = None, root: Path | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sync-settings", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file is out of date")
    opts = parser.parse_args(argv)
    root = root or Path.cwd()
    stale = []
    for path in FILES:
        file = root / path
        old = file.read_text(encoding="utf-8")
        new = rewrite(path, old)
        if new != old:
            stale.append(path)
            if not opts.check:
                file.write_text(new, encoding="utf-8")
    verb = "out of date" if opts.check else "rewritten"
    for path in stale:
        print(f"sync-settings: {path} {verb}", file=sys.stderr)
    if opts.check and stale:
        print("sync-settings: run scripts/sync-settings", file=sys.stderr)
    return 1 if opts.check and stale else 0
