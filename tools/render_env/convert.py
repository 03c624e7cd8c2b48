"""Problems, and the converters of env.yaml values that are not adapter settings (value -> .env text)."""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from modelyard.kinds import Invalid as _Invalid
from modelyard.kinds import string as text


class ConfigError(Exception):
    """Problems in env.yaml or a NeMo Gym config, one line each, every line naming its key."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


# `_Invalid` (modelyard.kinds.Invalid): a value of the wrong type or form; the message says what was
# expected. One class for both sides, so an adapter setting's kind and these converters raise alike.

# ---------------------------------------------------------------- value converters (value -> .env text)


def word(value: Any) -> str:
    value = text(value)
    if not value.strip() or any(c.isspace() for c in value):
        raise _Invalid("a single word without spaces")
    return value


def url(value: Any) -> str:
    value = text(value)
    if not re.fullmatch(r"https?://[^\s/]+\S*", value):
        raise _Invalid("an http:// or https:// URL")
    return value


def url_list(value: Any) -> str:
    """One base URL, or several engine replicas' (a YAML list, or comma-separated): comma-joined."""
    items = value if isinstance(value, list) else str(value if value is not None else "").split(",")
    urls = [url(str(v).strip()) for v in items if str(v).strip()]
    if not urls:
        raise _Invalid("an http:// or https:// URL, or a list of them (engine replicas)")
    return ",".join(urls)


def integer(low: int, high: int | None = None) -> Callable[[Any], str]:
    expected = f"an integer {low}-{high}" if high is not None else f"an integer >= {low}"

    def convert(value: Any) -> str:
        if isinstance(value, bool):
            raise _Invalid(expected)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if not isinstance(value, int) or value < low or (high is not None and value > high):
            raise _Invalid(expected)
        return str(value)

    return convert


def fraction(value: Any) -> str:
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not 0 < number <= 1:
        raise _Invalid("a number in (0, 1]")
    return str(value).strip()


def boolean(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower()
    if not isinstance(value, bool):
        raise _Invalid("true or false")
    return "true" if value else "false"


def choice(*options: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in options:
            raise _Invalid("one of " + ", ".join(options))
        return value

    return convert


_TOKENS = re.compile(r"\d+(\.\d+)?[kmgt]|\d+[KMGT]?")


def model_len(value: Any) -> str:
    """vLLM's --max-model-len: tokens, with 32k / 32K suffixes, or auto."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Invalid("a token count such as 8192, 32k or 32K, or auto")
    if value.lower() == "auto" or _TOKENS.fullmatch(value) and re.search(r"[1-9]", value):
        return value
    raise _Invalid("a token count such as 8192, 32k or 32K, or auto")


def gpu_count(value: Any) -> str:
    if value == "all":
        return value
    try:
        return integer(1)(value)
    except _Invalid:
        raise _Invalid("a number of GPUs (>= 1) or all") from None


def args(value: Any) -> str:
    """Extra engine flags: a YAML list (one item per argv word) or one shell-quoted string."""
    if isinstance(value, list):
        return shlex.join(text(item) for item in value)
    value = text(value)
    try:
        shlex.split(value)
    except ValueError:
        raise _Invalid("a list of arguments, or a string that splits like a shell command line") from None
    return value


def image(value: Any) -> str:
    value = text(value)
    if not re.fullmatch(r"[\w][\w.\-/:@]*", value):
        raise _Invalid("an image reference such as registry/name:tag")
    return value


def bind(value: Any) -> str:
    try:
        address = ipaddress.ip_address(text(value).strip("[]"))
    except ValueError:
        raise _Invalid("an IP address to publish the gateway on, such as 127.0.0.1 or 0.0.0.0") from None
    return f"[{address}]" if address.version == 6 else str(address)


def nginx_size(value: Any) -> str:
    value = text(value)
    if not re.fullmatch(r"\d+[kKmMgG]?", value):
        raise _Invalid("an nginx size such as 32m, 512k or 0 (no limit)")
    return value


def nginx_time(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}s"
    value = text(value)
    if not re.fullmatch(r"(\d+(ms|s|m|h|d|w|M|y)? *)+", value.strip()):
        raise _Invalid("an nginx time such as 3600s, 60m or 1h")
    return value.strip()


def api_keys(value: Any) -> str:
    """Client keys for the gateway: a list (or one comma-separated string) of tokens nginx can match."""
    if not isinstance(value, list):
        value = [item for item in re.split(r"[,\s]+", text(value)) if item]
    keys = [text(item) for item in value]
    if not all(re.fullmatch(r"[A-Za-z0-9._~+/=-]{8,}", key) for key in keys):
        raise _Invalid("a list of keys, each 8 or more of A-Z a-z 0-9 . _ ~ + / = -")
    return ",".join(keys)


def nginx_rate(value: Any) -> str:
    """Requests per second (a number) or an nginx rate (10r/s, 600r/m); 0: no limit."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    value = text(value).strip()
    if not re.fullmatch(r"\d+(r/[sm])?", value):
        raise _Invalid("a rate such as 10 (per second), 10r/s or 600r/m; 0: no limit")
    return value


def developer_role(value: Any) -> str:
    return "system" if boolean(value) == "true" else "developer"


def reasoning_history(value: Any) -> str:
    """NeMo Gym's uses_interleaved_reasoning: earlier turns' reasoning is sent back (or dropped)."""
    return "send" if boolean(value) == "true" else "drop"
