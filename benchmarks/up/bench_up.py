"""``launcher up`` → ready, against a plain ``docker run`` of the same image + polling /readyz.

    .venv/bin/python benchmarks/up/bench_up.py --image gpu-launcher/service:cpu-…   # present
    .venv/bin/python benchmarks/up/bench_up.py --base-image gpu-launcher/standin-bookworm \\
        --wheelhouse .cache/wheelhouse      # builds the image first (not timed)

The image is present in both paths (nothing is built while timing), and each checkout's
``launcher/`` and ``service/`` are byte-compiled first, as ``pip install`` does: where
``PYTHONDONTWRITEBYTECODE`` is set (this dev box) a checkout is otherwise recompiled on every run
(~55 ms of CPU per ``up`` here), which an installed launcher never pays. ``--baseline DIR`` also
times the ``launcher up`` of another checkout (e.g. the commit before a change) in the same
rounds, so before and after meet the same load. Each round, rotating which goes first: ``launcher up --no-build --tag IMAGE`` until it exits 0 (it returns once
/readyz answers 200), then ``launcher down --volumes``; and ``docker run -d -p …`` of the same
image + ``GET /readyz`` every 0.1 s (the launcher's own poll interval) until 200, then
``docker rm -f``; and the SDK floor: a Python process that imports the Docker SDK and only
creates and starts the plan's own body (``launcher up --dry-run --json``, less its named
volumes and memlock), polled the same way: what any launcher written on the SDK pays before
doing anything of its own. Each uses a fresh loopback port and a unique name. Prints one JSON object
(seconds) with the ratio of the medians, the ratios with one boot for every path (the boot's
spread between rounds taken out), and each path's phases (medians): ``to_start`` (the
command's start → the container's ``State.StartedAt``: the launcher's or the CLI's own work and
the engine's start), ``boot`` (→ the service's ``service: ready:`` log line: the same image
either way) and ``notice`` (→ the command noticed: the poll, and for ``up`` its exit).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LABEL = "org.gpu-launcher.bench=up"
POLL = 0.1
TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launcher(*argv: str, timeout: float = 600,
             checkout: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launcher", *argv], cwd=checkout, text=True,
                          capture_output=True, timeout=timeout, check=False)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


PHASES: dict[str, dict[str, list[float]]] = {}  # contender -> phase -> samples


def _stamp(text: str) -> float:
    """An engine timestamp (RFC 3339, nanoseconds) as seconds since the epoch."""
    head, _, frac = text.strip().rstrip("Z").partition(".")
    when = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.timezone.utc)
    return when.timestamp() + float(f"0.{frac or 0}")


def record_phases(contender: str, container: str, began: float, noticed: float) -> None:
    """Split one run at the container's start and the service's ready line (the engine's
    clock, this host's: comparable with time.time())."""
    started = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    logs = subprocess.run(["docker", "logs", "-t", container], capture_output=True, text=True,
                          timeout=30, check=False)
    ready = next((line.split(" ", 1)[0] for line in (logs.stdout + logs.stderr).splitlines()
                  if "service: ready:" in line), None)
    if ready is None:
        return
    t_start, t_ready = _stamp(started), _stamp(ready)
    for phase, value in (("to_start", t_start - began), ("boot", t_ready - t_start),
                         ("notice", noticed - t_ready)):
        PHASES.setdefault(contender, {}).setdefault(phase, []).append(value)


def time_launcher_up(image: str, checkout: Path = ROOT, contender: str = "launcher_up") -> float:
    name, port = f"bench-up-{uuid.uuid4().hex[:8]}", free_port()
    began = time.time()
    start = time.perf_counter()
    result = launcher("up", "--name", name, "--tag", image, "--no-build", "--label", LABEL,
                      "-p", f"127.0.0.1:{port}:8000", "--timeout", str(TIMEOUT),
                      checkout=checkout)
    elapsed = time.perf_counter() - start
    if result.returncode == 0:
        record_phases(contender, name, began, began + elapsed)
    launcher("down", "--name", name, "--volumes", "-t", "2", checkout=checkout)
    if result.returncode != 0:
        raise SystemExit(f"launcher up failed:\n{result.stderr[-3000:]}")
    return elapsed


def time_started(contender: str, name: str, port: int, command: list[str]) -> float:
    """``command`` starts container ``name`` publishing ``port`` and exits; then ``GET /readyz``
    every 0.1 s (the launcher's own poll interval) until 200; then ``docker rm -f -v``."""
    url = f"http://127.0.0.1:{port}"
    began = time.time()
    start = time.perf_counter()
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        deadline = start + TIMEOUT
        while not ready(url):
            if time.perf_counter() > deadline:
                raise SystemExit(f"{contender}: not ready within {TIMEOUT:g}s")
            time.sleep(POLL)
        elapsed = time.perf_counter() - start
        record_phases(contender, name, began, began + elapsed)
        return elapsed
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, timeout=60,
                       check=False)


def time_docker_run(image: str) -> float:
    name, port = f"bench-run-{uuid.uuid4().hex[:8]}", free_port()
    return time_started("docker_run", name, port, [
        "docker", "run", "-d", "--name", name, "--label", LABEL, "-p",
        f"127.0.0.1:{port}:8000", image])


# The least a Python launcher on the Docker SDK can do: its interpreter, `import docker`, one
# create and one start of the plan's own body (no lookups, no volumes, no lifecycle), then exit.
_SDK_FLOOR = """
import json, sys
import docker
client = docker.from_env()
body, name = json.loads(sys.argv[1]), sys.argv[2]
client.api.start(client.api.create_container_from_config(body, name)["Id"])
"""


def floor_body(image: str) -> dict[str, Any]:
    """The create body ``launcher up`` would send, less what needs the launcher's own steps:
    named volumes (the image's anonymous ones are made instead, removed with the container) and
    the memlock limit (an engine that cannot raise it would refuse the start)."""
    result = launcher("up", "--tag", image, "--no-build", "--dry-run", "--json")
    if result.returncode != 0:
        raise SystemExit(f"launcher up --dry-run failed:\n{result.stderr[-3000:]}")
    body: dict[str, Any] = json.loads(result.stdout)["create"]
    host = body["HostConfig"]
    host["Binds"] = []
    host["Ulimits"] = [u for u in host.get("Ulimits") or () if u["Name"] != "memlock"]
    key, _, value = LABEL.partition("=")
    body["Labels"] = {**body.get("Labels", {}), key: value}
    return body


def time_sdk_floor(body: dict[str, Any]) -> float:
    name, port = f"bench-floor-{uuid.uuid4().hex[:8]}", free_port()
    body = {**body, "HostConfig": {**body["HostConfig"], "PortBindings": {
        "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}}}
    return time_started("sdk_floor", name, port,
                        [sys.executable, "-c", _SDK_FLOOR, json.dumps(body), name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="a service image already on the engine")
    parser.add_argument("--base-image", help="without --image: build from this base (untimed)")
    parser.add_argument("--wheelhouse", help="without --image: build offline from this folder")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also time this checkout's launcher up, in the same rounds")
    args = parser.parse_args()
    image = args.image
    if image is None:
        build = ["build"] + (["--base-image", args.base_image] if args.base_image else []) + (
            ["--wheelhouse", args.wheelhouse] if args.wheelhouse else [])
        result = launcher(*build, timeout=3600)
        if result.returncode != 0:
            raise SystemExit(f"launcher build failed:\n{result.stderr[-3000:]}")
        image = result.stdout.strip()
    body = floor_body(image)
    contenders: dict[str, Callable[[str], float]] = {
        "launcher_up": time_launcher_up, "docker_run": time_docker_run,
        "sdk_floor": lambda _image: time_sdk_floor(body)}
    if args.baseline is not None:
        baseline = args.baseline.resolve()
        contenders["baseline_up"] = lambda img: time_launcher_up(img, checkout=baseline,
                                                                 contender="baseline_up")
    for checkout in {ROOT, *([args.baseline.resolve()] if args.baseline else [])}:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "launcher", "service"],
                       cwd=checkout, check=True, capture_output=True, timeout=600)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for i in range(args.rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            samples[name].append(contenders[name](image))
            print(f"round {i + 1}: {name} {samples[name][-1]:.2f}s", file=sys.stderr)

    def summary(values: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(values), 3),
                "min": round(min(values), 3), "max": round(max(values), 3)}

    run = statistics.median(samples["docker_run"])
    report: dict[str, Any] = {"image": image, "rounds": args.rounds}
    report |= {f"{name}_s": summary(values) for name, values in samples.items()}
    for name, values in samples.items():
        if name != "docker_run":  # launcher_up's key is the short ratio_up_…
            key = "up" if name == "launcher_up" else name
            report[f"ratio_{key}_over_docker_run"] = round(statistics.median(values) / run, 3)
    if args.baseline is not None:
        report["baseline"] = str(args.baseline)
    report["phases_median_s"] = {
        name: {phase: round(statistics.median(v), 3) for phase, v in PHASES.get(name, {}).items()}
        for name in contenders}
    # The same image boots in every path, yet its boot spreads ±50-100 ms between rounds: with
    # one boot for all (the median over every path), what is left is what each command does.
    phases = report["phases_median_s"]
    boots = [v for phases_of in PHASES.values() for v in phases_of.get("boot", [])]
    if boots and all({"to_start", "notice"} <= set(phases[name]) for name in contenders):
        boot = statistics.median(boots)

        def by_phases(name: str) -> float:
            return float(phases[name]["to_start"] + boot + phases[name]["notice"])

        report["ratios_with_one_boot"] = {
            f"{name}_over_docker_run": round(by_phases(name) / by_phases("docker_run"), 3)
            for name in contenders if name != "docker_run"}
    report["host_cpus"] = os.cpu_count()
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
