"""``launcher push``, pure: the destination reference, and the engine's push events read as one
line per layer (when the layer is done) and the digest the registry gave the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from launcher._build import parse_image_ref

__all__ = ["PushProgress", "split_reference"]

# Events that end a layer's push (docker/docker distribution/push_v2.go's progress strings).
_DONE = ("Pushed", "Layer already exists", "Mounted from")


def split_reference(value: str) -> tuple[str, str]:
    """``[REGISTRY/]REPO[:TAG]`` → (repository, tag), the tag ``latest`` when none is given, as
    ``docker tag`` and ``docker push`` read it. ValueError (Docker's words) when malformed."""
    parse_image_ref(value)
    repo, colon, tag = value.rpartition(":")
    if not colon or "/" in tag:
        return value, "latest"
    return repo, tag


def _size(n: int) -> str:
    """Bytes as the Docker CLI's progress shows them (decimal units)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


@dataclass
class PushProgress:
    """Feed it the engine's events; it answers the lines to show (one per finished layer)."""

    sizes: dict[str, int] = field(default_factory=dict)
    done: dict[str, str] = field(default_factory=dict)
    digest: str | None = None

    def feed(self, event: Mapping[str, Any]) -> list[str]:
        aux = event.get("aux")
        if isinstance(aux, Mapping) and aux.get("Digest"):
            self.digest = str(aux["Digest"])
            return []
        layer, status = event.get("id"), str(event.get("status") or "")
        if not layer:
            return []
        detail = event.get("progressDetail") or {}
        if status == "Pushing" and isinstance(detail.get("total"), int):
            self.sizes[str(layer)] = int(detail["total"])
        if not status.startswith(_DONE) or layer in self.done:
            return []
        self.done[str(layer)] = status
        size = self.sizes.get(str(layer))
        return [f"layer {layer}: {status.lower()}" + (f" ({_size(size)})" if size else "")]
