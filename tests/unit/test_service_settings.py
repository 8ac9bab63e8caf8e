from __future__ import annotations

from pathlib import Path

import pytest

from service._settings import (
    DEFAULT_MODEL_PATH,
    IN_FLIGHT_SECONDS,
    STOP_SECONDS,
    Settings,
    SettingsError,
    parse_devices,
)

DEVICE_HINT = ("use auto, cpu, cuda or cuda:N (N = GPU index, e.g. cuda:0), or a comma-separated "
               "list of them (cuda:0,cuda:2 or cpu,cpu)")
AUTO_HINT = ("set DEVICE=auto alone (every visible GPU, else the CPU), or list the devices "
             "(cpu, cuda, cuda:N)")


def test_defaults_when_nothing_is_set() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.devices, s.replicas_per_device, s.model_path, s.predictor) == (
        "127.0.0.1", 8000, ("auto",), None, DEFAULT_MODEL_PATH, "")
    assert (s.input_width, s.max_batch_rows, s.max_wait_ms, s.max_request_rows,
            s.max_body_bytes, s.log_level, s.access_log) == (None, 64, 5.0, 1024, 1 << 20,
                                                             "info", False)
    assert (s.max_queue_rows, s.max_queue_seconds, s.request_timeout_seconds,
            s.header_timeout_seconds, s.keep_alive_seconds, s.max_connections,
            s.max_head_bytes, s.drain_seconds, s.api_token) == (
        4096, 1.0, 30.0, 10.0, 5.0, 1024, 32768, 5.0, "")
    assert STOP_SECONDS == s.drain_seconds + IN_FLIGHT_SECONDS == 8.0


@pytest.mark.parametrize("env, field, expected", [
    ({"HOST": "127.0.0.1"}, "host", "127.0.0.1"),
    ({"PORT": "9000"}, "port", 9000),
    ({"PORT": " 9000 "}, "port", 9000),
    ({"PORT": ""}, "port", 8000),
    ({"DEVICE": "CUDA:1"}, "devices", ("cuda:1",)),
    ({"DEVICE": "cuda:0,cuda:2"}, "devices", ("cuda:0", "cuda:2")),
    ({"REPLICAS_PER_DEVICE": "2"}, "replicas_per_device", 2),
    ({"REPLICAS_PER_DEVICE": "AUTO"}, "replicas_per_device", None),
    ({"MODEL_PATH": "/m/x.pt"}, "model_path", Path("/m/x.pt")),
    ({"PREDICTOR": "my_pkg.models:Echo"}, "predictor", "my_pkg.models:Echo"),
    ({"INPUT_WIDTH": "3"}, "input_width", 3),
    ({"MAX_BATCH_ROWS": "128"}, "max_batch_rows", 128),
    ({"MAX_WAIT_MS": "2.5"}, "max_wait_ms", 2.5),
    ({"MAX_REQUEST_ROWS": "10"}, "max_request_rows", 10),
    ({"MAX_BODY_BYTES": "4096"}, "max_body_bytes", 4096),
    ({"LOG_LEVEL": "DEBUG"}, "log_level", "debug"),
    ({"ACCESS_LOG": "yes"}, "access_log", True),
    ({"ACCESS_LOG": "0"}, "access_log", False),
    ({"MAX_QUEUE_ROWS": "100", "MAX_REQUEST_ROWS": "100"}, "max_queue_rows", 100),
    ({"MAX_QUEUE_SECONDS": "0.25"}, "max_queue_seconds", 0.25),
    ({"REQUEST_TIMEOUT_SECONDS": "0"}, "request_timeout_seconds", 0.0),
    ({"REQUEST_TIMEOUT_SECONDS": "2.5"}, "request_timeout_seconds", 2.5),
    ({"HEADER_TIMEOUT_SECONDS": "3"}, "header_timeout_seconds", 3.0),
    ({"KEEP_ALIVE_SECONDS": "30"}, "keep_alive_seconds", 30.0),
    ({"MAX_CONNECTIONS": "10"}, "max_connections", 10),
    ({"MAX_HEAD_BYTES": "8192"}, "max_head_bytes", 8192),
    ({"DRAIN_SECONDS": "0"}, "drain_seconds", 0.0),
    ({"MAX_STREAMS": "32"}, "max_streams", 32),
    ({"API_TOKEN": " s3cret "}, "api_token", "s3cret"),
    ({"MODEL_NAME": "mnist-v2.1"}, "model_name", "mnist-v2.1"),
    ({"MODEL_NAME": ""}, "model_name", ""),
], ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(f"{k}={x}" for k, x in v.items()))
def test_from_env_reads_each_setting(env: dict[str, str], field: str, expected: object) -> None:
    assert getattr(Settings.from_env(env), field) == expected


@pytest.mark.parametrize("env, message, hint", [
    ({"PORT": "http"}, "Setting 'PORT' has value 'http'. Not a valid integer.",
     "set PORT to a whole number between 0 and 65535"),
    ({"PORT": "70000"}, "Setting 'PORT' has value '70000'. Out of range.",
     "set PORT to a whole number between 0 and 65535"),
    ({"DEVICE": "gpu"}, "Setting 'DEVICE' has value 'gpu'. Not a valid device.", DEVICE_HINT),
    ({"REPLICAS_PER_DEVICE": "0"}, "Setting 'REPLICAS_PER_DEVICE' has value '0'. Out of range.",
     "set REPLICAS_PER_DEVICE to auto or a whole number between 1 and 64"),
    ({"REPLICAS_PER_DEVICE": "two"},
     "Setting 'REPLICAS_PER_DEVICE' has value 'two'. Not auto or a whole number.",
     "set REPLICAS_PER_DEVICE to auto or a whole number between 1 and 64"),
    ({"PREDICTOR": "my_pkg.Echo"},
     "Setting 'PREDICTOR' has value 'my_pkg.Echo'. Not a 'module:Class' reference.",
     "set PREDICTOR=package.module:ClassName (importable from the working directory)"),
    ({"INPUT_WIDTH": "0"}, "Setting 'INPUT_WIDTH' has value '0'. Out of range.",
     "set INPUT_WIDTH to a whole number between 1 and 1048576"),
    ({"MAX_WAIT_MS": "soon"}, "Setting 'MAX_WAIT_MS' has value 'soon'. Not a number in range.",
     "set MAX_WAIT_MS to a number between 0 and 10000"),
    ({"MAX_WAIT_MS": "nan"}, "Setting 'MAX_WAIT_MS' has value 'nan'. Not a number in range.",
     "set MAX_WAIT_MS to a number between 0 and 10000"),
    ({"MAX_BATCH_ROWS": "-1"}, "Setting 'MAX_BATCH_ROWS' has value '-1'. Out of range.",
     "set MAX_BATCH_ROWS to a whole number between 1 and 1048576"),
    ({"LOG_LEVEL": "loud"}, "Setting 'LOG_LEVEL' has value 'loud'. Not a log level.",
     "use one of: critical, error, warning, info, debug"),
    ({"ACCESS_LOG": "maybe"}, "Setting 'ACCESS_LOG' has value 'maybe'. Not a valid bool.",
     "set ACCESS_LOG to true or false"),
    ({"MAX_QUEUE_ROWS": "0"}, "Setting 'MAX_QUEUE_ROWS' has value '0'. Out of range.",
     "set MAX_QUEUE_ROWS to a whole number between 1 and 1073741824"),
    ({"MAX_QUEUE_ROWS": "100"}, ("Setting 'MAX_QUEUE_ROWS' has value '100'. Smaller than "
                                 "MAX_REQUEST_ROWS (1024): a request that large never fits."),
     "set MAX_QUEUE_ROWS to at least MAX_REQUEST_ROWS, or lower MAX_REQUEST_ROWS to 100"),
    ({"MAX_QUEUE_SECONDS": "0"},
     "Setting 'MAX_QUEUE_SECONDS' has value '0'. Not a number in range.",
     "set MAX_QUEUE_SECONDS to a number between 0.001 and 3600"),
    ({"REQUEST_TIMEOUT_SECONDS": "-1"},
     "Setting 'REQUEST_TIMEOUT_SECONDS' has value '-1'. Not a number in range.",
     "set REQUEST_TIMEOUT_SECONDS to a number between 0 and 86400"),
    ({"MAX_HEAD_BYTES": "100"}, "Setting 'MAX_HEAD_BYTES' has value '100'. Out of range.",
     "set MAX_HEAD_BYTES to a whole number between 1024 and 16777216"),
    ({"MAX_STREAMS": "0"}, "Setting 'MAX_STREAMS' has value '0'. Out of range.",
     "set MAX_STREAMS to a whole number between 1 and 4096"),
    ({"API_TOKEN": "a", "API_TOKEN_FILE": "/run/secrets/t"},
     "Settings 'API_TOKEN' and 'API_TOKEN_FILE' are both set.",
     "set one of them: API_TOKEN_FILE for a mounted secret"),
    ({"API_TOKEN_FILE": "/nonexistent/token"},
     ("Setting 'API_TOKEN_FILE' has value '/nonexistent/token'. Cannot read it "
     "(FileNotFoundError: No such file or directory)."),
     "point API_TOKEN_FILE at a readable file holding the token"),
    ({"MODEL_NAME": "my/model"}, "Setting 'MODEL_NAME' has value 'my/model'. Not a model name.",
     "use letters, digits, '_', '.' and '-' (up to 128; it is part of the /v2 URLs)"),
    ({"MODEL_NAME": "-x"}, "Setting 'MODEL_NAME' has value '-x'. Not a model name.",
     "use letters, digits, '_', '.' and '-' (up to 128; it is part of the /v2 URLs)"),
], ids=["port-word", "port-range", "device-gpu", "replicas-zero", "replicas-word",
        "predictor-no-colon",
        "width-zero", "wait-word", "wait-nan", "batch-negative", "log-level", "access-log",
        "queue-rows-zero", "queue-smaller-than-request", "queue-seconds-zero", "timeout-negative",
        "head-too-small", "streams-zero",
        "token-twice", "token-file-missing", "model-name-slash", "model-name-dash-first"])
def test_from_env_rejects_bad_values(env: dict[str, str], message: str, hint: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert (info.value.message, info.value.hint) == (message, hint)


@pytest.mark.parametrize("value, expected, message, hint", [
    ("auto", ("auto",), None, None),
    ("cpu", ("cpu",), None, None),
    ("cuda", ("cuda",), None, None),
    ("cuda:0", ("cuda:0",), None, None),
    (" Cuda:12 ", ("cuda:12",), None, None),
    ("cuda:01", ("cuda:1",), None, None),
    ("cuda:0,cuda:2", ("cuda:0", "cuda:2"), None, None),
    ("cuda:0, CUDA:2 ", ("cuda:0", "cuda:2"), None, None),
    ("cpu,cpu", ("cpu", "cpu"), None, None),
    ("cpu,cuda:0", ("cpu", "cuda:0"), None, None),
    ("cuda,cpu", ("cuda", "cpu"), None, None),
    ("gpu", None, "Setting 'DEVICE' has value 'gpu'. Not a valid device.", DEVICE_HINT),
    ("cuda:x", None, "Setting 'DEVICE' has value 'cuda:x'. Not a valid device.", DEVICE_HINT),
    ("cuda:-1", None, "Setting 'DEVICE' has value 'cuda:-1'. Not a valid device.", DEVICE_HINT),
    ("cuda:0,gpu1", None,
     "Setting 'DEVICE' has value 'cuda:0,gpu1'. 'gpu1' is not a valid device.", DEVICE_HINT),
    ("cuda:0,,cuda:1", None,
     "Setting 'DEVICE' has value 'cuda:0,,cuda:1'. An empty entry in the list.", DEVICE_HINT),
    ("cpu,", None, "Setting 'DEVICE' has value 'cpu,'. An empty entry in the list.", DEVICE_HINT),
    ("cuda:0;cuda:1", None,
     "Setting 'DEVICE' has value 'cuda:0;cuda:1'. Not a valid device.", DEVICE_HINT),
    ("auto,cpu", None,
     "Setting 'DEVICE' has value 'auto,cpu'. 'auto' cannot be combined with other devices.",
     AUTO_HINT),
    ("auto,auto", None,
     "Setting 'DEVICE' has value 'auto,auto'. 'auto' cannot be combined with other devices.",
     AUTO_HINT),
], ids=["auto", "cpu", "cuda", "cuda0", "spaces-case", "leading-zero", "list", "list-spaces",
        "cpu-twice", "cpu-and-gpu", "all-gpus-and-cpu", "word", "bad-index", "negative-index",
        "bad-entry-in-list", "empty-entry", "trailing-comma", "semicolons", "auto-in-list",
        "auto-twice"])
def test_parse_devices(value: str, expected: tuple[str, ...] | None, message: str | None,
                       hint: str | None) -> None:
    if expected is not None:
        assert parse_devices(value) == expected
        return
    with pytest.raises(SettingsError) as info:
        parse_devices(value)
    assert (info.value.message, info.value.hint) == (message, hint)


@pytest.mark.parametrize("content, expected", [
    ("s3cret\n", "s3cret"), ("  s3cret  \nsecond line\n", "s3cret"),
], ids=["one-line", "first-line-stripped"])
def test_api_token_file_holds_the_token(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    settings = Settings.from_env({"API_TOKEN_FILE": str(path)})
    assert settings.api_token == expected
    assert expected not in repr(settings)


def test_an_empty_api_token_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("\n")
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"API_TOKEN_FILE": str(path)})
    assert info.value.message == (f"Setting 'API_TOKEN_FILE' has value {str(path)!r}. "
                                  "The file is empty.")
