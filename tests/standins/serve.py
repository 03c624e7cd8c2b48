"""Run one stand-in: `python -m standins.serve openai|azure|openrouter|nim` (port STANDIN_PORT, default 8000).

Initial settings come from STANDIN_CONFIG (a JSON object merged into the stand-in's config); tests change
them at run time with POST /_config.
"""

from __future__ import annotations

import json
import os
import sys

import uvicorn

from . import azure_api, nim_api, openai_api, openrouter_api

APPS = {
    "openai": openai_api.make_app,
    "azure": azure_api.make_app,
    "openrouter": openrouter_api.make_app,
    "nim": nim_api.make_app,
}


def main() -> None:
    provider = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("STANDIN_PROVIDER", "openai")
    overrides = json.loads(os.environ.get("STANDIN_CONFIG", "") or "{}")
    port = int(os.environ.get("STANDIN_PORT", "8000"))
    uvicorn.run(APPS[provider](overrides), host="0.0.0.0", port=port, log_level="warning")


if __name__ == "__main__":
    main()
