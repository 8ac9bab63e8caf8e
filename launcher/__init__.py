"""GPU-aware container launcher for the inference service."""
