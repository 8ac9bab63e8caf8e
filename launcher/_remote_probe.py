"""The GPUs a plan is made from: this host's NVML for a local engine, or, when ``DOCKER_HOST``
names another machine, ``launcher probe --json`` in a short-lived container on that engine.
"""

from __future__ import annotations

import io
import sys
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from launcher._build import ROOT, image_tag
from launcher._engine import EngineAPI, connect, is_remote_engine
from launcher._engine_errors import GpuRuntimeMissing, NotFound
from launcher._errors import LauncherError
from launcher._options import PlanOptions
from launcher._plan import LABEL_MANAGED, build_inputs, image_labels, service_tag
from launcher._probe import Probe, parse_probe_json, probe_host

__all__ = ["probe_for", "remote_probe"]

# The probe run inside the service image on a remote engine: launcher's probe modules are
# copied in (put_archive), service.nvml is already there; NVML comes from the toolkit's mounts.
_PROBE_DIR = "/tmp/launcher-probe"
_PROBE_SCRIPT = ("import argparse, sys; from launcher.cmd_probe import run; "
                 "sys.exit(run(argparse.Namespace(json=True)))")
# cmd_probe and what it imports: the probe, the wheel table (per GPU wheels), the errors, the
# help's summary.
_PROBE_FILES = ("__init__.py", "_errors.py", "_cuda.py", "_help.py", "_probe.py", "cmd_probe.py",
                "data/cuda.json")
_PROBE_REQUEST = {"Driver": "", "Count": -1, "DeviceIDs": None,
                  "Capabilities": [["gpu", "utility"]], "Options": {}}


def probe_for(options: PlanOptions, environ: Mapping[str, str], dry_run: bool,
              load: Callable[[], Any]) -> Probe | None:
    """The probe the plan is made from: None for a CPU plan or ``--no-probe``; the file's host
    for ``--probe-file``; NVML here for a local engine; a container on the engine itself when
    ``DOCKER_HOST`` is remote."""
    if not options.gpus or options.build.no_probe:
        return None
    if options.build.probed is not None:
        return options.build.probed
    if not is_remote_engine(environ.get("DOCKER_HOST")):
        return probe_host(load)
    if dry_run:
        print("launcher: remote engine (DOCKER_HOST): a dry run does not probe it; --gpus taken "
              "as given", file=sys.stderr)
        return None
    # The service image these build options name, else their CPU one's content hash (no plan:
    # only its tag is needed); with --predictor never --tag, the derived image built later.
    image = service_tag(options.build)
    if image is None:
        dockerfile, _, build_args = build_inputs(None, options.build)
        image = image_tag(ROOT, dockerfile, build_args, wheelhouse=options.build.wheelhouse,
                          labels=image_labels(options))
    engine = connect(environ)
    try:
        if engine.image_id(image) is None:
            raise NotFound(f"the remote engine has no {image} to probe its GPUs with",
                           hint="build it there first (DOCKER_HOST=... launcher build), "
                                "or skip the probe with --no-probe")
        return remote_probe(engine, image)
    finally:
        engine.close()


def _probe_archive() -> bytes:
    """A tar for /tmp: launcher-probe/launcher/ with :data:`_PROBE_FILES`."""
    buf = io.BytesIO()
    package = Path(__file__).resolve().parent
    top = _PROBE_DIR.rsplit("/", 1)[1]
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder in (top, f"{top}/launcher", f"{top}/launcher/data"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name in _PROBE_FILES:
            data = (package / name).read_bytes()
            info = tarfile.TarInfo(f"{top}/launcher/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def remote_probe(engine: EngineAPI, image: str, timeout: float = 60,
                 request: Mapping[str, Any] | None = _PROBE_REQUEST,
                 labels: Mapping[str, str] | None = None) -> Probe:
    """``launcher probe --json`` in a throwaway container of ``image`` that requests every GPU
    (``request``; None: none, for tests). An engine that cannot give GPUs makes that the probe's
    reason (no GPUs), like no NVML."""
    body = {"Image": image, "Cmd": ["python", "-c", _PROBE_SCRIPT],
            "Env": [f"PYTHONPATH={_PROBE_DIR}:/app", "NVIDIA_DRIVER_CAPABILITIES=utility"],
            "Labels": {**(labels or {}), LABEL_MANAGED: "probe"},
            "HostConfig": {"DeviceRequests": [dict(request)] if request else None,
                           "NetworkMode": "none"}}
    try:
        # /tmp: in every image
        done = engine.run_container(body, timeout, archives=[("/tmp", _probe_archive())])
    except GpuRuntimeMissing as exc:
        return Probe(None, None, (),
                     reason=f"the engine cannot give containers GPUs ({exc.detail})")
    out = done.output
    if done.status != 0:
        raise LauncherError(f"probing the remote engine's GPUs in {image} exited {done.status}: "
                            f"{out.strip().splitlines()[-1] if out.strip() else 'no output'}",
                            hint="skip the probe with --no-probe and pass --gpus as you need")
    return parse_probe_json(out)
