"""Streams against a real ``python -m service`` process: ``POST /predict`` with
``Accept: text/event-stream`` over the pure-Python Ticker (tests/service/stream_predictor.py),
which yields at its own pace and logs what its generator does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tests.conftest import ServerProcess, start_server, tool_path
from tests.service.conftest import MAX_STREAMS, ticker_env

pytestmark = pytest.mark.slow
EVENTS = {"Accept": "text/event-stream"}
ONE_ITEM = ("a stream takes one item: this request has %d; send one per request, or leave out "
            "Accept: text/event-stream for a batch")


def events(response: requests.Response) -> Iterator[tuple[str, Any, float]]:
    """(event type, data, arrival time) of each event as it arrives; ``[DONE]`` as data."""
    kind, data = "message", None
    for line in response.iter_lines():
        if line.startswith(b"event: "):
            kind = line[7:].decode()
        elif line.startswith(b"data: "):
            data = line[6:]
        elif not line and data is not None:
            yield kind, "[DONE]" if data == b"[DONE]" else orjson.loads(data), time.monotonic()
            kind, data = "message", None


def stream(server: ServerProcess, item: dict[str, Any], **kwargs: Any) -> requests.Response:
    return requests.post(server.url + "/predict", json=item, headers=EVENTS, stream=True,
                         timeout=30, **kwargs)


def logged(log: Path, tag: str) -> list[str]:
    if not log.exists():
        return []
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()
            if line.split(" ", 1)[0] == tag]


def wait_for(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def metric(server: ServerProcess, name: str) -> float:
    for line in requests.get(server.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no sample {name}")


def test_chunks_arrive_as_they_are_yielded_and_done_ends_the_stream(
        ticker: tuple[ServerProcess, Path]) -> None:
    server, _ = ticker
    pace = 0.4
    start = time.monotonic()
    with stream(server, {"n": 5, "pace": pace}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        got = list(events(response))
    assert [(kind, data) for kind, data, _ in got] == [
        *(("message", {"i": i}) for i in range(5)), ("message", "[DONE]")]
    first, last = got[0][2] - start, got[4][2] - start
    # the first after one pace, the last after five: each chunk is sent as it is yielded
    assert first < pace + 0.3, first
    assert last >= 5 * pace - 0.05, last
    assert last - first >= 3 * pace, (first, last)


def test_an_error_mid_stream_is_an_error_event_that_ends_it(
        ticker: tuple[ServerProcess, Path]) -> None:
    server, _ = ticker
    with stream(server, {"n": 5, "fail_at": 2}) as response:
        got = [(kind, data) for kind, data, _ in events(response)]
    assert response.status_code == 200
    assert got == [("message", {"i": 0}), ("message", {"i": 1}),
                   ("error", {"error": "inference failed: RuntimeError: ticker failed at "
                                       "chunk 2"})]


@pytest.mark.parametrize("body, status, detail", [
    ({"n": 3, "fail_at": 0}, 500, "inference failed: RuntimeError: ticker failed at chunk 0"),
    ({"inputs": [1, 2]}, 422, ONE_ITEM % 2),
    ({"inputs": []}, 422, "the request has no items: send at least one"),
], ids=["error-before-first-chunk-500", "two-items-422", "no-item-422"])
def test_an_error_before_the_first_chunk_is_a_plain_answer(
        ticker: tuple[ServerProcess, Path], body: Any, status: int, detail: str) -> None:
    server, _ = ticker
    response = requests.post(server.url + "/predict", json=body, headers=EVENTS, timeout=10)
    assert (response.status_code, response.json()) == (status, {"detail": detail})


def test_a_client_that_leaves_closes_the_generator_and_frees_its_slot(
        ticker: tuple[ServerProcess, Path]) -> None:
    server, log = ticker
    cancelled = metric(server, "predictor_streams_cancelled_total")
    with stream(server, {"id": "leaver", "n": 100, "pace": 0.1}) as response:
        got = events(response)
        assert [next(got)[1], next(got)[1]] == [{"i": 0}, {"i": 1}]
    left = time.monotonic()  # the connection is closed here
    assert wait_for(lambda: "exit" in logged(log, "leaver"), 3.0), logged(log, "leaver")
    assert time.monotonic() - left < 1.0  # within about one chunk (0.1 s)
    yields = [e for e in logged(log, "leaver") if e.startswith("yield")]
    assert len(yields) < 20 and logged(log, "leaver")[-1] == "exit"
    assert wait_for(lambda: metric(server, "predictor_in_flight_streams") == 0)
    assert metric(server, "predictor_streams_cancelled_total") == cancelled + 1
    # both slots are free again
    responses = [stream(server, {"n": 2}) for _ in range(MAX_STREAMS)]
    assert [r.status_code for r in responses] == [200] * MAX_STREAMS
    for r in responses:
        assert [d for _, d, _ in events(r)][-1] == "[DONE]"


def test_a_reader_that_does_not_read_stops_the_generator(
        ticker: tuple[ServerProcess, Path]) -> None:
    server, log = ticker
    body = orjson.dumps({"id": "sleeper", "n": 5000, "size": 65536})
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        assert wait_for(lambda: len(logged(log, "sleeper")) > 5)
        time.sleep(1.5)
        first = len(logged(log, "sleeper"))
        time.sleep(1.0)
        # the generator waits for the reader: the buffer and the socket's, nowhere near 5000
        assert len(logged(log, "sleeper")) == first
        assert first < 500, first
        rss = _rss_bytes(server.proc.pid)
        assert rss < 400 << 20, rss  # 5000 x 64 KiB would be 320 MiB more
        assert sock.recv(65536)  # it reads: the stream goes on
        sock.setblocking(False)
        assert wait_for(lambda: _drained(sock) and len(logged(log, "sleeper")) > first, 5.0)
    assert wait_for(lambda: "exit" in logged(log, "sleeper"))


def _drained(sock: socket.socket) -> bool:
    try:
        while sock.recv(1 << 20):
            pass
    except BlockingIOError:
        pass
    return True


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_predict_is_answered_while_every_stream_slot_is_taken_and_a_new_stream_gets_503(
        ticker: tuple[ServerProcess, Path]) -> None:
    server, _ = ticker
    opened = [stream(server, {"n": 30, "pace": 0.1}) for _ in range(MAX_STREAMS)]
    try:
        assert [r.status_code for r in opened] == [200] * MAX_STREAMS
        start = time.monotonic()
        plain = requests.post(server.url + "/predict", json={"inputs": [3, 4]}, timeout=10)
        assert (plain.status_code, plain.json()) == (200, {"outputs": [3, 4]})
        assert time.monotonic() - start < 0.5  # behind at most a chunk of each, not a stream
        refused = requests.post(server.url + "/predict", json={"n": 1}, headers=EVENTS,
                                timeout=10)
        assert (refused.status_code, refused.headers["retry-after"], refused.json()) == (
            503, "1", {"detail": "no stream slot free: 2 stream(s) open on each of 1 ready "
                                 "replica(s) (MAX_STREAMS=2); retry in 1 s"})
    finally:
        for r in opened:
            r.close()
        assert wait_for(lambda: metric(server, "predictor_in_flight_streams") == 0)


def test_curl_streams_predict_as_server_sent_events(ticker: tuple[ServerProcess, Path]) -> None:
    server, _ = ticker
    curl = tool_path("curl", "apt-get install curl")
    out = subprocess.run([curl, "-sN", "-H", "Accept: text/event-stream", "-H",
                          "Content-Type: application/json", "-d", '{"n": 3}',
                          server.url + "/predict"], capture_output=True, timeout=30, check=True)
    assert out.stdout == (b'data: {"i":0}\n\ndata: {"i":1}\n\ndata: {"i":2}\n\n'
                          b"data: [DONE]\n\n")


def test_metrics_count_chunks_and_time_the_first(ticker: tuple[ServerProcess, Path]) -> None:
    server, _ = ticker
    chunks = metric(server, "predictor_stream_chunks_total")
    firsts = metric(server, "predictor_stream_first_chunk_seconds_count")
    with stream(server, {"n": 4}) as response:
        list(events(response))
    assert metric(server, "predictor_stream_chunks_total") == chunks + 4
    assert metric(server, "predictor_stream_first_chunk_seconds_count") == firsts + 1


def test_sigterm_gives_open_streams_the_drain_period_then_an_error_event(
        tmp_path: Path) -> None:
    log = tmp_path / "ticker.log"
    server = start_server(tmp_path, env=ticker_env(log, DRAIN_SECONDS="1.5"))
    try:
        with stream(server, {"id": "open", "n": 100, "pace": 0.1}) as response:
            got = events(response)
            assert next(got)[1] == {"i": 0}
            os.kill(server.proc.pid, signal.SIGTERM)
            signalled = time.monotonic()
            time.sleep(0.3)
            refused = requests.post(server.url + "/predict", json={"n": 1}, headers=EVENTS,
                                    timeout=5)
            rest = list(got)
        assert (refused.status_code, refused.json()) == (
            503, {"detail": "the server is stopping: no new streams; retry on another instance"})
        kinds = [kind for kind, _, _ in rest]
        assert kinds[:-1] == ["message"] * (len(rest) - 1) and len(rest) > 5  # it went on
        assert rest[-1][:2] == ("error", {"error": "the server is stopping; the stream was cut "
                                                   "at the end of its drain period "
                                                   "(DRAIN_SECONDS)"})
        assert 1.3 < rest[-1][2] - signalled < 3.0
        assert server.proc.wait(10) == 0
        assert wait_for(lambda: "exit" in logged(log, "open"))
    finally:
        server.stop()


def test_streams_on_one_replica_take_turns_chunk_by_chunk(
        ticker: tuple[ServerProcess, Path]) -> None:
    """Two streams of four 0.2 s chunks on one replica: the second's first chunk comes after
    one step of each (0.4 s), not after the whole first stream (0.8 s)."""
    server, _ = ticker
    firsts: list[float] = []

    def run() -> None:
        with stream(server, {"n": 4, "pace": 0.2}) as response:
            got = list(events(response))
        firsts.append(got[0][2] - start)

    start = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(firsts) == 2 and max(firsts) < 0.65, firsts
