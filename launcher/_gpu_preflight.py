"""Checks before a GPU container starts, for the failures users report most in the NVIDIA
Container Toolkit's issues. Pure: the caller reads the engine, the image config and the host.

* the image's ``NVIDIA_REQUIRE_*`` against the probed driver (:mod:`launcher._require`): a
  ``launcher: error:`` with a hint instead of the toolkit's "unsatisfied condition";
* ``CUDA_VISIBLE_DEVICES`` in the container's environment: the toolkit gives the container the
  ``--gpus`` devices renumbered from 0, so a host index there points at the wrong GPU or none
  (devitocodes/devito#2710, NVIDIA/nvidia-container-toolkit#73);
* the engine's cgroup driver is systemd and ``/dev/char`` lacks the NVIDIA device nodes: after a
  ``systemctl daemon-reload`` the container loses its GPUs, "Failed to initialize NVML: Unknown
  Error" (NVIDIA/nvidia-docker#1730, NVIDIA/nvidia-container-toolkit#251).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from launcher._cuda import cuda_table, format_version
from launcher._errors import LauncherError
from launcher._probe import Probe
from launcher._require import (
    HostFacts,
    RequirementError,
    check_requirements,
    image_requirements,
    parse_requirement,
)

__all__ = [
    "DEV_CHAR_FIX",
    "cuda_visible_devices_warning",
    "dev_char_entries",
    "dev_char_warning",
    "host_facts",
    "image_requirement_error",
    "nvidia_device_nodes",
]

DEV_CHAR_FIX = "sudo nvidia-ctk system create-dev-char-symlinks --create-all"


def host_facts(probe: Probe) -> HostFacts:
    """What the toolkit compares an image's requirements with: the driver, the CUDA it runs,
    GPU 0's compute capability and brand."""
    cuda = probe.cuda_driver_version or (
        cuda_table().driver_cuda(probe.driver_version) if probe.driver_version else None)
    first = probe.gpus[0] if probe.gpus else None
    return HostFacts(
        driver=probe.driver_version,
        cuda=format_version(cuda) if cuda else None,
        arch=format_version(first.compute_capability) if first else None,
        brand=first.brand if first else None,
    )


def image_requirement_error(image: str, env: Sequence[str], probe: Probe) -> LauncherError | None:
    """The error ``up`` reports when the toolkit would refuse to start ``image`` (config ``Env``)
    on the probed host; None when it starts (or the image sets ``NVIDIA_DISABLE_REQUIRE``)."""
    requirements = image_requirements(env)
    if not requirements:
        return None
    try:
        why = check_requirements(requirements, host_facts(probe))
    except RequirementError as exc:
        return LauncherError(f"image {image} has a malformed requirement the NVIDIA Container "
                             f"Toolkit refuses: {exc}",
                             hint="pick another base image with --base-image, or drop it to let "
                                  "the launcher choose")
    if why is None:
        return None
    terms = parse_requirement(requirements.get("NVIDIA_REQUIRE_CUDA", ""))
    cuda = next((c.value for term in terms for c in term if c.prop == "cuda" and c.op == ">="),
                None)
    upgrade = (f"install an NVIDIA driver that runs CUDA {cuda}" if cuda
               else "install a newer NVIDIA driver")
    return LauncherError(
        f"image {image} will not start here: the NVIDIA Container Toolkit checks its {why}",
        hint=f"{upgrade}, or build for this driver: drop --base-image and --cuda to let the "
             "launcher choose")


def cuda_visible_devices_warning(container_env: Sequence[str],
                                 image_env: Sequence[str] = ()) -> str | None:
    """A warning when ``CUDA_VISIBLE_DEVICES`` reaches the container (-e, --env-file or the
    image): the container's GPUs are renumbered from 0, so host indices there mislead CUDA."""
    for source, env in (("-e/--env-file", container_env), ("the image", image_env)):
        for entry in env:
            key, _, value = entry.partition("=")
            if key == "CUDA_VISIBLE_DEVICES":
                return (f"CUDA_VISIBLE_DEVICES={value} is set in the container's environment "
                        f"(from {source}): inside, the --gpus devices are numbered from 0, so "
                        "this selects other GPUs than you meant, or none; select GPUs with "
                        "--gpus '\"device=...\"' and leave CUDA_VISIBLE_DEVICES unset")
    return None


def nvidia_device_nodes(dev: Path = Path("/dev")) -> dict[str, str]:
    """The host's NVIDIA character devices → ``MAJOR:MINOR`` (``/dev/nvidia0`` → ``195:0``)."""
    nodes: dict[str, str] = {}
    candidates = [*dev.glob("nvidia*"), *dev.glob("nvidia-caps/*")]
    for path in sorted(candidates):
        try:
            st = path.stat()
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode):
            nodes[str(path)] = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return nodes


def dev_char_entries(path: Path = Path("/dev/char")) -> list[str]:
    """The ``MAJOR:MINOR`` names in ``/dev/char`` (none where it is missing)."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def dev_char_warning(cgroup_driver: str | None, nodes: Mapping[str, str],
                     dev_char: Iterable[str]) -> str | None:
    """A warning when the engine's cgroup driver is systemd and ``/dev/char`` (its entries,
    ``195:0``) lacks some of the NVIDIA device ``nodes``: systemd then drops the container's
    device access on its next ``daemon-reload``."""
    if (cgroup_driver or "").lower() != "systemd" or not nodes:
        return None
    present = set(dev_char)
    missing = [path for path, number in nodes.items() if number not in present]
    if not missing:
        return None
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return (f"the engine uses the systemd cgroup driver and /dev/char has no link to {shown}: "
            "after a 'systemctl daemon-reload' the container loses its GPUs (\"Failed to "
            f"initialize NVML: Unknown Error\"); fix it once on this host: {DEV_CHAR_FIX}")
