"""The LitServe peer for the overload benchmark: the same slow echo model as ours
(tests.service.slow_predictor.SlowEcho: every forward pass sleeps SLOW_SECONDS, batches of at
most MAX_BATCH_ROWS), so both servers have the same capacity and only serving differs.

    SLOW_SECONDS=0.02 MAX_BATCH_ROWS=8 .cache/litserve-venv/bin/python \\
        benchmarks/serving/litserve_slow_app.py PORT
"""

import os
import sys
import time
from typing import Any

import litserve as ls

BATCH_TIMEOUT_S = 0.005  # ours: MAX_WAIT_MS=5


class SlowEchoAPI(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        self.seconds = float(os.environ.get("SLOW_SECONDS", "0.02"))

    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request["inputs"][0]

    def batch(self, inputs: list[list[float]]) -> list[list[float]]:
        return inputs

    def predict(self, rows: list[list[float]]) -> list[float]:
        time.sleep(self.seconds)
        return [row[0] for row in rows]

    def unbatch(self, output: list[float]) -> list[float]:
        return output

    def encode_response(self, output: float) -> dict[str, Any]:
        return {"predictions": [output]}


if __name__ == "__main__":
    api = SlowEchoAPI(max_batch_size=int(os.environ.get("MAX_BATCH_ROWS", "8")),
                      batch_timeout=BATCH_TIMEOUT_S)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False,
               log_level="warning")
