"""The wheel is self-sufficient: it holds the report notebooks and HTML templates, and
``ckpt report`` runs from an installed (non-editable) copy outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the sources (the checkout stays untouched)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copytree(REPO / "ckpt_toolkit", src / "ckpt_toolkit", ignore=ignore)
    shutil.copytree(REPO / "notebooks", src / "notebooks", ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (whl,) = out.glob("ckpt_toolkit-*.whl")
    return whl


def test_wheel_holds_notebooks_and_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        assert f"ckpt_toolkit/notebooks/{nb.name}" in names
    templates = REPO / "ckpt_toolkit" / "reports" / "templates"
    for t in templates.rglob("*"):
        if t.is_file():
            assert f"ckpt_toolkit/{t.relative_to(REPO / 'ckpt_toolkit').as_posix()}" in names
    assert "ckpt_toolkit/analysis/taxonomy.yaml" in names
    assert "ckpt_toolkit/finetune/default_spec.yaml" in names


@pytest.mark.slow
def test_installed_copy_runs_a_report_outside_the_repository(wheel, tmp_path, pythia_evals):
    """Unpack the wheel (what `pip install .` puts in site-packages), put it first on the path,
    and run `ckpt report overview` from a folder that is not the repository."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("CKPT_NOTEBOOKS", None)
    code = (
        "import ckpt_toolkit, sys; from ckpt_toolkit.reports import notebooks_dir;"
        "print(ckpt_toolkit.__file__); print(notebooks_dir())"
    )
    where = subprocess.run(
        [sys.executable, "-c", code],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0].startswith(str(site)) and where[1] == str(site / "ckpt_toolkit" / "notebooks")
    store = work / "s.duckdb"
    ckpt = [sys.executable, "-m", "ckpt_toolkit.cli"]
    subprocess.run(
        [*ckpt, "import", "lm-eval", str(pythia_evals / "pythia-70m"), "--store", str(store)],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    proc = subprocess.run(
        [*ckpt, "report", "overview", "--store", str(store), "--out", str(work / "reports")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = (work / "reports" / "overview.html").read_text()
    assert "pythia-v1.1-70m" in html
