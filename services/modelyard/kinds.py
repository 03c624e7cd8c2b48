"""The kinds of value a setting takes: how its variable's text is read, and how env.yaml writes it.

Each `Kind` has two directions. `parse` reads the variable's (non-empty) text for the adapter;
`dump` turns env.yaml's YAML value into that text for scripts/render-env, which then checks it with
`parse`, so a value render-env accepts is one the adapter accepts. Standard library only: the
host-side renderer imports this with nothing but pyyaml installed.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Invalid(ValueError):
    """A value of the wrong form; the message, where there is one, says what was expected."""


def plain(value: Any) -> str:
    """A YAML scalar as the variable's text: true/false, numbers and strings as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise Invalid("")


def string(value: Any) -> str:
    """A YAML value that must be a string: a number or a date as written, never true/false or 1.5."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | float):
        raise Invalid("a string (quote it in YAML)")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime.date):  # YAML reads an unquoted 2024-10-21 as a date
        return value.isoformat()
    raise Invalid("a string")


@dataclass(frozen=True)
class Kind:
    parse: Callable[[str], Any]  # the variable's text -> the value; raises Invalid
    expected: str  # what parse accepts, for messages: "an integer >= 0"
    dump: Callable[[Any], str] = plain  # env.yaml's value -> the variable's text (scripts/render-env)


text = Kind(lambda raw: raw, "a string", string)


def integer(low: int = 0) -> Kind:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise Invalid from None
        if value < low:
            raise Invalid
        return value

    return Kind(parse, f"an integer >= {low}")


def number(low: float = 0) -> Kind:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise Invalid from None
        if not value >= low:  # NaN too
            raise Invalid
        return value

    return Kind(parse, f"a number >= {low:g}")


def _flag(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise Invalid


flag = Kind(_flag, "true or false")


def one_of(*options: str, fold: bool = False) -> Kind:
    """One of `options`; with fold, in any case (INFO for info)."""

    def parse(raw: str) -> str:
        value = raw.lower() if fold else raw
        if value not in options:
            raise Invalid
        return value

    return Kind(parse, "one of " + ", ".join(options))


def _json_text(value: Any) -> str:
    """A YAML mapping as compact JSON; a string is taken as JSON already (parse checks it)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if not isinstance(value, dict):
        raise Invalid("")
    return json.dumps(value, separators=(",", ":"), default=str)


def _object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise Invalid from None
    if not isinstance(value, dict):
        raise Invalid
    return value


json_object = Kind(_object, "a mapping (or a JSON object)", _json_text)


def _string_map(raw: str) -> dict[str, str]:
    value = _object(raw)
    if not all(isinstance(v, str) for v in value.values()):
        raise Invalid
    return value


string_map = Kind(_string_map, "a mapping of names to names", _json_text)


def _names(raw: str) -> frozenset[str]:
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if any(any(c.isspace() for c in item) for item in items):
        raise Invalid
    return frozenset(items)


def _names_text(value: Any) -> str:
    return ",".join(string(item) for item in value) if isinstance(value, list) else string(value)


names = Kind(_names, "a list of names without spaces (or one comma-separated string)", _names_text)


def _tags(raw: str) -> tuple[str, str]:
    tags: Any = raw.split()
    if raw.startswith("["):
        try:
            tags = json.loads(raw)
        except ValueError:
            tags = None
    if not (isinstance(tags, list) and len(tags) == 2 and all(isinstance(t, str) and t.strip() for t in tags)):
        raise Invalid
    return (tags[0], tags[1])


def _tags_text(value: Any) -> str:
    return json.dumps(value.split() if isinstance(value, str) else value)


think_tags = Kind(_tags, 'two tags, such as ["<think>", "</think>"]', _tags_text)
