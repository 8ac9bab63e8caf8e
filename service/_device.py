"""Which torch devices to run on, decided from facts torch reports (pure; table-tested)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service._errors import MessageError, ServiceError

__all__ = ["AUTO_CPU_REPLICAS", "NO_CUDA", "CudaFacts", "DeviceChoice", "DeviceError", "DeviceFailure", "ReplicaSlot",
           "choose_device", "devices_for", "plan_replicas"]


class DeviceError(ServiceError):
    """The requested device cannot be used."""


class DeviceFailure(MessageError):
    """A replica's device stopped working (a CUDA error, a lost GPU): the replica is failed and
    its batch retried on another. torch's errors are mapped to it in ``service/_torch.py``; a
    predictor on another runtime may raise it itself."""


@dataclass(frozen=True)
class CudaFacts:
    """What torch says about CUDA in this process."""

    built: bool  # torch.version.cuda is not None
    available: bool  # torch.cuda.is_available()
    count: int  # torch.cuda.device_count()


NO_CUDA = CudaFacts(False, False, 0)
# REPLICAS_PER_DEVICE=auto on the CPU: one single-threaded replica per CPU of the quota, at most
# this many (benchmarks/README.md#replicas: on 2 CPUs, 2 replicas x 1 thread served 1.6-3.8x the
# requests of 1 x 2 threads). Beyond it the one event loop and the GIL are the limit, and the
# weights are held once per replica.
AUTO_CPU_REPLICAS = 8


@dataclass(frozen=True)
class ReplicaSlot:
    """One replica to start: its resolved device, or the DEVICE entry and why it cannot be used."""

    device: str  # "cpu" / "cuda:N"; the entry as given ("cuda", "cuda:3") when ``error`` is set
    error: DeviceError | None = None


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cpu" or "cuda:N"
    fallback_reason: str | None = None  # why auto chose the CPU (logged once at start)


def choose_device(requested: str, cuda_built: bool, cuda_available: bool,
                  device_count: int) -> DeviceChoice:
    """``requested`` is auto|cpu|cuda|cuda:N (already parsed); the rest is what torch says."""
    if requested == "cpu":
        return DeviceChoice("cpu")
    if not cuda_built:
        why = "this torch build has no CUDA support (a CPU wheel)"
    elif not cuda_available or device_count == 0:
        why = "no CUDA device is visible (no GPU, no driver, or the container got no --gpus)"
    else:
        why = ""
    if requested == "auto":
        return DeviceChoice("cuda:0") if not why else DeviceChoice("cpu", why)
    if why:
        raise DeviceError(f"DEVICE={requested} but CUDA cannot be used: {why}",
                          "set DEVICE=auto to fall back to the CPU, or give the container a GPU")
    index = int(requested.partition(":")[2] or 0)
    if index >= device_count:
        raise DeviceError(
            f"DEVICE={requested} but only {device_count} CUDA device(s) are visible "
            f"(cuda:0..cuda:{device_count - 1})",
            "pick an index below the device count, or set DEVICE=cuda for the first GPU")
    return DeviceChoice(f"cuda:{index}")


def devices_for(entry: str, facts: CudaFacts) -> list[DeviceChoice]:
    """The devices one ``DEVICE`` entry means here: ``auto`` and ``cuda`` are every visible GPU
    (``auto`` falls back to the CPU, ``cuda`` raises :class:`DeviceError`); ``cpu`` / ``cuda:N``
    are themselves."""
    choice = choose_device(entry, facts.built, facts.available, facts.count)
    if entry in ("auto", "cuda") and choice.device != "cpu":
        return [DeviceChoice(f"cuda:{i}") for i in range(facts.count)]
    return [choice]


def plan_replicas(entries: Sequence[str], per_device: int | None, facts: CudaFacts,
                  cpu_threads: int = 1) -> tuple[list[ReplicaSlot], list[str]]:
    """The replicas of ``DEVICE`` x ``REPLICAS_PER_DEVICE``, and the CPU-fallback reasons to log.

    ``per_device`` None is auto: one replica per GPU; on the CPU one per CPU of the quota
    (``cpu_threads``, at most :data:`AUTO_CPU_REPLICAS`), shared between the CPU entries.
    Ordered round by round (each device's first replica, then each one's second, ...), so the
    first replicas to come up and to take work are spread over the devices. An entry that cannot
    be used here becomes failed slots with the reason, so the others still serve.
    """
    devices: list[ReplicaSlot] = []
    fallbacks: list[str] = []
    for entry in entries:
        try:
            choices = devices_for(entry, facts)
        except DeviceError as exc:
            devices.append(ReplicaSlot(entry, exc))
            continue
        devices += [ReplicaSlot(c.device) for c in choices]
        fallbacks += [c.fallback_reason for c in choices if c.fallback_reason]
    cpus = sum(1 for slot in devices if slot.device == "cpu" and slot.error is None)
    cpu_share = max(1, min(AUTO_CPU_REPLICAS, cpu_threads) // max(1, cpus))
    counts = [per_device if per_device is not None else
              cpu_share if slot.device == "cpu" and slot.error is None else 1
              for slot in devices]
    return [slot for k in range(max(counts, default=0))
            for slot, count in zip(devices, counts) if k < count], fallbacks
