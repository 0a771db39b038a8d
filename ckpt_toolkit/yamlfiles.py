"""Reading the YAML files users hand the toolkit (configs, specs, mappings, taxonomies), with one
set of error messages, and merging them into defaults."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .errors import CkptError, ParameterError


def read_yaml_mapping(
    path: str | Path, what: str, error: type[CkptError] = ParameterError
) -> dict[str, Any]:
    """Load a YAML file that must hold a mapping; ``what`` names it in errors
    (e.g. ``"taxonomy file"``). Missing file, bad YAML and a non-mapping each raise ``error``."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{what} not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise error(f"{what} {p} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{what} {p} must hold a mapping of keys to values")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``over`` merged in, nested mappings merged key by key."""
    out = copy.deepcopy(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out
