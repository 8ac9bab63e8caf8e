"""launcher status [--name N] [--json]: the containers this launcher manages, with their image,
health, model replicas, ports, GPUs and uptime."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from launcher._engine import connect, is_remote_engine
from launcher._help import summary
from launcher._lifecycle import service_url
from launcher._plan import LABEL_MANAGED, LABEL_NAME, READY_PATH

__all__ = [
    "add_parser",
    "format_replicas",
    "format_status",
    "gpus_assigned",
    "parse_timestamp",
    "readyz_replicas",
    "readyz_url",
    "run",
    "status_row",
]
REPLICA_STATES = ("ready", "starting", "failed")  # the service's (service/_replicas.py)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="list the containers launcher manages",
                                   description=summary(__doc__))
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


def readyz_url(inspect: Mapping[str, Any]) -> str | None:
    """``http://ADDR:PORT/readyz`` of the service's published port on this host, or None."""
    url = service_url((inspect.get("NetworkSettings") or {}).get("Ports"))
    return url + READY_PATH if url else None


def readyz_replicas(body: Any) -> list[dict[str, Any]] | None:
    """The ``replicas`` of a ``/readyz`` answer (device, state, reason each), or None when it
    has none (an older service, or not JSON)."""
    replicas = body.get("replicas") if isinstance(body, Mapping) else None
    if not isinstance(replicas, list) or not all(isinstance(r, Mapping) for r in replicas):
        return None
    return [{"device": str(r.get("device", "")), "state": str(r.get("state", "")),
             "reason": r.get("reason")} for r in replicas]


def _fetch_readyz(url: str, timeout: float = 2.0) -> Any:
    """The JSON ``/readyz`` answers (with 200 or 503), or None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:  # 503: starting, or every replica failed
        try:
            return json.loads(exc.read())
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def format_replicas(replicas: Sequence[Mapping[str, Any]] | None) -> str:
    """``2/2 ready``, ``1/2 ready, 1 failed``, ``0/1 starting``; ``-`` when unknown."""
    if not replicas:
        return "-"
    counts = {state: sum(1 for r in replicas if r["state"] == state) for state in REPLICA_STATES}
    rest = [f"{counts[s]} {s}" for s in REPLICA_STATES[1:] if counts[s]]
    return ", ".join([f"{counts['ready']}/{len(replicas)} ready", *rest])


def status_row(inspect: Mapping[str, Any], now: datetime,
               replicas: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One container as ``status --json`` reports it; ``replicas`` from its ``/readyz``."""
    state = inspect.get("State") or {}
    config = inspect.get("Config") or {}
    started = parse_timestamp(state.get("StartedAt", "")) if state.get("Running") else None
    labels = config.get("Labels") or {}
    return {
        "name": labels.get(LABEL_NAME) or str(inspect.get("Name", "")).lstrip("/"),
        "image": config.get("Image", ""),
        "state": state.get("Status", ""),
        "health": (state.get("Health") or {}).get("Status") or "none",
        "replicas": replicas,
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
    header = ("NAME", "IMAGE", "STATE", "HEALTH", "REPLICAS", "GPUS", "UPTIME", "PORTS")
    table = [header] + [
        (r["name"], r["image"], r["state"], r["health"], format_replicas(r.get("replicas")),
         r["gpus"], _duration(r["uptime_seconds"]), ", ".join(r["ports"]) or "-")
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
        inspects = [engine.inspect_container(c["Id"]) for c in engine.containers(labels)]
    finally:
        engine.close()
    # the replicas from each running service's /readyz through its published port; a remote
    # engine publishes on its own host, so there they stay unknown
    local = not is_remote_engine(os.environ.get("DOCKER_HOST"))
    rows = []
    for inspect in inspects:
        url = readyz_url(inspect) if local and (inspect.get("State") or {}).get("Running") else None
        rows.append(status_row(inspect, now, readyz_replicas(_fetch_readyz(url)) if url else None))
    rows.sort(key=lambda r: str(r["name"]))
    print(json.dumps(rows, indent=2) if args.json else format_status(rows))
    return 0
