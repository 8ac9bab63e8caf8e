"""Build benchmark: the layered images against a naive single-stage Dockerfile.

Measures, on this engine, offline from the wheelhouse and from the stand-in base:
  * cold build (no cache) of the CPU image, GPU image and naive image;
  * a code-only rebuild (one edited file under service/) of the CPU and naive images;
  * the image sizes.
The naive Dockerfile is what the issue names: ``FROM python:3.11``, ``COPY . .``, ``pip install``
the project, on ``python:3.11`` when it is here, else on the Debian stand-in by its own name.
Every image made here is labelled org.gpu-launcher.bench=1 and removed at the end.

    .venv/bin/python benchmarks/build/bench_build.py [--out benchmarks/results/build.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from launcher._build import ContextFile, context_files, write_context_tar
from launcher._engine import Engine, connect

STANDIN = "gpu-launcher/standin-bookworm:latest"
NAIVE_BASE = "python:3.11"
LABELS = {"org.gpu-launcher.bench": "1"}
# Single stage, the whole checkout, dependencies installed after the code: any edit reinstalls.
NAIVE_DOCKERFILE = """\
FROM {base}
WORKDIR /app
COPY . .
RUN python3 -m venv /venv \\
    && /venv/bin/pip install --no-index --find-links /app/wheelhouse -r requirements.lock \\
    && /venv/bin/pip install --no-deps --no-build-isolation .
CMD ["/venv/bin/python", "-m", "service"]
"""


def launcher_build(context: Path, wheelhouse: Path, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "launcher", "build", "--context", str(context), "--json",
         "--base-image", STANDIN, "--wheelhouse", str(wheelhouse), "--no-probe",
         *[a for k, v in LABELS.items() for a in ("--label", f"{k}={v}")], *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"launcher build failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout))


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = fn(*args)
    return time.monotonic() - started, result


def copy_tree(files: list[ContextFile], dest: Path) -> Path:
    for f in files:
        target = dest / f.arcname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f.source, target)
    return dest


def edit(context: Path) -> None:
    with (context / "service" / "__init__.py").open("a") as f:
        f.write(f"# bench edit {uuid.uuid4().hex}\n")


def naive_build(engine: Engine, context: Path, tag: str, no_cache: bool) -> str:
    files = context_files(context, "Dockerfile.naive")
    with tempfile.TemporaryFile() as tar:
        write_context_tar(files, tar)
        tar.seek(0)
        return engine.build(tar, dockerfile="Dockerfile.naive", tag=tag, build_args={},
                            labels=LABELS, no_cache=no_cache)


def size_mb(engine: Engine, tag: str) -> float:
    return round(int(engine.inspect_image(tag)["Size"]) / 1e6, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/build.json")
    parser.add_argument("--wheelhouse", type=Path, default=ROOT / ".cache/wheelhouse")
    args = parser.parse_args()
    engine = connect(timeout=3600)
    tags: list[str] = []
    results: dict[str, Any] = {"engine": engine.info().server_version, "base": STANDIN}
    # The naive image's base: python:3.11 when it is here, else the stand-in by its own name
    # (scripts/standin-images never tags it python:3.11).
    naive_base = NAIVE_BASE if engine.image_id(NAIVE_BASE) is not None else STANDIN
    if naive_base != NAIVE_BASE:
        print(f"bench: {NAIVE_BASE} is not here; the naive image builds FROM the stand-in "
              f"{STANDIN}", file=sys.stderr)
    results["naive_base"] = naive_base
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            # The layered images: the build inputs copied (edits never touch the checkout).
            ctx = copy_tree(context_files(ROOT, "Dockerfile.gpu"), work / "layered")
            tag = f"gpu-launcher/bench:cpu-{uuid.uuid4().hex[:8]}"
            tags.append(tag)
            results["cpu_cold_s"], _ = timed(
                launcher_build, ctx, args.wheelhouse, "--no-cache", "--tag", tag)
            results["cpu_size_mb"] = size_mb(engine, tag)
            edit(ctx)
            tags.append(tag + "-edit")
            results["cpu_code_edit_s"], built = timed(
                launcher_build, ctx, args.wheelhouse, "--tag", tag + "-edit")
            results["cpu_code_edit_cached_steps"] = (
                f"{sum(s['cached'] for s in built['steps'])}/{len(built['steps'])}")
            gtag = f"gpu-launcher/bench:gpu-{uuid.uuid4().hex[:8]}"
            tags.append(gtag)
            results["gpu_cold_s"], _ = timed(
                launcher_build, ctx, args.wheelhouse, "--gpu", "--no-cache", "--tag", gtag)
            results["gpu_size_mb"] = size_mb(engine, gtag)

            # The naive image: the whole checkout (tracked files) plus the wheels, no ignore file.
            tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                                     text=True, check=True).stdout.split()
            naive = copy_tree([ContextFile(p, ROOT / p) for p in tracked
                               if (ROOT / p).is_file() and p != ".dockerignore"],
                              work / "naive")
            copy_tree([ContextFile(f"wheelhouse/{w.name}", w)
                       for w in args.wheelhouse.glob("*.whl")], naive)
            (naive / "Dockerfile.naive").write_text(NAIVE_DOCKERFILE.format(base=naive_base))
            ntag = f"gpu-launcher/bench:naive-{uuid.uuid4().hex[:8]}"
            tags += [ntag, ntag + "-edit"]
            results["naive_cold_s"], _ = timed(naive_build, engine, naive, ntag, True)
            results["naive_size_mb"] = size_mb(engine, ntag)
            edit(naive)
            results["naive_code_edit_s"], _ = timed(
                naive_build, engine, naive, ntag + "-edit", False)
    finally:
        for tag in tags:
            engine.remove_image(tag, force=True)
        engine.close()
    results = {k: round(v, 1) if isinstance(v, float) else v for k, v in results.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
