"""What a replica does with a batch of queued requests (:class:`service._batcher.Ticket`), in its
own thread: the one forward pass and each request's share of the outputs.

Two kinds, one per kind of predictor, under the same queue and batcher:

- :class:`TensorWork`: the requests' float rows in one :class:`Batch` buffer; the predictor's
  columns sliced back per request. A pass that runs out of device memory is retried once in
  halves.
- :class:`ObjectWork`: the requests' items in one list; one output per item. An
  :class:`InputError` for one item is found by splitting the batch (halves, recursively): only
  the bad item's request gets it, the others are answered.

Both return one part per request (its outputs, or the exception that request gets) and the
seconds the forward passes took.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from service._predictor import Batch, InputError, OutOfMemory

if TYPE_CHECKING:
    from service._batcher import Ticket

__all__ = ["ObjectWork", "OomMapper", "Part", "TensorWork", "Work", "as_outputs"]

# One request's answer from a batch: its columns (tensor), its outputs (object), or its error.
Part = Any
# torch's out-of-memory error as OutOfMemory, None for any other (service/_torch.py decides)
OomMapper = Callable[[BaseException], "OutOfMemory | None"]


def _no_oom(error: BaseException) -> OutOfMemory | None:
    return None


class Work(Protocol):
    """What the batcher needs of a kind of predictor."""

    grouped: bool  # pick requests of similar cost for a batch (else first come, first served)

    def run(self, predictor: Any, tickets: list[Ticket], rows: int) -> tuple[list[Part], float]:
        """In the replica's thread: the batch's parts, one per ticket, and the forward's
        seconds. Raises what fails the whole batch."""
        ...


class TensorWork:
    """Float rows of ``width`` values: ``predictor.predict(Batch)`` -> columns."""

    grouped = False

    def __init__(self, width: int, out_of_memory: OomMapper = _no_oom) -> None:
        self.width = width
        self._out_of_memory = out_of_memory

    def run(self, predictor: Any, tickets: list[Ticket], rows: int
            ) -> tuple[list[Part], float]:
        """One forward pass (in halves once if it runs out of device memory), then each
        ticket's slice of every column."""
        predict = predictor.predict
        values = tickets[0].values
        if len(tickets) > 1:
            values = array("f", values)
            for item in tickets[1:]:
                values += item.values
        t0 = time.perf_counter()
        try:
            columns = self._forward(predict, values, rows)
        except OutOfMemory as exc:
            if rows < 2:
                raise
            half = rows // 2
            cut = half * self.width
            try:  # retried once, in halves; a half that fails again fails the batch
                first = self._forward(predict, values[:cut], half)
                second = self._forward(predict, values[cut:], rows - half)
            except OutOfMemory as again:
                raise OutOfMemory(f"{again.message} (also in halves: the batch of {rows} rows "
                                  f"was retried as {half} + {rows - half})") from exc
            columns = [(name, column + other[1]) for (name, column), other in zip(first, second)]
        seconds = time.perf_counter() - t0
        parts, start = [], 0
        for item in tickets:
            end = start + item.rows
            parts.append({name: column[start:end] for name, column in columns})
            start = end
        return parts, seconds

    def _forward(self, predict: Callable[[Batch], Mapping[str, Sequence[Any]]],
                 values: array[float], rows: int) -> list[tuple[str, list[Any]]]:
        outputs = _mapped(predict, Batch(values, rows, self.width), self._out_of_memory)
        for name, column in outputs.items():
            if len(column) != rows:
                raise ValueError(f"predictor output {name!r} has {len(column)} items for "
                                 f"{rows} rows")
        return [(name, list(column)) for name, column in outputs.items()]


class ObjectWork:
    """Items of any kind: ``predictor.predict(items)`` -> one output per item."""

    grouped = True

    def __init__(self, out_of_memory: OomMapper = _no_oom) -> None:
        self._out_of_memory = out_of_memory

    def run(self, predictor: Any, tickets: list[Ticket], rows: int
            ) -> tuple[list[Part], float]:
        t0 = time.perf_counter()
        parts = self._answer(predictor.predict, tickets, True)
        return parts, time.perf_counter() - t0

    def _answer(self, predict: Callable[[list[Any]], Any], tickets: list[Ticket],
                may_halve: bool) -> list[Part]:
        """Each ticket's outputs; an InputError splits the tickets in halves until it is one
        ticket's own; running out of memory does, once."""
        items = tickets[0].values if len(tickets) == 1 else [
            item for ticket in tickets for item in ticket.values]
        try:
            outputs = self._forward(predict, items)
        except InputError as exc:
            if len(tickets) == 1:
                return [exc]
            half = len(tickets) // 2
            return (self._answer(predict, tickets[:half], may_halve)
                    + self._answer(predict, tickets[half:], may_halve))
        except OutOfMemory:
            if len(tickets) == 1 or not may_halve:
                raise
            half = len(tickets) // 2
            return (self._answer(predict, tickets[:half], False)
                    + self._answer(predict, tickets[half:], False))
        parts, start = [], 0
        for ticket in tickets:
            end = start + ticket.rows
            parts.append(outputs[start:end])
            start = end
        return parts

    def _forward(self, predict: Callable[[list[Any]], Any], items: list[Any]) -> list[Any]:
        return as_outputs(_mapped(predict, items, self._out_of_memory), len(items))


def _mapped(predict: Callable[[Any], Any], batch: Any, out_of_memory: OomMapper) -> Any:
    """``predict(batch)``, with torch's out-of-memory error raised as :class:`OutOfMemory`."""
    try:
        return predict(batch)
    except (InputError, OutOfMemory):
        raise
    except Exception as exc:
        mapped = out_of_memory(exc)
        if mapped is not None:
            raise mapped from exc
        raise


def as_outputs(result: Any, count: int) -> list[Any]:
    """``predict``'s result as a list of ``count`` JSON-ready outputs: a numpy array or torch
    tensor (whole, or one per item) becomes lists and numbers. TypeError for no list, ValueError
    for a wrong count."""
    if hasattr(result, "tolist"):
        result = result.tolist()
    elif isinstance(result, (list, tuple)):
        result = [v.tolist() if hasattr(v, "tolist") else v for v in result]
    if not isinstance(result, list):
        raise TypeError(f"predict() returned {type(result).__name__}: expected a list with one "
                         f"output per item ({count} items)")
    if len(result) != count:
        raise ValueError(f"predict() returned {len(result)} outputs for {count} items: one "
                         "output per item, in order")
    return result
