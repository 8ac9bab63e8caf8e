"""The naive peer: FastAPI, a pydantic body, a sync handler, one forward pass per request.

    MODEL_PATH=model.pt uvicorn --app-dir benchmarks/serving naive_app:app
"""

from __future__ import annotations

import os

import torch
from fastapi import FastAPI
from pydantic import BaseModel

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
model = torch.jit.load(os.environ["MODEL_PATH"]).eval()
app = FastAPI()


class Request(BaseModel):
    inputs: list[list[float]]


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/predict")
def predict(request: Request) -> dict[str, list[int] | list[list[float]]]:
    with torch.inference_mode():
        scores = torch.softmax(model(torch.tensor(request.inputs, dtype=torch.float32)), dim=1)
    return {"predictions": scores.argmax(1).tolist(), "scores": scores.tolist()}
