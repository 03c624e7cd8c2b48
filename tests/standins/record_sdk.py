"""Record what the official openai SDK sends to each provider, through an httpx.MockTransport:
`python -m tests.standins.record_sdk` rewrites sdk_requests.json. The stand-ins' expectations (paths,
query, auth header names, attribution headers, body shapes) are built from this record and the providers'
documentation, never from modelyard's own code; tests/unit/test_backend_standins.py replays it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai

OUT = Path(__file__).with_name("sdk_requests.json")
KEEP = ("api-key", "authorization", "content-type", "openai-organization", "openai-project", "http-referer", "x-title")
TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CHAT_TOOL = {"type": "function", "function": {k: v for k, v in TOOL.items() if k != "type"}}
USER = [{"role": "user", "content": "hi"}]


def record() -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls[-1]["request"] = {
            "method": request.method,
            "url": str(request.url),
            "headers": {k: v for k, v in request.headers.items() if k in KEEP},
            "body": json.loads(request.content) if request.content else None,
        }
        return httpx.Response(418, json={"error": {"message": "recorded", "type": "x", "param": None, "code": None}})

    def http() -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(handler))

    def run(provider: str, name: str, call: Callable[[], Any]) -> None:
        calls.append({"provider": provider, "call": name})
        with contextlib.suppress(openai.APIStatusError):
            call()

    oa = openai.OpenAI(api_key="sk-standin-openai", organization="org-standin", project="proj_standin",
                       http_client=http(), max_retries=0)  # fmt: skip
    run("openai", "responses.create", lambda: oa.responses.create(model="gpt-4.1-mini", input="hi", tools=[TOOL]))
    run(
        "openai", "responses.create(stream)", lambda: oa.responses.create(model="gpt-4.1-mini", input="hi", stream=True)
    )
    run("openai", "responses.retrieve", lambda: oa.responses.retrieve("resp_1"))
    run("openai", "responses.delete", lambda: oa.responses.delete("resp_1"))
    run("openai", "responses.cancel", lambda: oa.responses.cancel("resp_1"))
    run("openai", "responses.input_items.list", lambda: oa.responses.input_items.list("resp_1", limit=5))
    run(
        "openai",
        "chat.completions.create(stream)",
        lambda: oa.chat.completions.create(
            model="gpt-4.1-mini", messages=USER, tools=[CHAT_TOOL], stream=True, stream_options={"include_usage": True}
        ),
    )
    run("openai", "models.list", lambda: oa.models.list())

    endpoint = "https://standin.openai.azure.com"
    for auth, kwargs in (("api-key", {"api_key": "azure-standin-key"}), ("entra", {"azure_ad_token": "entra-token-1"})):
        az = openai.AzureOpenAI(azure_endpoint=endpoint, api_version="2025-04-01-preview", http_client=http(),
                                max_retries=0, **kwargs)  # fmt: skip
        run(
            "azure-dated",
            f"chat.completions.create ({auth})",
            lambda az=az: az.chat.completions.create(model="gpt-4o-mini-dep", messages=USER, tools=[CHAT_TOOL]),
        )
        run(
            "azure-dated",
            f"responses.create ({auth})",
            lambda az=az: az.responses.create(model="gpt-4o-mini-dep", input="hi", tools=[TOOL]),
        )
        run("azure-dated", f"models.list ({auth})", lambda az=az: az.models.list())
    v1 = openai.OpenAI(
        api_key="azure-standin-key", base_url=f"{endpoint}/openai/v1/", http_client=http(), max_retries=0
    )
    run("azure-v1", "responses.create", lambda: v1.responses.create(model="gpt-4o-mini-dep", input="hi"))
    run(
        "azure-v1",
        "chat.completions.create",
        lambda: v1.chat.completions.create(model="gpt-4o-mini-dep", messages=USER),
    )

    orr = openai.OpenAI(api_key="sk-or-v1-standin", base_url="https://openrouter.ai/api/v1", http_client=http(),
                        default_headers={"HTTP-Referer": "https://modelyard.test", "X-Title": "modelyard tests"},
                        max_retries=0)  # fmt: skip
    run(
        "openrouter",
        "chat.completions.create",
        lambda: orr.chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=USER,
            extra_body={"provider": {"order": ["openai"], "allow_fallbacks": False}, "reasoning": {"effort": "high"}},
        ),
    )
    run(
        "openrouter",
        "responses.create",
        lambda: orr.responses.create(model="openai/gpt-4o-mini", input="hi", store=False),
    )
    return calls


if __name__ == "__main__":
    OUT.write_text(json.dumps({"openai_sdk": openai.__version__, "calls": record()}, indent=1) + "\n")
    print(f"wrote {OUT}")
