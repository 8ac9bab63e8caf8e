"""``--gpus`` parsed exactly as ``docker run --gpus`` (docker/cli ``opts/gpus.go``).

Same accepted forms, same resulting DeviceRequests, same error text: one value is one CSV
record (Go's ``encoding/csv``), so a device list needs quoting: ``--gpus '"device=0,2"'``.
Unquoted, ``device=0,2`` is *two* fields: ``device=0`` and a bare count ``2``, as in Docker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeviceRequest", "GpuSpecError", "parse_gpus", "read_csv_record"]

_INT64_MAX = 2**63 - 1
_GO_INT = re.compile(r"[+-]?[0-9]+\Z")


class GpuSpecError(ValueError):
    """A ``--gpus`` value Docker would reject; the message is the Docker CLI's own text."""


@dataclass(frozen=True)
class DeviceRequest:
    """One Engine API ``HostConfig.DeviceRequests`` entry (Count -1 means all GPUs)."""

    driver: str = ""
    count: int = 0
    device_ids: tuple[str, ...] | None = None
    capabilities: tuple[tuple[str, ...], ...] = (("gpu",),)
    options: tuple[tuple[str, str], ...] = field(default=())

    @property
    def names_devices(self) -> bool:
        """True when the user named devices (the lifecycle never falls back to CPU then)."""
        return self.device_ids is not None

    def to_api(self) -> dict[str, Any]:
        """The JSON the Docker CLI sends (and ``docker inspect`` shows) for this request."""
        return {
            "Driver": self.driver,
            "Count": self.count,
            "DeviceIDs": list(self.device_ids) if self.device_ids is not None else None,
            "Capabilities": [list(c) for c in self.capabilities],
            "Options": dict(self.options),
        }


def _parse_count(text: str) -> int:
    """Go ``strconv.Atoi`` with docker's "all" = -1, and docker's error text."""
    if text == "all":
        return -1
    reason = "invalid syntax"
    if _GO_INT.match(text):
        value = int(text)
        if -_INT64_MAX - 1 <= value <= _INT64_MAX:
            return value
        reason = "value out of range"
    raise GpuSpecError(
        f'invalid count ({text}): value must be either "all" or an integer: {reason}'
    )


def _csv_error(start_line: int, line: int, column: int, err: str) -> GpuSpecError:
    if start_line != line:
        return GpuSpecError(
            f"record on line {start_line}; parse error on line {line}, column {column}: {err}"
        )
    return GpuSpecError(f"parse error on line {line}, column {column}: {err}")


def read_csv_record(value: str) -> list[str]:
    """The first record of ``value`` as Go's ``csv.NewReader(...).Read()`` returns it.

    Defaults of Go's reader: comma ``,``, no comment char, no lazy quotes, no space trimming,
    blank lines skipped, ``\\r\\n`` read as ``\\n``; columns are 1-based byte offsets.
    """
    lines = re.findall(rb"[^\n]*\n|[^\n]+\Z", value.encode())
    lines = [ln[:-2] + b"\n" if ln.endswith(b"\r\n") else ln for ln in lines]
    if lines and lines[-1].endswith(b"\r"):  # Go drops a trailing \r before EOF
        lines[-1] = lines[-1][:-1]
    number = 0
    while number < len(lines) and lines[number] in (b"\n", b""):
        number += 1
    if number >= len(lines):
        raise GpuSpecError("EOF")
    start = number + 1
    line, line_no, col = lines[number], start, 1
    fields: list[str] = []
    buf = bytearray()
    while True:
        if not line.startswith(b'"'):
            comma = line.find(b",")
            text = line[:comma] if comma >= 0 else line.rstrip(b"\n")
            quote = text.find(b'"')
            if quote >= 0:
                raise _csv_error(start, line_no, col + quote, 'bare " in non-quoted-field')
            fields.append(text.decode())
            if comma < 0:
                return fields
            line, col = line[comma + 1:], col + comma + 1
            continue
        line, col = line[1:], col + 1
        buf.clear()
        while True:
            quote = line.find(b'"')
            if quote >= 0:
                buf += line[:quote]
                line, col = line[quote + 1:], col + quote + 1
                if line.startswith(b'"'):  # "" is an escaped quote
                    buf += b'"'
                    line, col = line[1:], col + 1
                elif line.startswith(b","):
                    fields.append(buf.decode())
                    line, col = line[1:], col + 1
                    break
                elif line in (b"", b"\n"):
                    fields.append(buf.decode())
                    return fields
                else:
                    raise _csv_error(
                        start, line_no, col - 1, 'extraneous or missing " in quoted-field'
                    )
            elif line:
                buf += line
                col += len(line)
                if line_no < len(lines):  # a quoted field continues on the next line
                    line, line_no, col = lines[line_no], line_no + 1, 1
                else:
                    line = b""
            else:
                raise _csv_error(start, line_no, col, 'extraneous or missing " in quoted-field')


def _kv_map(items: list[str]) -> tuple[tuple[str, str], ...]:
    """docker's ``ConvertKVStringsToMap``: ``k=v`` pairs; a bare ``k`` maps to ""."""
    result: dict[str, str] = {}
    for item in items:
        key, _, val = item.partition("=")
        result[key] = val
    return tuple(result.items())


def parse_gpus(value: str) -> DeviceRequest:
    """One ``--gpus`` value → one DeviceRequest, or :class:`GpuSpecError` with docker's text."""
    driver, count, device_ids = "", 0, None
    capabilities: tuple[tuple[str, ...], ...] | None = None
    options: tuple[tuple[str, str], ...] | None = None
    seen: set[str] = set()
    for item in read_csv_record(value):
        key, has_value, val = item.partition("=")
        if key in seen:
            raise GpuSpecError(f"gpu request key '{key}' can be specified only once")
        seen.add(key)
        if not has_value:
            seen.add("count")
            count = _parse_count(key)
        elif key == "driver":
            driver = val
        elif key == "count":
            count = _parse_count(val)
        elif key == "device":
            device_ids = tuple(val.split(","))
        elif key == "capabilities":
            capabilities = ((*val.split(","), "gpu"),)
        elif key == "options":
            try:
                options = _kv_map(read_csv_record(val))
            except GpuSpecError as exc:
                raise GpuSpecError(f"failed to read gpu options: {exc}") from None
        else:
            raise GpuSpecError(f"unexpected key '{key}' in '{item}'")
    if "count" not in seen and device_ids is None:
        count = 1
    return DeviceRequest(
        driver=driver,
        count=count,
        device_ids=device_ids,
        capabilities=capabilities if capabilities is not None else (("gpu",),),
        options=options if options is not None else (),
    )
