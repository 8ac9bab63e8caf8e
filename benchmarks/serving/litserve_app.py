"""The LitServe peer (pinned in setup-litserve), batching on, same model file and same JSON.

    MODEL_PATH=model.pt .cache/litserve-venv/bin/python benchmarks/serving/litserve_app.py PORT
"""

import os
import sys
from typing import Any

import litserve as ls
import torch

MAX_BATCH_SIZE = 32
BATCH_TIMEOUT_S = 0.005


class TorchScriptAPI(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
        self.model = torch.jit.load(os.environ["MODEL_PATH"]).eval()

    # No annotation on `request`: LitServe builds its endpoint from it (a dict would be a query).
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request["inputs"][0]  # single-row requests

    def batch(self, inputs: list[list[float]]) -> torch.Tensor:
        return torch.tensor(inputs, dtype=torch.float32)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(self.model(x), dim=1)

    def unbatch(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output)

    def encode_response(self, output: torch.Tensor) -> dict[str, Any]:
        return {"predictions": [int(output.argmax())], "scores": [output.tolist()]}


if __name__ == "__main__":
    api = TorchScriptAPI(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_S)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False,
               log_level="warning")
