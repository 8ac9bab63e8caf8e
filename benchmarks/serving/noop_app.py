"""The ceiling: a raw ASGI app that answers every request with a fixed JSON body, no model.

    uvicorn --app-dir benchmarks/serving noop_app:app --http httptools --loop uvloop
"""

from __future__ import annotations

from typing import Any

BODY = b'{"predictions":[0],"scores":[[1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0]]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the request body, as a real endpoint does
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
