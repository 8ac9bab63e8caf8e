from __future__ import annotations

from pathlib import Path

import pytest

from service._cpu import (
    cpu_threads,
    quota_from_cfs,
    quota_from_cpu_max,
    threads_for,
    threads_per_replica,
)


@pytest.mark.parametrize("content, expected", [
    ("max 100000\n", None),
    ("150000 100000\n", 1.5),
    ("100000 100000", 1.0),
    ("50000 100000", 0.5),
    ("200000", 2.0),
    ("", None),
    ("garbage 100000", None),
    ("0 100000", None),
], ids=["unlimited", "one-and-half", "one", "half", "no-period", "empty", "garbage", "zero"])
def test_quota_from_cpu_max(content: str, expected: float | None) -> None:
    assert quota_from_cpu_max(content) == expected


@pytest.mark.parametrize("quota, period, expected", [
    ("-1\n", "100000\n", None),
    ("200000\n", "100000\n", 2.0),
    ("25000", "100000", 0.25),
    ("x", "100000", None),
    ("100000", "0", None),
], ids=["unlimited", "two", "quarter", "garbage", "zero-period"])
def test_quota_from_cfs(quota: str, period: str, expected: float | None) -> None:
    assert quota_from_cfs(quota, period) == expected


@pytest.mark.parametrize("quota, affinity, expected", [
    (None, 8, 8),
    (1.5, 8, 2),
    (0.25, 8, 1),
    (4.0, 2, 2),
    (None, 0, 1),
], ids=["no-quota-uses-affinity", "rounds-up", "at-least-one", "capped-by-affinity", "never-zero"])
def test_threads_for(quota: float | None, affinity: int, expected: int) -> None:
    assert threads_for(quota, affinity) == expected


@pytest.mark.parametrize("threads, replicas, expected", [
    (2, 1, 2), (2, 2, 1), (8, 3, 2), (2, 3, 1), (1, 4, 1), (4, 0, 4),
], ids=["one-takes-all", "two-share-two", "rounds-down", "more-replicas-than-threads",
        "one-thread", "no-cpu-replica"])
def test_threads_per_replica(threads: int, replicas: int, expected: int) -> None:
    assert threads_per_replica(threads, replicas) == expected


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "100000 100000"}, 1),
    ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, None),
    ({}, None),
], ids=["v2", "v1", "v1-unlimited", "no-cgroup"])
def test_cpu_threads_reads_the_cgroup(tmp_path: Path, files: dict[str, str],
                                      expected: int | None) -> None:
    import os

    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    affinity = len(os.sched_getaffinity(0))
    assert cpu_threads(tmp_path) == (affinity if expected is None else min(expected, affinity))
