"""`python -m modelyard <backend>`: run one backend adapter with uvicorn."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from . import logs
from .backends import NAMES
from .config import ConfigError, Settings
from .protocol import HttpProtocol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelyard", description=__doc__)
    parser.add_argument("backend", nargs="?", default=os.environ.get("MODELYARD_BACKEND", "vllm"), choices=NAMES)
    parser.add_argument("--host", default=os.environ.get("MODELYARD_HOST", "0.0.0.0"))
    args = parser.parse_args(argv)
    os.environ["MODELYARD_BACKEND"] = args.backend
    try:
        settings = Settings.from_env(args.backend)  # fail fast, before uvicorn starts, on a bad setting
    except ConfigError as exc:
        print(f"modelyard: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level)
    uvicorn.run(
        "modelyard.app:factory",
        factory=True,
        host=args.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,  # the gateway writes the access log
        # After SIGTERM: in-flight requests get this long to finish (app.py answers new ones 503).
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace)),
        server_header=False,
        http=HttpProtocol,  # a reply's head and body in one send (protocol.py)
        # Longer than the gateway's 60 s for idle upstream connections: the gateway, not the adapter,
        # closes an idle keep-alive connection, so a request never meets one being closed.
        timeout_keep_alive=settings.keep_alive,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
