"""A minimal in-process ASGI driver (lifespan + one request at a time), no HTTP client needed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.types import ASGIApp, Message


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


async def request(app: ASGIApp, method: str, path: str, body: bytes = b"",
                  chunks: list[bytes] | None = None, headers: list[tuple[bytes, bytes]] | None = None,
                  root_path: str = "") -> Reply:
    """One request; ``root_path`` is put in front of ``path`` as uvicorn ``--root-path`` does."""
    parts = chunks if chunks is not None else [body]
    messages: list[Message] = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                               for i, p in enumerate(parts)]
    if headers is None:
        headers = [] if chunks is not None else [(b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": root_path + path, "raw_path": (root_path + path).encode(),
             "query_string": b"", "root_path": root_path, "headers": headers, "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000), "state": {}}
    sent: list[Message] = []

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    hdrs = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Reply(start["status"], hdrs, body_out)


@asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[None]:
    """Startup before, shutdown after, as uvicorn does."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def wait_ready(app: ASGIApp, timeout: float = 30.0) -> Reply:
    """Poll /readyz until it is not 'starting' (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        reply = await request(app, "GET", "/readyz")
        if reply.json()["status"] != "starting" or loop.time() > deadline:
            return reply
        await asyncio.sleep(0.01)
