"""The service's core under its protocol front-ends (``/predict``, ``/v2``, ``/v1``): the model
replicas, admission, the one queue and its batcher, and what a failed request is answered.

A front-end turns a request into work and awaits it:

- tensor rows: :meth:`Core.infer` (float32 rows of the model's width);
- an object predictor's items: :meth:`Core.infer_items` (any items; one output each).

Both go through the same :class:`service._batcher.Batcher`; the predictor's kind decides its
:class:`service._work.Work`. :meth:`Core.failure` maps what a request got instead of outputs
to a status, a message and ``Retry-After``, once for every front-end.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from starlette.types import Receive

from service._admission import Admission, DeadlineExceeded, Disconnected, QueueFull
from service._batcher import Batcher, InferenceFailed, NoReplica, Ticket
from service._cpu import cpu_threads
from service._device import NO_CUDA, plan_replicas
from service._inputs import BadRequest
from service._metrics import ServiceMetrics
from service._predictor import (
    AnyPredictor,
    HasCost,
    HasDecode,
    HasEncode,
    HasOutputDatatypes,
    InputError,
    OutOfMemory,
    PredictorError,
    is_object_predictor,
    predictor_info,
)
from service._replicas import ReplicaPool, Runtime, load_runtime
from service._settings import Settings
from service._tensors import TensorError
from service._v2 import ModelSpec, default_model_name, describe_model
from service._v2_objects import describe_objects
from service._work import ObjectWork, TensorWork

__all__ = ["Core", "OnDisconnect", "PredictorSource"]

log = logging.getLogger("service")
# A predictor instance (it serves one replica), or a class / function that makes one per replica.
PredictorSource = AnyPredictor | Callable[[], AnyPredictor]
# The server's hook for a client that goes away (service._http's DISCONNECT_HOOK): it is given
# what to call then.
OnDisconnect = Callable[[Callable[[], None]], None]


class Core:
    def __init__(self, predictor: PredictorSource, settings: Settings, metrics: ServiceMetrics,
                 runtime: Runtime | None) -> None:
        self.make_predictor, self.one_instance = _factory(predictor)
        self.settings = settings
        self.metrics = metrics
        self.runtime = runtime
        self.replicas: ReplicaPool | None = None  # planned once torch has said what it sees
        self.batcher: Batcher | None = None  # made when the first replica is ready
        self.predictor: AnyPredictor | None = None  # the first replica's: its hooks
        self.objects = False  # an object predictor (known once a replica is ready)
        # its optional hooks, looked up once (a Protocol's isinstance is slow per request)
        self.decode: Callable[[Any], Any] | None = None
        self.encode: Callable[[Any], Any] | None = None
        self._cost: Callable[[Any], int] | None = None
        self.model_name = default_model_name(settings.model_name, settings.predictor,
                                             settings.model_path)
        self.model: ModelSpec | None = None  # the /v2 metadata, from a warm-up's outputs
        self.timeout = settings.request_timeout_seconds or None  # the default deadline

    def describe(self, predictor: AnyPredictor, width: int | None, outputs: Any) -> None:
        """In a replica's thread, after its warm-up: the model's /v2 metadata (the first one)."""
        info = predictor_info(predictor)
        if width is None:
            model = describe_objects(self.model_name, info, outputs)
        else:
            datatypes = (predictor.output_datatypes
                         if isinstance(predictor, HasOutputDatatypes) else None)
            try:
                model = describe_model(self.model_name, info, width, outputs, datatypes)
            except TensorError as exc:
                raise PredictorError(f"output_datatypes: {exc.message}",
                                     "map each output name to a datatype, e.g. 'FP32'") from None
        if self.model is None:
            self.model = model

    @property
    def reason(self) -> str:
        return self.replicas.reason() if self.replicas is not None else ""

    @property
    def status(self) -> str:
        """starting, ready or failed: for /readyz and every front-end. Ready once a replica is,
        and then the batcher is made (in the same ``_changed()`` call)."""
        return "starting" if self.replicas is None else self.replicas.status

    # -- work --------------------------------------------------------------------------------

    def infer(self, values: Any, rows: int, timeout: float | None,
              receive: Receive | None = None, on_disconnect: OnDisconnect | None = None
              ) -> Awaitable[dict[str, list[Any]]]:
        """Tensor rows (float32, the model's width) into the queue: their columns."""
        assert self.batcher is not None  # the ticket's future: no coroutine around it
        return self._watched([self.batcher.enqueue(values, rows, timeout)], receive,
                             on_disconnect)[0].future

    def cost(self, item: Any) -> int:
        """What an item weighs in a batch: the predictor's ``cost(item)`` (default 1); a
        predictor's mistake there is the request's 500 (its InputError: the client's 400)."""
        if self._cost is None:
            return 1
        value = self._cost(item)
        if type(value) is not int or value < 0:
            raise TypeError(f"cost(item) returned {value!r}: expected a whole number >= 0")
        return value

    async def infer_items(self, items: list[Any], costs: Sequence[int] | None,
                          timeout: float | None, receive: Receive | None = None,
                          on_disconnect: OnDisconnect | None = None) -> list[Any]:
        """An object predictor's items (``costs``: each one's, from :meth:`cost`; None:
        computed here) into the queue: their outputs, in order. Raises :class:`BadRequest`
        (413) for an item heavier than a batch may be, else what :meth:`failure` answers.

        Items go to the queue as parts that each fit a batch (``MAX_BATCH_ROWS`` items,
        ``MAX_BATCH_COST``), of similar cost where a request has many."""
        batcher = self.batcher
        assert batcher is not None
        if costs is None:
            costs = [self.cost(item) for item in items]
        s = self.settings
        heaviest = max(costs)
        if heaviest > s.max_batch_cost:
            at = list(costs).index(heaviest)
            raise BadRequest(413, f"item {at} costs {heaviest}, over the limit of "
                                  f"{s.max_batch_cost} per batch (MAX_BATCH_COST): send a "
                                  "smaller item")
        total = sum(costs)
        if len(items) <= s.max_batch_rows and total <= s.max_batch_cost:  # one part, in order
            parts = [(items, list(range(len(items))), total, heaviest)]
        else:
            parts = _parts(costs, s.max_batch_rows, s.max_batch_cost, items)
        tickets: list[Ticket] = []
        try:
            for part_items, _, cost, key in parts:
                tickets.append(batcher.enqueue(part_items, len(part_items), timeout, cost, key))
        except QueueFull:
            for ticket in tickets:
                batcher.withdraw(ticket)
            raise
        self._watched(tickets, receive, on_disconnect)
        if len(tickets) == 1:
            result: list[Any] = await tickets[0].future
            return result
        answers = await asyncio.gather(*(t.future for t in tickets), return_exceptions=True)
        outputs: list[Any] = [None] * len(items)
        for (_, where, _, _), answer in zip(parts, answers):
            if isinstance(answer, BaseException):
                raise answer
            for i, output in zip(where, answer):
                outputs[i] = output
        return outputs

    def _watched(self, tickets: list[Ticket], receive: Receive | None,
                 on_disconnect: OnDisconnect | None) -> list[Ticket]:
        """A client that disconnects takes its tickets out of the queue: told by the server's
        ``on_disconnect`` hook where it has one (ours), else by ``receive`` (after the body,
        its next message is the disconnect)."""
        batcher = self.batcher
        assert batcher is not None
        if on_disconnect is not None:
            for ticket in tickets:
                on_disconnect(partial(batcher.withdraw, ticket))
        elif receive is not None:
            watcher = asyncio.ensure_future(_watch(receive, batcher, tickets))
            tickets[-1].future.add_done_callback(lambda _: watcher.cancel())
        return tickets

    def failure(self, error: Exception) -> tuple[int, str, int | None]:
        """The answer to a request that did not get its outputs, for every front-end: status,
        message and Retry-After seconds (or None). Counts a request the queue refused or
        dropped (predictor_rejected_requests_total) and logs the model's failures (a failed
        forward pass was logged once, for its whole batch)."""
        if isinstance(error, (QueueFull, DeadlineExceeded, Disconnected, OutOfMemory)):
            self.metrics.reject(error.reason)
        if isinstance(error, QueueFull):
            return 503, error.message, error.retry_after
        if isinstance(error, (DeadlineExceeded, Disconnected)):  # 504, or 499 (nobody reads it)
            return error.status, error.message, None
        if isinstance(error, (InputError, BadRequest)):  # the client's item, or its request
            return getattr(error, "status", 400), error.message, None
        if isinstance(error, InferenceFailed):
            return 500, error.message, None
        if isinstance(error, OutOfMemory):
            log.error("inference failed: %s", error.message)
            return 503, f"inference failed: {error.message}; {error.hint}", None
        if isinstance(error, NoReplica):  # the device failed, not the request: try again later
            return 503, f"model is not ready: {error.message}", None
        log.exception("inference failed", exc_info=error)  # the encode or cost hook's
        return 500, f"inference failed: {type(error).__name__}: {error}", None

    # -- replicas ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Plan the replicas from DEVICE and what torch sees, then set them all up."""
        loop = asyncio.get_running_loop()
        s = self.settings
        runtime = self.runtime
        if runtime is None:  # imports torch: off the event loop
            runtime = await loop.run_in_executor(None, load_runtime)
        facts = NO_CUDA if set(s.devices) == {"cpu"} else await loop.run_in_executor(
            None, runtime.cuda_facts)
        per_device = 1 if s.replicas_per_device is None and self.one_instance else (
            s.replicas_per_device)  # auto, but one instance serves one replica
        threads = cpu_threads()
        slots, fallbacks = plan_replicas(s.devices, per_device, facts, threads)
        for reason in dict.fromkeys(fallbacks):
            log.warning("DEVICE=auto: running on the CPU because %s", reason)
        cpu = sum(1 for slot in slots if slot.device == "cpu" and slot.error is None)
        if per_device is None and cpu > 1:
            log.info("REPLICAS_PER_DEVICE=auto: %d CPU replicas for %d CPU thread(s), each "
                     "holding the model (REPLICAS_PER_DEVICE=1: one with every thread)",
                     cpu, threads)
        self.replicas = ReplicaPool(slots, self.make_predictor, runtime, threads,
                                    s.input_width, s.max_batch_rows, self._changed,
                                    on_warmup=self.describe)
        self._changed()
        await self.replicas.start()

    def _changed(self) -> None:
        """A replica changed state: metrics, the batcher once one is ready, and its wake-up."""
        replicas = self.replicas
        assert replicas is not None
        self.metrics.set_replicas(replicas.counts())
        if self.batcher is None and replicas.first is not None:
            self._make_batcher(replicas, replicas.first)
        devices = replicas.ready_devices()
        if devices:
            info = dict(replicas.info)
            if "device" in info:  # every device a replica is ready on, not only the first's
                info["device"] = ",".join(devices)
            self.metrics.set_model_info(**info)
        if self.batcher is not None:
            self.batcher.wake()

    def _make_batcher(self, replicas: ReplicaPool, first: AnyPredictor) -> None:
        s = self.settings
        self.predictor = first
        self.objects = is_object_predictor(first)
        self.decode = first.decode if isinstance(first, HasDecode) else None
        self.encode = first.encode if isinstance(first, HasEncode) else None
        if self.objects:
            self._cost = first.cost if isinstance(first, HasCost) else None
            admission = Admission(s.max_queue_rows, s.max_queue_seconds, s.max_batch_rows,
                                  s.max_batch_cost)
            self.batcher = Batcher(replicas, ObjectWork(_torch_oom), s.max_batch_rows,
                                   s.max_wait_ms / 1000, self.metrics.observe_batch, admission,
                                   s.max_batch_cost)
            what = "object predictor"
        else:
            assert replicas.width is not None
            admission = Admission(s.max_queue_rows, s.max_queue_seconds, s.max_batch_rows)
            self.batcher = Batcher(replicas, TensorWork(replicas.width, _torch_oom),
                                   s.max_batch_rows, s.max_wait_ms / 1000,
                                   self.metrics.observe_batch, admission)
            what = f"input width {replicas.width}"
        batcher = self.batcher
        self.metrics.watch_queue(lambda: batcher.queued_rows)
        log.info("ready: %s, %s", replicas.info or "predictor", what)

    def health(self) -> dict[str, Any]:
        """``/readyz`` and ``/healthz``: the service's status, and each replica's."""
        replicas = self.replicas
        body: dict[str, Any] = {"status": self.status,
                                "replicas": [] if replicas is None else replicas.health()}
        if replicas is not None and body["status"] == "failed":
            body["reason"] = replicas.reason()
        return body

    def shutdown(self) -> None:
        if self.replicas is not None:
            self.replicas.shutdown()


def _parts(costs: Sequence[int], max_rows: int, max_cost: int, items: list[Any]
           ) -> list[tuple[list[Any], list[int], int, int]]:
    """A request's items in parts that each fit a batch, cheapest first (so each part holds
    items of similar cost): (items, their places in the request, cost, costliest)."""
    order = sorted(range(len(costs)), key=costs.__getitem__)
    parts: list[tuple[list[Any], list[int], int, int]] = []
    where: list[int] = []
    total = 0
    for i in order:
        if where and (len(where) >= max_rows or total + costs[i] > max_cost):
            parts.append(([items[j] for j in where], where, total, costs[where[-1]]))
            where, total = [], 0
        where.append(i)
        total += costs[i]
    parts.append(([items[j] for j in where], where, total, costs[where[-1]]))
    return parts


async def _watch(receive: Receive, batcher: Batcher, tickets: list[Ticket]) -> None:
    """Once the body is read, the next message is ``http.disconnect``: the client left."""
    if (await receive())["type"] == "http.disconnect":
        for ticket in tickets:
            batcher.withdraw(ticket)


def _torch_oom(error: BaseException) -> OutOfMemory | None:
    """torch's out-of-memory error as :class:`OutOfMemory` (torch is asked only when a
    predictor has loaded it: no other module raises torch's errors)."""
    if "torch" not in sys.modules:
        return None
    from service._torch import out_of_memory

    return out_of_memory(error)


def _factory(source: PredictorSource) -> tuple[Callable[[], AnyPredictor], bool]:
    """One new predictor per replica: a class or function is called; an instance serves one
    (True: it is an instance)."""
    if isinstance(source, type) or not callable(getattr(source, "predict", None)):
        return source, False  # type: ignore[return-value]
    instance: list[AnyPredictor] = [source]  # type: ignore[list-item]

    def only_one() -> AnyPredictor:
        if not instance:
            raise PredictorError("this service was given one predictor instance, which serves "
                                 "one replica", "pass create_app a class or a function that "
                                 "makes a new predictor, one per replica")
        return instance.pop()

    return only_one, True
