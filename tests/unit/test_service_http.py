from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service._http import _CoalescingTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


class FakeLoop:
    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def run_soon(self) -> None:
        for callback in self.soon:
            callback()
        self.soon.clear()


@pytest.mark.parametrize("writes, close, expected", [
    ([HEAD, b"{}"], False, [HEAD + b"{}"]),
    ([HEAD], False, [HEAD]),
    ([HEAD, b"{}", HEAD, b"[]"], False, [HEAD + b"{}", HEAD + b"[]"]),
    ([b"2\r\n{}\r\n", b"0\r\n\r\n"], False, [b"2\r\n{}\r\n", b"0\r\n\r\n"]),
    ([b"HTTP/1.1 100 Continue\r\n\r\n"], False, [b"HTTP/1.1 100 Continue\r\n\r\n"]),
    ([HEAD], True, [HEAD]),
], ids=["head-and-body-in-one-write", "head-alone-flushed-next-turn", "two-responses",
        "chunked-body-passes-through", "100-continue-flushed", "close-flushes-first"])
def test_each_response_leaves_in_one_write(writes: list[bytes], close: bool,
                                           expected: list[bytes]) -> None:
    transport, loop = FakeTransport(), FakeLoop()
    coalescing = _CoalescingTransport(transport, loop)  # type: ignore[arg-type]
    for data in writes:
        coalescing.write(data)
    if close:
        coalescing.close()
        assert transport.closed
    loop.run_soon()
    assert transport.writes == expected


def test_everything_else_is_the_real_transports() -> None:
    coalescing = _CoalescingTransport(FakeTransport(), FakeLoop())  # type: ignore[arg-type]
    assert coalescing.get_extra_info("peername") == ("127.0.0.1", 1)
