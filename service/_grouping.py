"""Which queued requests of an object predictor make the next batch: token-budget batching, as
Text Embeddings Inference does, with grouping by cost so a batch is not padded to a far longer
item, and no starvation.

Pure: :func:`take_grouped` takes the live queue in arrival order and returns the batch and what
stays queued. The oldest request always goes (so none is overtaken for longer than one batch);
then the others by how near their ``key`` (their costliest item) is to the oldest one's, the
older first among equals, while the batch stays within ``limit`` rows and ``max_cost``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

__all__ = ["Queued", "take_grouped"]


class Queued(Protocol):
    rows: int
    cost: int
    key: int
    enqueued: float


Q = TypeVar("Q", bound=Queued)


def take_grouped(live: Sequence[Q], limit: int, max_cost: float) -> tuple[list[Q], list[Q]]:
    """(the batch in arrival order, the rest in arrival order) from ``live`` (arrival order)."""
    if not live:
        return [], []
    oldest = live[0]
    chosen = [0]
    rows, cost = oldest.rows, oldest.cost
    if len(live) > 1 and rows < limit:
        # sorted() is stable: among equally near keys, the older request comes first
        for i in sorted(range(1, len(live)), key=lambda i: abs(live[i].key - oldest.key)):
            item = live[i]
            if rows + item.rows <= limit and cost + item.cost <= max_cost:
                chosen.append(i)
                rows += item.rows
                cost += item.cost
                if rows >= limit:
                    break
    picked = set(chosen)
    return ([live[i] for i in sorted(chosen)],
            [item for i, item in enumerate(live) if i not in picked])
