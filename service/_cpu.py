"""How many CPU threads torch should use: the container's CPU quota, not the host's cores.

Pure functions take the cgroup files' contents (table-tested); :func:`cpu_threads` reads them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cpu_threads", "quota_from_cfs", "quota_from_cpu_max", "threads_for",
           "threads_per_replica"]


def quota_from_cpu_max(content: str) -> float | None:
    """cgroup v2 ``cpu.max`` ("150000 100000" -> 1.5 CPUs; "max 100000" -> None = no limit)."""
    parts = content.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def quota_from_cfs(quota_us: str, period_us: str) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` ("-1" quota = no limit)."""
    try:
        quota, period = int(quota_us.strip()), int(period_us.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def threads_for(quota: float | None, affinity: int) -> int:
    """Threads = the CPU quota rounded up, never more than the CPUs we may run on, at least 1."""
    limit = affinity if quota is None else min(affinity, math.ceil(quota))
    return max(1, limit)


def threads_per_replica(threads: int, replicas: int) -> int:
    """CPU replicas share the quota's threads instead of each taking all of them: 2 threads and
    2 replicas is 1 each (not 4 on 2 CPUs); more replicas than threads still get 1 each."""
    return max(1, threads // max(1, replicas))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def cpu_threads(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The thread count for this process: cgroup v2, else v1 quota, capped by the affinity mask."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = None
    cpu_max = _read(cgroup_root / "cpu.max")
    if cpu_max is not None:
        quota = quota_from_cpu_max(cpu_max)
    else:
        for v1 in (cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"):
            quota_us, period_us = _read(v1 / "cpu.cfs_quota_us"), _read(v1 / "cpu.cfs_period_us")
            if quota_us is not None and period_us is not None:
                quota = quota_from_cfs(quota_us, period_us)
                break
    return threads_for(quota, affinity or 1)
