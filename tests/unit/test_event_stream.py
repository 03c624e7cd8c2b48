"""relay.EventStream over a real uvicorn (the adapter's protocol): the body is sent as it is produced, the
background task runs after it, and a client that goes away stops the generator where it waits."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.background import BackgroundTask

from modelyard.relay import EventStream
from tests.unit.uvicorn_server import lifespan, serving

seen: list[str] = []


async def events(n: int, pause: float) -> Any:
    try:
        for i in range(n):
            yield b"data: %d\n\n" % i
            await asyncio.sleep(pause)
        seen.append("finished")
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise
    finally:
        seen.append("closed")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    n, pause = (3, 0.01) if scope["path"] == "/short" else (1000, 0.05)
    done = BackgroundTask(seen.append, "background")
    await EventStream(events(n, pause), media_type="text/event-stream", background=done)(scope, receive, send)
    seen.append("returned")


@pytest.fixture
async def server() -> Any:
    seen.clear()
    async with serving(app) as address:
        yield f"http://{address}"


async def test_a_whole_stream_then_its_background(server: str) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{server}/short")
        assert r.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
        assert r.headers["content-type"].startswith("text/event-stream")
    for _ in range(50):
        if "returned" in seen:
            break
        await asyncio.sleep(0.01)
    assert seen == ["finished", "closed", "background", "returned"]


async def test_a_client_that_leaves_stops_the_generator(server: str) -> None:
    async with httpx.AsyncClient() as client, client.stream("GET", f"{server}/long") as r:
        async for _ in r.aiter_raw():
            break  # the first event, then away
    for _ in range(100):
        if "returned" in seen:
            break
        await asyncio.sleep(0.01)
    # Cancelled where it waited (not run on to its 1,000th event); the handler returns normally.
    assert seen == ["cancelled", "closed", "background", "returned"]
