"""The inference service: FastAPI + PyTorch predictor with dynamic batching.

Kept import-light on purpose: the launcher imports :mod:`service.nvml` on hosts without torch,
so nothing is imported here; use ``service._app.create_app`` and friends directly.
"""
