"""Typed settings of the service, read from the environment (pure: takes a mapping)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from service._errors import ServiceError

__all__ = ["DEFAULT_DRAIN_SECONDS", "DEFAULT_MODEL_PATH", "IN_FLIGHT_SECONDS",
           "MAX_REPLICAS_PER_DEVICE", "STOP_SECONDS", "Settings", "SettingsError",
           "parse_devices", "read_api_token"]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "digits.pt"
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_DEVICE = re.compile(r"auto|cpu|cuda(?::(\d+))?")
_DEVICE_HINT = ("use auto, cpu, cuda or cuda:N (N = GPU index, e.g. cuda:0), or a comma-separated "
                "list of them (cuda:0,cuda:2 or cpu,cpu)")
MAX_REPLICAS_PER_DEVICE = 64
_PREDICTOR = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_Getter = Callable[[str], "str | None"]
_N = TypeVar("_N", int, float)
# SIGTERM -> exit: DRAIN_SECONDS of draining, then up to IN_FLIGHT_SECONDS for the requests
# still running. STOP_SECONDS fits the 10 s stop grace of `launcher down` and compose; a
# Kubernetes pod's terminationGracePeriodSeconds must be above it.
DEFAULT_DRAIN_SECONDS = 5.0
IN_FLIGHT_SECONDS = 3.0
STOP_SECONDS = DEFAULT_DRAIN_SECONDS + IN_FLIGHT_SECONDS


class SettingsError(ServiceError, ValueError):
    """A setting with a bad value; the message names the setting and echoes the value."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"  # the images set HOST=0.0.0.0
    port: int = 8000
    devices: tuple[str, ...] = ("auto",)  # DEVICE, parsed: one entry per listed device
    # REPLICAS_PER_DEVICE: model replicas on each device; None = auto (service/_device.py)
    replicas_per_device: int | None = None
    model_path: Path = DEFAULT_MODEL_PATH
    predictor: str = ""  # "package.module:Class" selects a Python predictor instead of MODEL_PATH
    input_width: int | None = None  # None: read it from the model
    max_batch_rows: int = 64
    max_wait_ms: float = 5.0
    max_request_rows: int = 1024
    max_body_bytes: int = 1 << 20
    log_level: str = "info"
    access_log: bool = False
    model_name: str = ""  # the Open Inference Protocol's model name ("": the model file's stem)
    # Admission: past either bound a request is answered 503 at once (see docs/reliability.md).
    max_queue_rows: int = 4096
    max_queue_seconds: float = 1.0
    request_timeout_seconds: float = 30.0  # 0: no deadline unless X-Request-Timeout sets one
    # An object predictor's batch weighs at most this much (the sum of cost(item); tokens, as
    # Text Embeddings Inference's max_batch_tokens, whose default this is).
    max_batch_cost: int = 16384
    # Connections (uvicorn's own knobs: timeout_keep_alive, limit_concurrency; ours: the rest)
    header_timeout_seconds: float = 10.0
    keep_alive_seconds: float = 5.0
    max_connections: int = 1024
    max_head_bytes: int = 32768
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    # Streams: open at once on each ready replica, stepped in turn between its batches
    max_streams: int = 16
    api_token: str = field(default="", repr=False)  # never in a log line or a repr

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from ``env`` (``os.environ``); unset or empty keys keep the defaults."""

        def get(key: str) -> str | None:
            value = env.get(key)
            return value.strip() if value is not None and value.strip() else None

        d = cls()
        host = get("HOST") or d.host
        port = _int(get, "PORT", d.port, 0, 65535)
        devices = parse_devices(get("DEVICE") or ",".join(d.devices))
        replicas = _replicas(get)
        model_path = Path(get("MODEL_PATH") or d.model_path)
        predictor = get("PREDICTOR") or ""
        if predictor and not _PREDICTOR.fullmatch(predictor):
            raise SettingsError(
                f"Setting 'PREDICTOR' has value {predictor!r}. Not a 'module:Class' reference.",
                "set PREDICTOR=package.module:ClassName (importable from the working directory)",
            )
        width_raw = get("INPUT_WIDTH")
        input_width = None if width_raw is None else _int(get, "INPUT_WIDTH", 0, 1, 1 << 20)
        max_batch_rows = _int(get, "MAX_BATCH_ROWS", d.max_batch_rows, 1, 1 << 20)
        max_wait_ms = _float(get, "MAX_WAIT_MS", d.max_wait_ms, 0.0, 10_000.0)
        max_request_rows = _int(get, "MAX_REQUEST_ROWS", d.max_request_rows, 1, 1 << 20)
        max_body_bytes = _int(get, "MAX_BODY_BYTES", d.max_body_bytes, 64, 1 << 31)
        log_level = (get("LOG_LEVEL") or d.log_level).lower()
        if log_level not in _LOG_LEVELS:
            raise SettingsError(
                f"Setting 'LOG_LEVEL' has value {log_level!r}. Not a log level.",
                f"use one of: {', '.join(_LOG_LEVELS)}",
            )
        access_log = _bool(get, "ACCESS_LOG", d.access_log)
        model_name = get("MODEL_NAME") or ""
        if model_name and not _MODEL_NAME.fullmatch(model_name):
            raise SettingsError(
                f"Setting 'MODEL_NAME' has value {model_name!r}. Not a model name.",
                "use letters, digits, '_', '.' and '-' (up to 128; it is part of the /v2 URLs)",
            )
        max_queue_rows = _int(get, "MAX_QUEUE_ROWS", d.max_queue_rows, 1, 1 << 30)
        if max_queue_rows < max_request_rows:  # such a request would get 503 "retry" forever
            raise SettingsError(
                f"Setting 'MAX_QUEUE_ROWS' has value '{max_queue_rows}'. Smaller than "
                f"MAX_REQUEST_ROWS ({max_request_rows}): a request that large never fits.",
                f"set MAX_QUEUE_ROWS to at least MAX_REQUEST_ROWS, or lower MAX_REQUEST_ROWS "
                f"to {max_queue_rows}")
        return cls(
            host, port, devices, replicas, model_path, predictor, input_width,
            max_batch_rows, max_wait_ms, max_request_rows, max_body_bytes, log_level, access_log,
            model_name,
            max_queue_rows=max_queue_rows,
            max_queue_seconds=_float(get, "MAX_QUEUE_SECONDS", d.max_queue_seconds, 0.001,
                                     3600.0),
            request_timeout_seconds=_float(get, "REQUEST_TIMEOUT_SECONDS",
                                           d.request_timeout_seconds, 0.0, 86400.0),
            max_batch_cost=_int(get, "MAX_BATCH_COST", d.max_batch_cost, 1, 1 << 40),
            header_timeout_seconds=_float(get, "HEADER_TIMEOUT_SECONDS",
                                          d.header_timeout_seconds, 0.1, 3600.0),
            keep_alive_seconds=_float(get, "KEEP_ALIVE_SECONDS", d.keep_alive_seconds, 0.1,
                                      3600.0),
            max_connections=_int(get, "MAX_CONNECTIONS", d.max_connections, 1, 1 << 20),
            max_head_bytes=_int(get, "MAX_HEAD_BYTES", d.max_head_bytes, 1024, 1 << 24),
            drain_seconds=_float(get, "DRAIN_SECONDS", d.drain_seconds, 0.0, 3600.0),
            max_streams=_int(get, "MAX_STREAMS", d.max_streams, 1, 4096),
            api_token=read_api_token(get("API_TOKEN"), get("API_TOKEN_FILE")),
        )


def read_api_token(token: str | None, path: str | None) -> str:
    """``API_TOKEN``, or the first line of the file ``API_TOKEN_FILE`` names (a mounted
    secret); empty when neither is set. Both set is ambiguous and refused."""
    if token and path:
        raise SettingsError("Settings 'API_TOKEN' and 'API_TOKEN_FILE' are both set.",
                            "set one of them: API_TOKEN_FILE for a mounted secret")
    if not path:
        return token or ""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"Setting 'API_TOKEN_FILE' has value {path!r}. Cannot read it "
                            f"({type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}).",
                            "point API_TOKEN_FILE at a readable file holding the token") from None
    lines = text.strip().splitlines()
    value = lines[0].strip() if lines else ""
    if not value:
        raise SettingsError(f"Setting 'API_TOKEN_FILE' has value {path!r}. The file is empty.",
                            "write the token on the file's first line")
    return value


def parse_devices(value: str) -> tuple[str, ...]:
    """``DEVICE``: ``auto``, or a comma-separated list of ``cpu``, ``cuda`` (every visible GPU)
    and ``cuda:N``; lower case, spaces dropped, ``cuda:01`` -> ``cuda:1``. An entry may repeat
    (``cpu,cpu``: two replicas on the CPU)."""
    entries = [entry.strip().lower() for entry in value.split(",")]
    devices = []
    for entry in entries:
        match = _DEVICE.fullmatch(entry)
        if match is None:
            what = "Not a valid device." if len(entries) == 1 else (
                "An empty entry in the list." if not entry else f"{entry!r} is not a valid device.")
            raise SettingsError(f"Setting 'DEVICE' has value {value!r}. {what}", _DEVICE_HINT)
        devices.append(f"cuda:{int(match[1])}" if match[1] else entry)
    if "auto" in devices and len(devices) > 1:
        raise SettingsError(
            f"Setting 'DEVICE' has value {value!r}. 'auto' cannot be combined with other devices.",
            "set DEVICE=auto alone (every visible GPU, else the CPU), or list the devices "
            "(cpu, cuda, cuda:N)")
    return tuple(devices)


def _replicas(get: _Getter) -> int | None:
    """``REPLICAS_PER_DEVICE``: ``auto`` (the default) or 1..MAX_REPLICAS_PER_DEVICE."""
    raw = get("REPLICAS_PER_DEVICE")
    if raw is None or raw.lower() == "auto":
        return None
    hint = f"set REPLICAS_PER_DEVICE to auto or a whole number between 1 and " \
           f"{MAX_REPLICAS_PER_DEVICE}"
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"Setting 'REPLICAS_PER_DEVICE' has value {raw!r}. Not auto or a "
                            "whole number.", hint) from None
    if not 1 <= value <= MAX_REPLICAS_PER_DEVICE:
        raise SettingsError(f"Setting 'REPLICAS_PER_DEVICE' has value {raw!r}. Out of range.",
                            hint)
    return value


def _int(get: _Getter, key: str, default: int, low: int, high: int) -> int:
    return _number(get, key, default, low, high, int)


def _float(get: _Getter, key: str, default: float, low: float, high: float) -> float:
    return _number(get, key, default, low, high, float)


def _number(get: _Getter, key: str, default: _N, low: _N, high: _N, kind: Callable[[str], _N]) -> _N:
    """Setting KEY read by KIND (int or float), between LOW and HIGH; unset: DEFAULT."""
    raw = get(key)
    if raw is None:
        return default
    try:
        value: _N | None = kind(raw)
    except ValueError:
        value = None
    if value is not None and low <= value <= high:  # false for NaN too
        return value
    if kind is not int:
        raise SettingsError(f"Setting {key!r} has value {raw!r}. Not a number in range.",
                            f"set {key} to a number between {low:g} and {high:g}")
    reason = "Not a valid integer." if value is None else "Out of range."
    raise SettingsError(f"Setting {key!r} has value {raw!r}. {reason}",
                        f"set {key} to a whole number between {low} and {high}")


def _bool(get: _Getter, key: str, default: bool) -> bool:
    raw = get(key)
    if raw is None:
        return default
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"Setting {key!r} has value {raw!r}. Not a valid bool.",
                        f"set {key} to true or false")
