"""The pure parts of streaming: SSE framing, the Accept header, and a request's prompt fields."""

from __future__ import annotations

from typing import Any

import pytest

from service._inputs import BadRequest
from service._prompt import Prompt, prompt_of
from service._sse import DONE, data_event, error_event, wants_events
from tests.conftest import error_text


@pytest.mark.parametrize("accept, expected", [
    (b"text/event-stream", True),
    (b"Text/Event-Stream; charset=utf-8", True),
    (b"application/json, text/event-stream;q=0.9", True),
    (b"application/json", False),
    (b"*/*", False),
    (None, False),
], ids=["exact", "case-and-parameter", "in-a-list", "json", "anything", "no-accept"])
def test_wants_events_reads_accept(accept: bytes | None, expected: bool) -> None:
    headers = [(b"content-type", b"application/json")]
    if accept is not None:
        headers.append((b"accept", accept))
    assert wants_events(headers) is expected


def test_events_are_framed_as_server_sent_events() -> None:
    assert data_event({"i": 1, "text": "a\nb"}) == b'data: {"i":1,"text":"a\\nb"}\n\n'
    assert data_event("tok") == b'data: "tok"\n\n'
    assert error_event("it broke") == b'event: error\ndata: {"error":"it broke"}\n\n'
    assert DONE == b"data: [DONE]\n\n"


@pytest.mark.parametrize("fields, expected", [
    ({}, Prompt("hi")),
    ({"max_tokens": 5, "temperature": 0, "stop": "."}, Prompt("hi", 5, 0.0, (".",))),
    ({"temperature": 1.5, "stop": ["a", "b"]}, Prompt("hi", None, 1.5, ("a", "b"))),
    ({"stop": []}, Prompt("hi")),
    ({"max_tokens": None, "temperature": None, "stop": None}, Prompt("hi")),
], ids=["none", "all", "stop-list", "stop-empty", "nulls"])
def test_prompt_of_takes_the_fields_a_request_gives(fields: dict[str, Any],
                                                    expected: Prompt) -> None:
    assert prompt_of("hi", fields, 2.0) == expected


@pytest.mark.parametrize("fields, message", [
    ({"max_tokens": 0}, "'max_tokens' must be a whole number of at least 1, got 0"),
    ({"max_tokens": 2.5}, "'max_tokens' must be a whole number of at least 1, got 2.5"),
    ({"max_tokens": True}, "'max_tokens' must be a whole number of at least 1, got true"),
    ({"temperature": 2.5}, "'temperature' must be a number from 0 to 2, got 2.5"),
    ({"temperature": "0"}, "'temperature' must be a number from 0 to 2, got \"0\""),
    ({"stop": 3}, "'stop' must be a string or a list of strings, got a number"),
    ({"stop": ["a", None]}, "'stop' must be a string or a list of strings, got a list"),
], ids=["max-tokens-zero", "max-tokens-float", "max-tokens-bool", "temperature-high",
        "temperature-string", "stop-number", "stop-null-in-list"])
def test_prompt_of_names_the_field_that_does_not_fit(fields: dict[str, Any],
                                                     message: str) -> None:
    assert error_text(BadRequest, prompt_of, "hi", fields, 2.0) == message
