"""A real uvicorn, with the adapter's protocol, serving a test's raw ASGI app on a free loopback port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from modelyard.protocol import HttpProtocol


async def lifespan(receive: Any, send: Any) -> None:
    """The lifespan protocol, answered: start-up, then shutdown, complete."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """`app` served until the block ends; yields its "127.0.0.1:port"."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, http=HttpProtocol, log_config=None, lifespan="on"))
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    while not srv.started:
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        await task
