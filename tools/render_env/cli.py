"""The command line: scripts/render-env."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .convert import ConfigError
from .dotenv import env_text, masked, write_env
from .nemo_gym import load_yaml
from .resolve import resolve


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
