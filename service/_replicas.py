"""The model replicas: one predictor instance per slot of ``DEVICE`` x ``REPLICAS_PER_DEVICE``,
each set up and run in its own worker thread, with its state (starting -> ready, or failed).

The batcher asks the pool for an idle replica for each batch (:meth:`ReplicaPool.take`) and
gives it back after (:meth:`ReplicaPool.release`); a device error fails the replica
(:meth:`ReplicaPool.device_failed`) and the batcher retries the batch elsewhere. CPU replicas
share the CPU quota's threads: each gets ``quota // CPU replicas`` (at least 1), set in its own
worker thread, since torch's intra-op count is per calling thread. The replicas' setups run one
at a time (their warm-ups and batches side by side): model loaders are not thread-safe (two
``torch.jit.load`` at once failed one replica with CPython 3.11's "AST constructor recursion depth
mismatch"; transformers' ``from_pretrained`` left a layer on the meta device).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, cast

from service._cpu import threads_per_replica
from service._device import NO_CUDA, CudaFacts, DeviceFailure, ReplicaSlot
from service._errors import ServiceError
from service._predictor import (
    AnyPredictor,
    Batch,
    HasExample,
    Predictor,
    PredictorError,
    is_object_predictor,
    predictor_info,
)
from service._work import as_outputs

__all__ = ["REPLICA_STATES", "CpuOnlyRuntime", "Replica", "ReplicaPool", "Runtime", "WarmupHook",
           "load_runtime", "reason_of"]

log = logging.getLogger("service")
REPLICA_STATES = ("starting", "ready", "failed")
# Called in a replica's thread after its warm-up: (predictor, width, the warm-up's outputs): a
# tensor predictor's width and columns; an object predictor's None and outputs (a list, empty
# without an ``example`` to warm up with).
WarmupHook = Callable[[AnyPredictor, "int | None", Any], None]


class Runtime(Protocol):
    """What the pool needs from the tensor library (``service._torch.TorchRuntime``)."""

    def cuda_facts(self) -> CudaFacts: ...

    def use_cpu_threads(self, threads: int) -> None: ...

    def device_error_reason(self, exc: BaseException) -> str | None: ...


class CpuOnlyRuntime:
    """Where torch is not installed (a Python predictor on another library): no CUDA, no thread
    control, only :class:`DeviceFailure` marks a device error."""

    def cuda_facts(self) -> CudaFacts:
        return NO_CUDA

    def use_cpu_threads(self, threads: int) -> None:
        pass

    def device_error_reason(self, exc: BaseException) -> str | None:
        return None


def load_runtime() -> Runtime:
    """torch's runtime, else :class:`CpuOnlyRuntime` (imports torch: call it off the event loop)."""
    try:
        from service._torch import TorchRuntime
    except ImportError:
        return CpuOnlyRuntime()
    return TorchRuntime()


def reason_of(exc: BaseException) -> str:
    """An error as one line for /readyz and the log: the message, then the hint if it has one."""
    hint = exc.hint if isinstance(exc, ServiceError) else ""
    return str(exc) + (f" (hint: {hint})" if hint else "")


@dataclass(eq=False)
class Replica:
    index: int
    device: str  # "cpu" / "cuda:N" (or the unusable DEVICE entry of a failed slot)
    executor: ThreadPoolExecutor
    threads: int  # intra-op CPU threads (its share of the CPU quota; a CUDA replica's too)
    state: str = "starting"
    reason: str | None = None
    predictor: AnyPredictor | None = None
    busy: bool = False
    idle_since: float = 0.0

    def health(self) -> dict[str, Any]:
        return {"replica": self.index, "device": self.device, "state": self.state,
                "reason": self.reason}


class ReplicaPool:
    """The replicas of one service. ``on_change`` runs on the event loop after every state change
    (the service updates its metrics and wakes the batcher)."""

    def __init__(self, slots: Sequence[ReplicaSlot], make_predictor: Callable[[], AnyPredictor],
                 runtime: Runtime, cpu_threads: int, input_width: int | None,
                 warmup_rows: int, on_change: Callable[[], None],
                 on_warmup: WarmupHook | None = None) -> None:
        cpu_replicas = sum(1 for s in slots if s.error is None and s.device == "cpu")
        share = threads_per_replica(cpu_threads, cpu_replicas or len(slots))
        self.replicas = [Replica(i, slot.device, ThreadPoolExecutor(
                                     1, thread_name_prefix=f"inference-{i}"), share)
                         for i, slot in enumerate(slots)]
        for replica, slot in zip(self.replicas, slots):
            if slot.error is not None:
                replica.state, replica.reason = "failed", reason_of(slot.error)
        self.ready = 0  # replicas in state ready
        self.width: int | None = None  # settled by the first replica to get ready (tensors)
        self.first: AnyPredictor | None = None  # the first replica's predictor to get ready
        self.info: Mapping[str, str] = {}  # its info
        self._make = make_predictor
        self._runtime = runtime
        self._input_width = input_width
        self._warmup_rows = warmup_rows
        self._on_change = on_change
        self._on_warmup = on_warmup
        self._setup_lock = threading.Lock()  # one setup at a time (the module's docstring)

    # -- starting ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Set every replica up, each in its own thread, concurrently; returns when all settled."""
        for replica in self.replicas:
            if replica.state == "failed":
                log.error("replica %d (%s) failed: %s", replica.index, replica.device,
                          replica.reason)
        await asyncio.gather(*(self._start(r) for r in self.replicas if r.state == "starting"))

    async def _start(self, replica: Replica) -> None:
        loop = asyncio.get_running_loop()
        try:
            predictor, width = await loop.run_in_executor(replica.executor, self._load, replica)
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and the log
            self._fail(replica, reason_of(exc))
            return
        if replica.state == "failed":  # its device failed on a sibling meanwhile
            return
        if self.first is not None and width != self.width:
            self._fail(replica, f"its input width is {width}, the other replicas' is {self.width}")
            return
        self.width = width
        if self.first is None:
            self.first = predictor
            self.info = predictor_info(predictor)
        replica.predictor, replica.state, replica.idle_since = predictor, "ready", time.monotonic()
        self.ready += 1
        log.info("replica %d ready on %s%s, %s", replica.index, replica.device,
                 f" ({replica.threads} CPU thread(s))" if replica.device == "cpu" else "",
                 "object predictor" if width is None else f"input width {width}")
        self._on_change()

    def _load(self, replica: Replica) -> tuple[AnyPredictor, int | None]:
        """In the replica's thread: its CPU threads, a new predictor, setup, width, warm-up
        (an object predictor: its ``example``, if it has one; width None)."""
        self._runtime.use_cpu_threads(replica.threads)  # before setup: its own torch work too
        with self._setup_lock:
            predictor = self._make()
            predictor.setup(replica.device)
        if is_object_predictor(predictor):
            self._warm_up_objects(predictor)
            return predictor, None
        tensor = cast(Predictor, predictor)
        declared, found = self._input_width, tensor.input_width
        if declared and found and declared != found:
            raise PredictorError(f"INPUT_WIDTH={declared} but the model takes {found} values",
                                 "unset INPUT_WIDTH or fix it")
        width = declared or found
        if not width:
            raise PredictorError("the model's input width is unknown",
                                 "set INPUT_WIDTH to the number of values per row")
        for rows in sorted({1, self._warmup_rows}):
            outputs = tensor.predict(Batch(array("f", bytes(4 * rows * width)), rows, width))
            bad = [k for k, v in outputs.items() if len(v) != rows]
            if bad:
                raise PredictorError(f"warm-up: output {bad[0]!r} is not one item per row",
                                     "predict() must return columns with one item per row")
        if self._on_warmup is not None:  # its error fails the replica, with its reason
            self._on_warmup(predictor, width, outputs)
        return predictor, width

    def _warm_up_objects(self, predictor: Any) -> None:
        """An object predictor's warm-up: its ``example`` decoded and predicted (INPUT_WIDTH
        does not apply to it)."""
        if self._input_width:
            raise PredictorError(f"INPUT_WIDTH={self._input_width} but the predictor has no "
                                 "input_width: it is an object predictor (decode -> items)",
                                 "unset INPUT_WIDTH, or give the predictor an input_width")
        outputs: list[Any] = []
        if isinstance(predictor, HasExample):
            items = predictor.decode(predictor.example)  # type: ignore[attr-defined]
            if not isinstance(items, list) or not items:
                raise PredictorError("warm-up: decode(example) did not return a non-empty list "
                                     "of items", "decode(payload) must return a list of items")
            outputs = as_outputs(predictor.predict(items),  # type: ignore[attr-defined]
                                 len(items))
        if self._on_warmup is not None:
            self._on_warmup(predictor, None, outputs)

    # -- dispatch (on the event loop) --------------------------------------------------------

    def take(self) -> Replica | None:
        """An idle ready replica, marked busy: on the device with the fewest busy replicas, then
        the one idle longest (work spreads over devices first, then over replicas)."""
        best: Replica | None = None
        best_key = (0, 0.0)
        for replica in self.replicas:
            if replica.state != "ready" or replica.busy:
                continue
            key = (self._busy_on(replica.device), replica.idle_since)
            if best is None or key < best_key:
                best, best_key = replica, key
        if best is not None:
            best.busy = True
        return best

    def _busy_on(self, device: str) -> int:
        return sum(1 for r in self.replicas if r.busy and r.device == device)

    def release(self, replica: Replica) -> None:
        replica.busy = False
        replica.idle_since = time.monotonic()

    def device_failed(self, replica: Replica, exc: BaseException) -> str | None:
        """If ``exc`` means the replica's device failed: fail it and return the reason.

        On a GPU, every replica on that device goes with it: a CUDA error of this kind is sticky
        for the process's context on the device, so their next batch would fail the same way.
        """
        reason = exc.message if isinstance(exc, DeviceFailure) else (
            self._runtime.device_error_reason(exc))
        if reason is None:
            return None
        self._fail(replica, f"device error: {reason}")
        if replica.device.startswith("cuda"):
            for other in self.replicas:
                if other.device == replica.device and other.state != "failed":
                    self._fail(other, f"device error on replica {replica.index} "
                                      f"({replica.device}): {reason}")
        return reason

    def _fail(self, replica: Replica, reason: str) -> None:
        self.ready -= replica.state == "ready"
        replica.state, replica.reason, replica.predictor = "failed", reason, None
        log.error("replica %d (%s) failed: %s", replica.index, replica.device, reason)
        self._on_change()

    # -- state -------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """ready: at least one replica is; starting: none yet but one may still get there."""
        if self.ready:  # the count of replicas in state ready
            return "ready"
        return "starting" if any(r.state == "starting" for r in self.replicas) else "failed"

    def counts(self) -> dict[str, int]:
        return {state: sum(1 for r in self.replicas if r.state == state) for state in REPLICA_STATES}

    def reason(self) -> str:
        """Why the service is failed: each distinct reason once, in replica order."""
        return "; ".join(dict.fromkeys(r.reason for r in self.replicas if r.reason))

    def ready_devices(self) -> list[str]:
        """The devices with a ready replica, each once, in replica order."""
        return list(dict.fromkeys(r.device for r in self.replicas if r.state == "ready"))

    def health(self) -> list[dict[str, Any]]:
        return [r.health() for r in self.replicas]

    def shutdown(self) -> None:
        for replica in self.replicas:
            replica.executor.shutdown(wait=True)
