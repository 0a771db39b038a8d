"""Build hook: ship the report notebooks (top-level ``notebooks/``) inside the wheel.

The notebooks live once, at the repository's top level, where users open them in JupyterLab.
A regular (non-editable) build copies them to ``ckpt_toolkit/notebooks/`` in the wheel, so
``ckpt report`` and ``ckpt demo`` work after ``pip install .`` outside the repository. Editable
installs read them from the repository directly (``ckpt_toolkit.reports.runner.notebooks_dir``).
Everything else is declared in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithNotebooks(build_py):
    """``build_py`` that also copies ``notebooks/*.ipynb`` into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "ckpt_toolkit" / "notebooks"
        target.mkdir(parents=True, exist_ok=True)
        for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
            self.copy_file(str(nb), str(target / nb.name))


setup(cmdclass={"build_py": BuildPyWithNotebooks})
