"""Notebook parameters: what a report notebook declares, and checking what a user passes.

A report notebook declares its parameters in the one cell tagged ``parameters``, one typed
assignment per line with a help comment (``store_path: str = "x.duckdb"  # results store``).
Papermill's ``inspect_notebook`` reads them; :func:`validate_params` rejects unknown names and
values of the wrong type with a :class:`~ckpt_toolkit.errors.ParameterError` naming the parameter
and the notebook (papermill itself would only warn and inject them anyway).
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ParameterError


@dataclass(frozen=True)
class NotebookParameter:
    """One declared parameter: its name, declared type (text), default value and help text."""

    name: str
    type_name: str
    default: Any
    help: str


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def declared_parameters(notebook: str | Path) -> dict[str, NotebookParameter]:
    """The parameters declared in ``notebook``'s cell tagged ``parameters`` (papermill's view).

    Raises :class:`ParameterError` if the notebook has no such cell.
    """
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    path = Path(notebook)
    if not path.is_file():
        raise ParameterError(f"notebook not found: {path}")
    nb = load_notebook_node(str(path))  # also gives every cell a metadata.tags list
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ParameterError(
            f"notebook {path.name} must have exactly one cell tagged 'parameters' "
            f"(found {len(tagged)})"
        )
    out = {}
    inferred = _infer_parameters(nb)
    assigned = _assigned_names(tagged[0].source, path.name)
    unparsed = [n for n in assigned if n not in {p.name for p in inferred}]
    if unparsed:
        raise ParameterError(
            f"notebook {path.name}: papermill cannot read parameter(s) {unparsed} in the cell "
            "tagged 'parameters' (one `name: type = value  # help` per line, no '=' in the help)"
        )
    for p in inferred:
        out[p.name] = NotebookParameter(
            name=p.name,
            type_name=(p.inferred_type_name or "None").strip(),
            default=_literal(p.default),
            help=(p.help or "").strip(),
        )
    return out


def _assigned_names(source: str, notebook: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(
            f"notebook {notebook}: parameters cell is not valid Python: {exc}"
        ) from None
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _split_union(type_name: str) -> list[str]:
    t = type_name.replace(" ", "")
    m = re.fullmatch(r"(?:typing\.)?Optional\[(.+)\]", t)
    if m:
        return [*_split_union(m.group(1)), "None"]
    depth, parts, cur = 0, [], ""
    for ch in t:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p]


def _matches(value: Any, type_name: str) -> bool | None:
    """True/False if ``value`` fits ``type_name``; None when the annotation is not understood."""
    t = type_name.replace(" ", "").removeprefix("typing.")
    if t in ("None", "NoneType"):
        return value is None
    if t in ("Any", "object"):
        return True
    if t == "str":
        return isinstance(value, str)
    if t == "bool":
        return isinstance(value, bool)
    if t == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    m = re.fullmatch(r"(?i)(list|tuple|sequence)(?:\[(.+?)(?:,\.\.\.)?\])?", t)
    if m:
        if not isinstance(value, (list, tuple)):
            return False
        if m.group(2) is None:
            return True
        checks = [_type_ok(v, m.group(2)) for v in value]
        return all(c is not False for c in checks)
    m = re.fullmatch(r"(?i)(dict|mapping)(?:\[.+\])?", t)
    if m:
        return isinstance(value, dict)
    return None


def _type_ok(value: Any, type_name: str) -> bool | None:
    results = [_matches(value, part) for part in _split_union(type_name)]
    if any(r is True for r in results):
        return True
    if all(r is False for r in results):
        return False
    return None


def validate_params(
    notebook: str | Path, params: Mapping[str, Any], declared: dict | None = None
) -> dict[str, Any]:
    """Check ``params`` against the parameters ``notebook`` declares; return them unchanged.

    Unknown names and values whose type does not fit the declared annotation (or, for an
    unannotated parameter, the type of its default) raise :class:`ParameterError`.
    """
    name = Path(notebook).name
    declared = declared if declared is not None else declared_parameters(notebook)
    for key, value in params.items():
        if key not in declared:
            raise ParameterError(
                f"notebook {name} has no parameter {key!r}; its parameters: "
                + ", ".join(f"{p.name}: {p.type_name}" for p in declared.values())
            )
        p = declared[key]
        type_name = p.type_name
        if type_name == "None" and p.default is not None:  # unannotated: use the default's type
            type_name = type(p.default).__name__
        ok = _type_ok(value, type_name)
        if ok is False:
            raise ParameterError(
                f"notebook {name}: parameter {key!r} must be {type_name}, "
                f"got {type(value).__name__} {value!r}"
            )
    return dict(params)


def load_yaml_mapping(path: str | Path, what: str) -> Any:
    """Read a YAML file (``what`` names its role in errors)."""
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"{what} file not found: {p}")
    try:
        return yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"{what} file {p} is not valid YAML: {exc}") from None


def expand_grid(grid: Any, source: str = "grid") -> list[dict[str, Any]]:
    """Parameter sets from a grid: a list of mappings (taken as is), or a mapping of
    name → list of values (the cartesian product, in key order; a scalar is one value)."""
    if grid is None:
        return [{}]
    if isinstance(grid, list):
        for i, item in enumerate(grid):
            if not isinstance(item, dict):
                raise ParameterError(f"{source}: entry {i} must be a mapping of parameters")
        return [dict(g) for g in grid] or [{}]
    if isinstance(grid, dict):
        keys = list(grid)
        values = [v if isinstance(v, list) else [v] for v in grid.values()]
        return [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    raise ParameterError(f"{source} must be a list of parameter mappings or a mapping of lists")


def slug(params: Mapping[str, Any], keys: list[str] | None = None) -> str:
    """A file-name-safe, deterministic suffix from parameter values (no timestamps)."""
    keys = list(params) if keys is None else keys
    parts = []
    for k in keys:
        if k not in params:
            continue
        v = params[k]
        if isinstance(v, (list, tuple)):
            v = "+".join(map(str, v))
        elif isinstance(v, str) and ("/" in v or "\\" in v):
            v = Path(v).stem or v  # store paths etc.: the file stem reads best
        value = re.sub(r"[^A-Za-z0-9._+]+", "-", str(v)).strip("-")
        text = re.sub(r"[^A-Za-z0-9._+-]+", "-", f"{k}-{value}").strip("-")
        parts.append(text)
    return "__".join(parts)[:120]
