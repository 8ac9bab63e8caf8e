"""``python -m service``: serve the predictor with uvicorn (httptools, uvloop)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from service._deps import missing_dependency
from service._errors import ServiceError
from service._predictor import AnyPredictor, load_predictor_class
from service._settings import IN_FLIGHT_SECONDS, Settings


def build_predictor(settings: Settings) -> AnyPredictor:
    if settings.predictor:
        return load_predictor_class(settings.predictor)
    from service._torch import TorchModelPredictor  # torch loads only when it is used

    return TorchModelPredictor(settings.model_path)


def predictor_factory(settings: Settings) -> Callable[[], AnyPredictor]:
    """One predictor per replica. The first is built now, so a bad PREDICTOR or MODEL_PATH
    exits 2 before the server starts; the others when their replica starts."""
    first = [build_predictor(settings)]
    return lambda: first.pop() if first else build_predictor(settings)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _serve(argv)
    except ModuleNotFoundError as exc:  # a pip install without [service], or without torch
        missing = missing_dependency(exc, "python -m service")
        if missing is None:
            raise
        print(f"error: {missing.message}\nhint: {missing.hint}", file=sys.stderr)
        return 1


def _serve(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", help="address to bind (default: $HOST or 127.0.0.1)")
    parser.add_argument("--port", help="port to bind (default: $PORT or 8000)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.host:
        env["HOST"] = args.host
    if args.port:
        env["PORT"] = args.port
    # The web stack first: without gpu-launcher[service] that is what is missing.
    import uvicorn
    from prometheus_client import CollectorRegistry

    from service._app import create_app
    from service._drain import Drain, DrainingServer
    from service._http import guarded_protocol

    try:
        settings = Settings.from_env(env)
        predictors = predictor_factory(settings)
    except ServiceError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    drain = Drain(settings.drain_seconds)
    app = create_app(predictors, settings, CollectorRegistry(), drain=drain)
    protocol = guarded_protocol(settings.header_timeout_seconds, settings.max_head_bytes, drain)
    # No proxy-headers middleware: nothing here reads the client address (access log is off).
    # No websockets: no endpoint speaks them, and an upgrade would hand over the wrapped transport.
    # limit_concurrency counts the connection asking too: +1 serves MAX_CONNECTIONS of them.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, loop="uvloop",
                            http=protocol, ws="none", lifespan="on",
                            access_log=settings.access_log, log_level=settings.log_level,
                            proxy_headers=False, server_header=False,
                            timeout_keep_alive=settings.keep_alive_seconds,  # type: ignore[arg-type]
                            limit_concurrency=settings.max_connections + 1,
                            timeout_graceful_shutdown=IN_FLIGHT_SECONDS)  # type: ignore[arg-type]
    server = DrainingServer(config, drain)
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown; with a Python handler
    # in place that is a no-op and the process exits 0 instead of dying by the signal.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    raise SystemExit(main())
