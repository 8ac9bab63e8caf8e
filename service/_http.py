"""uvicorn's httptools protocol, writing each response's head and body in one ``send()``, and
guarding the connection against stalled and oversized requests and for the drain.

uvicorn writes the status line and headers, then the body, as two transport writes: two system
calls and two TCP segments per response, a fifth of the server's time on small JSON answers. This
protocol holds the head until the body follows (or the next loop turn, or close), so a complete
response leaves in one write.

:class:`GuardedHttpToolsProtocol` adds what httptools and uvicorn lack (nginx's
``client_header_timeout``, ``client_body_timeout`` and header buffer limit): a request head must
arrive within ``HEADER_TIMEOUT_SECONDS`` of its first byte (and a new connection must start one
within that time), a body may pause no longer than that between reads, and a head is at most
``MAX_HEAD_BYTES``. A stalled client is answered 408 where a response still fits (no answer of
this connection is in progress), an oversized head 431; both close the connection. Parsing,
flow control, keep-alive (``timeout_keep_alive``) and the connection cap
(``limit_concurrency``) stay uvicorn's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service._drain import Drain

__all__ = ["DISCONNECT_HOOK", "CoalescingHttpToolsProtocol", "GuardedHttpToolsProtocol",
           "guarded_protocol"]

DISCONNECT_HOOK = "service.on_disconnect"  # scope["extensions"] key: register a callback
LINGER_SECONDS = 2.0  # after a 408/431: how long to drain the client's input before closing


class _CoalescingTransport:
    """Delegates to the real transport; holds a header block until the next write."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data[-4:] == b"\r\n\r\n" and data[:5] == b"HTTP/":
            self._held = data  # a response head: its body is normally written next
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]


class GuardedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """Set by :func:`guarded_protocol`: the limits and the server's drain."""

    header_timeout: float = 10.0
    max_head_bytes: int = 32768
    drain: Drain = Drain(0.0)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = False  # between a request's first byte and the end of its head
        self._head_bytes = 0  # the head's URL and headers, as parsed
        self._partial_bytes = 0  # bytes received while a head stayed incomplete
        self._refused = False
        self._on_lost: list[Callable[[], None]] = []  # the app's hooks for this request
        self._idle_since = self.loop.time()
        self._read_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout, self._read_timed_out)
        if self.drain.draining:
            self.begin_drain()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        super().connection_lost(exc)
        hooks, self._on_lost = self._on_lost, []
        for hook in hooks:
            hook()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: read and drop what the client still sends
        super().data_received(data)
        if self._refused or self.parser is None:
            return
        # Timers only for what is still incomplete: a request that came whole costs none.
        if self._in_head:
            self._partial_bytes += len(data)
            if self._partial_bytes > self.max_head_bytes:
                self._refuse(431, f"request head is over the limit of {self.max_head_bytes} "
                                  "bytes (MAX_HEAD_BYTES)")
            elif self._read_timer is None:
                self._arm_read_timer()  # the head must be complete in time
        elif self.cycle is not None and self.cycle.more_body and not self.cycle.response_started:
            self._arm_read_timer()  # a body in progress: the next part must come in time

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._partial_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_read_timer()
        if self._refused:
            return
        if self._head_bytes > self.max_head_bytes:
            self._refuse(431, f"request head is {self._head_bytes} bytes, over the limit of "
                              f"{self.max_head_bytes} bytes (MAX_HEAD_BYTES)")
            return
        super().on_headers_complete()
        if self.cycle is not None:
            # ASGI extension: the app registers what to do if the connection is lost (a queued
            # request leaves the queue) without a task waiting on receive() per request.
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions[DISCONNECT_HOOK] = self._on_lost.append
            if self.drain.draining:
                self.cycle.keep_alive = False  # the answer says Connection: close

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            self._cancel_read_timer()
            super().on_message_complete()

    def on_response_complete(self) -> None:
        self._idle_since = self.loop.time()
        self._on_lost.clear()
        super().on_response_complete()

    def shutdown(self) -> None:
        """uvicorn's shutdown (after the drain), except that a request whose head is arriving is
        still read and answered, and an idle connection closes only after the idle moment (a
        client may be writing to it just now)."""
        if self._in_head:
            return
        if self.cycle is None or self.cycle.response_complete:
            self._close_when_idle()
        else:
            self.cycle.keep_alive = False

    def begin_drain(self) -> None:
        """From now on every answer closes its connection; an idle one closes after the idle
        moment of the drain."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        self._close_when_idle()

    def _close_when_idle(self) -> None:
        if self.transport.is_closing():
            return
        busy = self._in_head or (self.cycle is not None and not self.cycle.response_complete)
        if busy:
            return  # its answer carries Connection: close
        wait = self._idle_since + self.drain.idle - self.loop.time()
        if wait > 0:
            self.loop.call_later(wait, self._close_when_idle)
        else:
            self.transport.close()

    def _arm_read_timer(self) -> None:
        self._cancel_read_timer()
        self._read_timer = self.loop.call_later(self.header_timeout, self._read_timed_out)

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self._in_head:
            self._refuse(408, f"request head not complete within {self.header_timeout:g} s "
                              "(HEADER_TIMEOUT_SECONDS)")
        elif self.cycle is not None and self.cycle.more_body and not self.cycle.response_started:
            self._refuse(408, f"request body stalled for {self.header_timeout:g} s "
                              "(HEADER_TIMEOUT_SECONDS)")
        elif self.cycle is None:
            self.transport.close()  # connected, and never sent a byte

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` and close, unless an answer of this connection is in progress
        (then the connection just closes)."""
        self._refused = True
        self._cancel_read_timer()
        previous = self.cycle
        in_progress = previous is not None and not previous.response_complete and (
            previous.response_started or not previous.more_body)
        if not in_progress:
            body = orjson.dumps({"detail": message})
            self.transport.write(b"".join([
                STATUS_LINE[status], *(b"%s: %s\r\n" % kv for kv in self.server_state.default_headers),
                b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n", body]))
        self.logger.info("%s: %s", status, message)
        # nginx's lingering close: closing with unread input would send a TCP reset that can
        # destroy the answer before the client reads it; so end our side, read and drop what
        # still comes for a moment, then close.
        if in_progress or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def guarded_protocol(header_timeout: float, max_head_bytes: int,
                     drain: Drain) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {
        "header_timeout": header_timeout, "max_head_bytes": max_head_bytes, "drain": drain})
