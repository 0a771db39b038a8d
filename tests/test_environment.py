"""environment.yml (conda users) and pyproject.toml (pip) list the same dependencies."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for extra in data["project"]["optional-dependencies"].values():
        reqs.extend(extra)
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}


def test_environment_yml_matches_pyproject():
    py, env = _pyproject_requirements(), _environment_requirements()
    assert set(py) == set(env), (
        f"only in pyproject: {set(py) - set(env)}; only in env: {set(env) - set(py)}"
    )
    for name, req in py.items():
        assert env[name] == req, f"{name}: pyproject says {req}, environment.yml says {env[name]}"


def test_torch_range_admits_the_local_cpu_build():
    # the Makefile installs torch==2.13.0 first; the package's range must accept it
    from packaging.specifiers import SpecifierSet

    spec = _pyproject_requirements()["torch"].removeprefix("torch")
    assert "2.13.0" in SpecifierSet(spec)
    assert "2.14.1" not in SpecifierSet(spec)


def test_ci_calls_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
