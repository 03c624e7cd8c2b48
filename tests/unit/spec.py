"""Check objects against the OpenAI OpenAPI spec (JSON Schema) and the openai SDK's types.

The spec is read from `MODELYARD_OPENAPI_SPEC`, else from the `shared/spec` folder beside the checkout;
tests that need it skip when it is absent. The SDK check is strict about our own keys: a field the SDK
type does not know is an error (a typo would otherwise pass, since SDK models accept extra fields),
except for the few the spec has and this SDK version lacks, or OpenAI sends and both lack.

Stricter than the spec: an echoed sampling number (`temperature`, `top_p`, …, typed `number | null`) must
be a number, `service_tier` a string, and `usage` present on every Response. One way looser: `usage` may
be null (until it is known: on response.created and in_progress, or where the upstream sent none), as
OpenAI sends it and the SDK types it, where the spec's ResponseUsage is not nullable.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from openai._models import BaseModel
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(
    os.environ.get("MODELYARD_OPENAPI_SPEC") or Path(__file__).resolve().parents[3] / "shared/spec/openai-openapi.yaml"
)
_URI = "urn:openai-openapi"
# Fields we send that the spec has but this SDK's models do not.
_SDK_EXTRAS = {
    ("Response", "store"),
    ("ResponseFunctionCallArgumentsDoneEvent", "name"),
    # OpenAI's Responses carry them; neither the spec nor this SDK has them yet.
    ("Response", "presence_penalty"),
    ("Response", "frequency_penalty"),
}
# Echoed numbers: the value in force, never null.
_NUMBERS = ("temperature", "top_p", "top_logprobs", "presence_penalty", "frequency_penalty")


@functools.cache
def _registry() -> Registry:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(SPEC.read_text(), Loader=loader)
    return Registry().with_resource(_URI, Resource.from_contents(spec, default_specification=DRAFT202012))


@functools.cache
def validator(schema: str) -> Draft202012Validator:
    if not SPEC.exists():
        pytest.skip(f"{SPEC} not found (set MODELYARD_OPENAPI_SPEC)")
    return Draft202012Validator({"$ref": f"{_URI}#/components/schemas/{schema}"}, registry=_registry())


def _without_null_usage(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    if isinstance(obj.get("response"), dict):
        return {**obj, "response": _without_null_usage(obj["response"])}
    return {k: v for k, v in obj.items() if k != "usage"} if "usage" in obj and obj["usage"] is None else obj


def check_echo(response: dict[str, Any]) -> None:
    """What the spec lets be null or missing and a Response here must say: the sampling in force, the
    service tier, and `usage` (null until known)."""
    for key in _NUMBERS:
        value = response.get(key)
        assert isinstance(value, int | float) and not isinstance(value, bool), f"Response.{key} is {value!r}"
    assert isinstance(response.get("service_tier"), str), f"Response.service_tier is {response.get('service_tier')!r}"
    assert "usage" in response, "Response.usage is missing"


def check_spec(obj: Any, schema: str) -> None:
    """Assert `obj` is valid against `#/components/schemas/<schema>` (a null `usage` allowed, see above)."""
    obj = _without_null_usage(obj)
    error = best_match(validator(schema).iter_errors(obj))
    if error is not None:
        path = "/".join(str(p) for p in error.absolute_path)
        raise AssertionError(f"not a valid {schema} at /{path}: {error.message[:500]}")


def _extras(model: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(model, BaseModel):
        for key in model.model_extra or {}:
            if (type(model).__name__, key) not in _SDK_EXTRAS:
                found.append(f"{path}.{key} ({type(model).__name__})")
        for name in type(model).model_fields:
            found += _extras(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list):
        for i, item in enumerate(model):
            found += _extras(item, f"{path}[{i}]")
    return found


_EVENT = TypeAdapter(ResponseStreamEvent)


def check_sdk_response(obj: dict[str, Any]) -> Response:
    model = Response.model_validate(obj, strict=True)
    assert not _extras(model), f"fields the SDK does not know: {_extras(model)}"
    return model


def check_sdk_event(obj: dict[str, Any]) -> Any:
    model = _EVENT.validate_python(obj, strict=True)
    assert not _extras(model), f"fields the SDK does not know: {_extras(model)}"
    return model


def check_response(obj: dict[str, Any]) -> None:
    """A Response: valid for the SDK and for the spec, its echo complete."""
    check_sdk_response(obj)
    check_spec(obj, "Response")
    check_echo(obj)


def check_event(obj: dict[str, Any]) -> None:
    """A stream event: valid for the SDK's ResponseStreamEvent union and the spec's; a Response it
    carries, with its echo complete."""
    check_sdk_event(obj)
    check_spec(obj, "ResponseStreamEvent")
    if isinstance(obj.get("response"), dict):
        check_echo(obj["response"])
