"""The .env file: quoting that compose and a POSIX shell read alike, written atomically, mode 0600."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from .convert import ConfigError
from .resolve import Rendered

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
