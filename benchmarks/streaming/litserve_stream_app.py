"""The LitServe peer for the streaming benchmark (LitServe pinned in serving/setup-litserve):
the same Generator (examples/generate) streaming the same prompts, one worker, one thread.

    .cache/litserve-venv/bin/python benchmarks/streaming/litserve_stream_app.py PORT
"""

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litserve as ls
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "examples" / "generate"), str(ROOT)]
from predict import Generator


class GeneratorAPI(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        torch.set_num_threads(1)
        self.generator = Generator()
        self.generator.setup("cpu")

    # No annotation on `request`: LitServe builds its endpoint from it (a dict would be a query).
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return self.generator.decode(request)[0]

    def predict(self, prompt: Any) -> Iterator[str]:
        yield from self.generator.stream(prompt)

    # No return annotation either: LitServe would make it the endpoint's response model.
    def encode_response(self, output):  # type: ignore[no-untyped-def]
        for text in output:
            yield {"text": text}  # LitServe writes each as one JSON line


if __name__ == "__main__":
    server = ls.LitServer(GeneratorAPI(stream=True), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False,
               log_level="warning")
