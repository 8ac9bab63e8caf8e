"""launcher status [--name N] [--json]: the containers this launcher manages, with their image,
health, ports, GPUs and uptime."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from launcher._engine import connect
from launcher._plan import LABEL_MANAGED, LABEL_NAME

__all__ = [
    "add_parser",
    "format_status",
    "gpus_assigned",
    "parse_timestamp",
    "run",
    "status_row",
]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="list the containers launcher manages",
                                   description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--name", help="only this container")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(func=run)


def parse_timestamp(text: str) -> datetime | None:
    """Docker's RFC 3339 times with nanoseconds ("2026-11-28T07:38:20.123456789Z")."""
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    offset = ""
    for sign in ("+", "-"):
        if sign in frac:
            frac, _, tz = frac.partition(sign)
            offset = sign + tz
    stamp = head + (f".{frac[:6]}" if frac else "") + (offset or "+00:00")
    return datetime.fromisoformat(stamp).astimezone(timezone.utc)


def gpus_assigned(device_requests: Sequence[Mapping[str, Any]] | None) -> str:
    """``all``, a count, the device ids, or ``none``: what ``--gpus`` gave the container."""
    parts = []
    for req in device_requests or ():
        if req.get("DeviceIDs"):
            parts.append(",".join(req["DeviceIDs"]))
        elif req.get("Count", 0) < 0:
            parts.append("all")
        else:
            parts.append(str(req.get("Count", 0)))
    return "+".join(parts) or "none"


def _ports(ports: Mapping[str, Any] | None) -> list[str]:
    out = []
    for port, bindings in sorted((ports or {}).items()):
        for b in bindings or ():
            out.append(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}->{port}")
    return out


def status_row(inspect: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """One container as ``status --json`` reports it."""
    state = inspect.get("State") or {}
    config = inspect.get("Config") or {}
    started = parse_timestamp(state.get("StartedAt", "")) if state.get("Running") else None
    labels = config.get("Labels") or {}
    return {
        "name": labels.get(LABEL_NAME) or str(inspect.get("Name", "")).lstrip("/"),
        "image": config.get("Image", ""),
        "state": state.get("Status", ""),
        "health": (state.get("Health") or {}).get("Status") or "none",
        "ports": _ports((inspect.get("NetworkSettings") or {}).get("Ports")),
        "gpus": gpus_assigned((inspect.get("HostConfig") or {}).get("DeviceRequests")),
        "uptime_seconds": int((now - started).total_seconds()) if started else None,
        "restarts": int(inspect.get("RestartCount") or 0),
    }


def _duration(seconds: int | None) -> str:
    """42s, 5m07s, 3h05m, 2d03h."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def format_status(rows: Sequence[Mapping[str, Any]]) -> str:
    """A table for people; no rows → a line saying so."""
    if not rows:
        return "no containers managed by launcher"
    header = ("NAME", "IMAGE", "STATE", "HEALTH", "GPUS", "UPTIME", "PORTS")
    table = [header] + [
        (r["name"], r["image"], r["state"], r["health"], r["gpus"],
         _duration(r["uptime_seconds"]), ", ".join(r["ports"]) or "-")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]
                     for row in table)


def run(args: argparse.Namespace) -> int:
    labels = {LABEL_MANAGED: "true"} | ({LABEL_NAME: args.name} if args.name else {})
    engine = connect()
    try:
        now = datetime.now(timezone.utc)
        rows = [status_row(engine.inspect_container(c["Id"]), now)
                for c in engine.containers(labels)]
    finally:
        engine.close()
    rows.sort(key=lambda r: str(r["name"]))
    print(json.dumps(rows, indent=2) if args.json else format_status(rows))
    return 0
