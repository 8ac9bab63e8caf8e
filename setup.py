"""The wheel carries the service's build context (pyproject.toml says the rest).

``launcher up`` installed from a wheel builds the same image as from a checkout: the files a
build reads outside the packages (the Dockerfiles, ``.dockerignore``, ``requirements.lock``,
``wheelhouse/README.md``) are copied into ``launcher/data/context/``; the ``service`` package is
installed next to ``launcher`` and taken from there (``launcher._build.PACKAGED_CONTEXT``).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# Kept equal to launcher._build.CONTEXT_FILES (tests/unit/test_packaging.py holds them equal).
CONTEXT_FILES = ("Dockerfile", "Dockerfile.gpu", ".dockerignore", "requirements.lock",
                 "wheelhouse/README.md")


class BuildWithContext(build_py):
    """build_py, plus the build context's files under launcher/data/context/."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout itself
            return
        here = Path(__file__).resolve().parent
        target = Path(self.build_lib, "launcher", "data", "context")
        for name in CONTEXT_FILES:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(here / name), str(target / name))


setup(cmdclass={"build_py": BuildWithContext})
