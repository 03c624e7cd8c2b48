"""env.yaml -> .env: the one file a user edits, rendered into the variables compose.yaml reads.

env.yaml.example documents every key. String values may reference the process environment
(`${VAR}`, `${VAR:-default}`) so keys can stay out of the file. A NeMo Gym model config
(configs/README.md) can supply the policy settings. Secrets are never printed: `--check` shows them
as ***, and error messages name a secret key without its value. The .env is written mode 0600.

A host-side tool (scripts/render-env), not part of the adapter image. The keys of the adapters' own
settings are not typed here: schema.py takes them from their declarations in modelyard.config.

  convert      ConfigError and the converters of the keys that are not adapter settings
  schema       the keys: TOP, SECTIONS (the adapters' from modelyard.config), the NeMo Gym tables
  interpolate  ${VAR} references, and NeMo Gym's OmegaConf-style ones
  nemo_gym     reading a NeMo Gym model config
  resolve      env.yaml's data -> the variables (resolve, Rendered)
  dotenv       quoting and writing the .env
  cli          the command line
"""

from __future__ import annotations

from .cli import main
from .convert import ConfigError
from .dotenv import env_text, masked, quote, write_env
from .interpolate import expand_env, interpolate_nemo_gym
from .nemo_gym import load_yaml
from .resolve import Rendered, resolve
from .schema import SECTIONS, TOP

__all__ = [
    "SECTIONS",
    "TOP",
    "ConfigError",
    "Rendered",
    "env_text",
    "expand_env",
    "interpolate_nemo_gym",
    "load_yaml",
    "main",
    "masked",
    "quote",
    "resolve",
    "write_env",
]
