"""Backends: each module states only what differs from the common `Backend`."""

from __future__ import annotations

from importlib import import_module

from ..config import Settings
from .base import Backend

NAMES = ("vllm", "nim", "openai", "azure", "openrouter")


def load(name: str, settings: Settings) -> Backend:
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(NAMES)}")
    module = import_module(f"{__name__}.{name}")
    return module.BACKEND(settings)
