"""A small asyncio HTTP/1.1 client over keep-alive connections to 127.0.0.1, so the tests see
what a connection does: whether a request was written, answered, and whether the answer said
``Connection: close`` (which ``requests`` hides behind its pool)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

__all__ = ["Connection", "Lost", "Reply", "predict_request"]


class Lost(Exception):
    """The request was written to an open connection and no answer came back."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the request's write to its answer

    @property
    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


def predict_request(body: bytes, headers: dict[str, str] | None = None,
                    path: str = "/predict") -> bytes:
    lines = [b"POST %s HTTP/1.1" % path.encode(), b"host: 127.0.0.1",
             b"content-type: application/json", b"content-length: %d" % len(body)]
    lines += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False

    @classmethod
    async def open(cls, port: int, timeout: float = 5.0) -> Connection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> float:
        """Write a request; the time it was written. Raises OSError when the connection was
        already closed (the request was not written)."""
        self.writer.write(raw)
        await self.writer.drain()
        return time.monotonic()

    async def answer(self, since: float, timeout: float = 30.0) -> Reply:
        """Read one response; :class:`Lost` when the connection ends before it."""
        try:
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.closed = True
            raise Lost(f"connection ended before the answer ({type(exc).__name__})") from None
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(
            self.reader.readexactly(int(headers.get("content-length", "0"))), timeout)
        reply = Reply(int(status_line.split()[1]), headers, body, time.monotonic() - since)
        if reply.closes:
            self.close()
        return reply

    async def request(self, raw: bytes, timeout: float = 30.0) -> Reply:
        return await self.answer(await self.send(raw), timeout)

    def close(self) -> None:
        self.closed = True
        self.writer.close()
