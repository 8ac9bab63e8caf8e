"""GPU-aware container launcher for the inference service."""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it, `launcher --version` prints it
