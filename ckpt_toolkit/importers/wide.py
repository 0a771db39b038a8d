"""Wide tables (CSV or Parquet: one row per checkpoint, one column per metric) and the YAML
mapping that describes them. One mapping can serve a whole folder of files::

    files: "*.csv"                                  # which files of the folder (glob)
    filename: "(?P<size>[^-]+)-(?P<budget>.+)\\.csv"  # named groups → the run's variant config
    run: "{size}-{budget}"                          # a column, or a template over the groups
    step: _step
    tokens: throughput/total_tokens                 # a column; else tokens_per_step
    tokens_per_step: 4194304                        # a number, or {run: number}
    columns:                                        # first matching rule wins
      - match: "eval/downstream/(?P<task>.+)_(?P<shots>\\d+)shot(_(?P<metric>len_norm))?"
      - match: "eval/(?P<task>[^/]+)/CrossEntropyLoss"
        metric: ce_loss
        loss: true
      - {match: ".*_stderr", skip: true}

``columns`` may also be a mapping of exact column names (``arc: {task: arc_easy, metric: acc,
stderr: arc_se}``). Columns that no rule matches are reported once per mapping.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.taxonomy import Taxonomy
from ..errors import ImportFormatError
from ..probes.registry import IMPORT
from ..specs import spec_hash
from ..yamlfiles import read_yaml_mapping
from .columns import int_column, row_label
from .common import ImportReport, checked_int, parse_size
from .tidy import capabilities, checkpoint_metas, fill_tokens
from .tokens import TokensPerStep, mapping_tokens_per_step

PROBE = IMPORT
MAPPING_KEYS = {
    "run",
    "run_name",
    "step",
    "tokens",
    "params",
    "params_value",
    "tokens_per_step",
    "tokens_by_step",
    "shots",
    "columns",
    "checkpoint",
    "files",
    "filename",
}
RULE_KEYS = {"match", "task", "metric", "shots", "stderr", "capability", "loss", "skip"}
COLUMN_KEYS = {"task", "metric", "shots", "stderr", "capability", "loss"}
ID_KEYS = ("run", "step", "tokens", "params", "checkpoint")
SPEC_HASH = spec_hash({"importer": PROBE})


class FileNotMatched(Exception):
    """A file of the folder does not match the mapping's ``filename`` pattern (skipped)."""


def _regex(text: Any, where: str) -> re.Pattern[str]:
    if not isinstance(text, str) or not text:
        raise ImportFormatError(f"{where}: must be a regular expression (text)")
    try:
        return re.compile(text)
    except re.error as exc:
        raise ImportFormatError(f"{where}: invalid regular expression {text!r}: {exc}") from None


def _template_fields(text: str, where: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise ImportFormatError(f"{where}: invalid template {text!r}: {exc}") from None


def _check_rule(rule: Any, where: str) -> dict[str, Any]:
    if not isinstance(rule, dict):
        raise ImportFormatError(f"{where}: a rule must be a mapping with 'match'")
    unknown = set(rule) - RULE_KEYS
    if unknown:
        raise ImportFormatError(
            f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(RULE_KEYS)}"
        )
    rx = _regex(rule.get("match"), f"{where}.match")
    out = dict(rule, match=rx)
    groups = set(rx.groupindex)
    if not rule.get("skip") and "task" not in groups and not isinstance(rule.get("task"), str):
        raise ImportFormatError(
            f"{where}: give the task, as a named group (?P<task>...) in 'match' or a constant "
            "'task:'"
        )
    for key in ("metric", "task", "capability", "stderr"):
        if key in rule and not isinstance(rule[key], str):
            raise ImportFormatError(f"{where}.{key}: must be text, not {rule[key]!r:.60}")
    if isinstance(rule.get("stderr"), str):
        unknown = _template_fields(rule["stderr"], f"{where}.stderr") - groups - {"column"}
        if unknown:
            raise ImportFormatError(
                f"{where}.stderr: template {rule['stderr']!r} uses {sorted(unknown)}; it may use "
                f"{{column}} and the match's groups {sorted(groups)}"
            )
    if "shots" in rule:
        out["shots"] = checked_int(rule["shots"], f"{where}.shots")
    for key in ("loss", "skip"):
        if key in rule and not isinstance(rule[key], bool):
            raise ImportFormatError(f"{where}.{key}: must be true or false")
    return out


def check_mapping(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate a parsed mapping (see the module docstring); returns a checked copy.

    Every problem is an :class:`ImportFormatError` naming ``where`` and the key."""
    if not isinstance(data, dict):
        raise ImportFormatError(f"mapping {where}: must be a mapping of keys to values")
    unknown = set(data) - MAPPING_KEYS - {"_path"}
    if unknown:
        raise ImportFormatError(
            f"mapping {where}: unknown key(s) {sorted(map(str, unknown))}; "
            f"known: {sorted(MAPPING_KEYS)}"
        )
    m = dict(data)
    m["_path"] = where
    for key in ("run", "run_name", "step", "tokens", "params", "checkpoint", "files"):
        if key in m and m[key] is not None and not isinstance(m[key], str):
            raise ImportFormatError(f"mapping {where}: '{key}' must be text, not {m[key]!r:.60}")
    if m.get("files") == "":
        raise ImportFormatError(f"mapping {where}: files is empty; give a glob such as '*.csv'")
    groups: set[str] = set()
    if m.get("filename") is not None:
        rx = _regex(m["filename"], f"mapping {where}: filename")
        m["filename"] = rx
        groups = set(rx.groupindex)
    if isinstance(m.get("run"), str) and "{" in m["run"]:
        missing = _template_fields(m["run"], f"mapping {where}: run") - groups
        if missing:
            raise ImportFormatError(
                f"mapping {where}: run template {m['run']!r} uses {sorted(missing)}, which the "
                f"filename pattern does not capture (its groups: {sorted(groups)})"
            )
    m["tokens_per_step"] = mapping_tokens_per_step(
        m.get("tokens_per_step"), f"mapping {where}: tokens_per_step"
    )
    by_step = m.get("tokens_by_step") or {}
    if not isinstance(by_step, dict):
        raise ImportFormatError(f"mapping {where}: tokens_by_step must map steps to tokens")
    m["tokens_by_step"] = {
        checked_int(k, f"mapping {where}: tokens_by_step key"): checked_int(
            v, f"mapping {where}: tokens_by_step.{k}"
        )
        for k, v in by_step.items()
    }
    m["shots"] = checked_int(m.get("shots"), f"mapping {where}: shots") or 0
    m["params_value"] = checked_int(m.get("params_value"), f"mapping {where}: params_value")
    cols = m.get("columns")
    if cols is None:
        return m
    if isinstance(cols, list) and cols:
        m["rules"] = [_check_rule(r, f"mapping {where}: columns[{i}]") for i, r in enumerate(cols)]
        m["columns"] = {}
    elif isinstance(cols, dict) and cols:
        checked = {}
        for col, spec in cols.items():
            if isinstance(spec, str):
                spec = {"task": spec}
            if not isinstance(spec, dict) or not isinstance(spec.get("task"), str):
                raise ImportFormatError(f"mapping {where}: columns.{col} needs a 'task'")
            bad = set(spec) - COLUMN_KEYS
            if bad:
                raise ImportFormatError(
                    f"mapping {where}: columns.{col} has unknown key(s) {sorted(bad)}"
                )
            spec = dict(spec)
            if "shots" in spec:
                spec["shots"] = checked_int(spec["shots"], f"mapping {where}: columns.{col}.shots")
            checked[str(col)] = spec
        m["columns"], m["rules"] = checked, []
    else:
        raise ImportFormatError(
            f"mapping {where}: 'columns' must map column names to {{task, metric}} or be a "
            "list of rules '- match: REGEX'"
        )
    return m


def load_mapping(path: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Read and check a wide-table mapping (a YAML path, or an already parsed dict)."""
    if isinstance(path, dict):
        return check_mapping(path, str(path.get("_path", "<mapping>")))
    p = Path(path)
    return check_mapping(read_yaml_mapping(p, "mapping file", ImportFormatError), str(p))


def id_columns(mapping: dict[str, Any], keys: tuple[str, ...] = ID_KEYS) -> tuple[str, ...]:
    """Columns the mapping uses for ``keys`` (default: run, step, tokens, params, checkpoint)."""
    return tuple(
        mapping[k] for k in keys if isinstance(mapping.get(k), str) and "{" not in mapping[k]
    )


def file_groups(path: Path, mapping: dict[str, Any]) -> dict[str, str]:
    """The ``filename`` pattern's named groups for ``path`` ({} without a pattern); raises
    :class:`FileNotMatched` when the name does not match."""
    rx = mapping.get("filename")
    if rx is None:
        return {}
    m = rx.fullmatch(path.name)
    if m is None:
        raise FileNotMatched(path.name)
    return {k: v for k, v in m.groupdict().items() if v is not None}


def _resolve(col: str, mapping: dict[str, Any]) -> dict[str, Any] | None:
    """The spec of one column: task, metric, shots, loss, stderr column (None: not matched)."""
    spec = mapping["columns"].get(col)
    if spec is not None:
        return dict(spec)
    for rule in mapping["rules"]:
        m = rule["match"].fullmatch(col)
        if m is None:
            continue
        if rule.get("skip"):
            return {"skip": True}
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        out = {k: v for k, v in rule.items() if k not in ("match",)}
        for key in ("task", "metric", "shots"):
            if key in g:
                out[key] = g[key]
        if "stderr" in rule:
            out["stderr"] = rule["stderr"].format(column=col, **m.groupdict(default=""))
        return out
    return None


def parse_wide(
    df: pd.DataFrame,
    path: Path,
    mapping: dict[str, Any],
    tax: Taxonomy,
    report: ImportReport,
    *,
    tokens_per_step: TokensPerStep = None,
    run: str | None = None,
    unmatched: set[str] | None = None,
    source: str | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Store rows and checkpoint metadata of one wide table under ``mapping``.

    Columns no rule matches are added to ``unmatched`` (the caller reports them once per
    mapping). Raises :class:`FileNotMatched` for a file name the ``filename`` pattern rejects.
    """
    mpath = mapping.get("_path", "<mapping>")
    source = source or str(path.resolve())
    groups = file_groups(path, mapping)
    for key in ID_KEYS:
        col = mapping.get(key)
        if isinstance(col, str) and "{" not in col and col not in df.columns:
            raise ImportFormatError(
                f"mapping {mpath}: {key} column {col!r} is not in {path} "
                f"(columns: {list(df.columns)[:20]})"
            )
    index = df.index
    run_spec = mapping.get("run")
    if run is not None:
        runs = pd.Series(run, index=index, dtype="string")
    elif isinstance(run_spec, str) and "{" in run_spec:
        names = mapping["filename"].groupindex if mapping.get("filename") else {}
        values = {
            name: groups.get(name, "") for name in names
        }  # a group that did not take part: ""
        runs = pd.Series(run_spec.format(**values), index=index, dtype="string")
    elif isinstance(run_spec, str):
        runs = df[run_spec].astype("string").str.strip()
    elif mapping.get("run_name"):
        runs = pd.Series(str(mapping["run_name"]), index=index, dtype="string")
    else:
        runs = pd.Series(path.stem, index=index, dtype="string")
    step = (
        int_column(df[mapping["step"]], mapping["step"], path)
        if mapping.get("step")
        else pd.Series(pd.NA, index=index, dtype="Int64")
    )
    ck = (
        df[mapping["checkpoint"]].astype("string")
        if mapping.get("checkpoint")
        else pd.Series(pd.NA, index=index, dtype="string")
    )
    if mapping.get("checkpoint"):
        from_ck = ck.str.extract(r"step[-_]?(\d+)", expand=False)
        step = step.fillna(int_column(from_ck, "step (from the checkpoint name)", path))
    tokens = (
        int_column(df[mapping["tokens"]], mapping["tokens"], path)
        if mapping.get("tokens")
        else pd.Series(pd.NA, index=index, dtype="Int64")
    )
    if mapping.get("tokens_by_step"):
        tokens = tokens.fillna(step.map(mapping["tokens_by_step"]).astype("Int64"))
    if mapping.get("params"):
        params = int_column(df[mapping["params"]], mapping["params"], path)
    else:
        pv = mapping.get("params_value")
        params = pd.Series(pv if pv is not None else pd.NA, index=index, dtype="Int64")
    ident = pd.DataFrame({"run": runs, "step": step, "tokens": tokens, "params": params})
    ident["checkpoint"] = ck.fillna(ident["run"] + "@step" + step.astype("string")).fillna(
        ident["run"]
    )
    ident["tokens"] = fill_tokens(
        ident, tokens_per_step, mapping.get("tokens_per_step"), report, path
    )
    if ident["params"].isna().any():
        sizes = {r: parse_size(r) for r in ident["run"].dropna().unique()}
        ident["params"] = ident["params"].fillna(ident["run"].map(sizes).astype("Int64"))
    if ident["run"].isna().any():
        i = int(np.flatnonzero(ident["run"].isna().to_numpy())[0])
        raise ImportFormatError(f"{row_label(path, i)}: empty run")

    used = set(id_columns(mapping))
    specs: dict[str, dict[str, Any]] = {}
    for col in df.columns:
        if col in used:
            continue
        spec = _resolve(str(col), mapping)
        if spec is None:
            if unmatched is not None:
                unmatched.add(str(col))
            continue
        if spec.get("skip"):
            continue
        specs[str(col)] = spec
    for col in mapping["columns"]:
        if col not in df.columns:
            raise ImportFormatError(
                f"mapping {mpath}: column {col!r} is not in {path} (columns: "
                f"{list(df.columns)[:20]})"
            )
    se_cols = {s["stderr"] for s in specs.values() if s.get("stderr")}
    for c in se_cols:
        if c not in df.columns:
            raise ImportFormatError(f"mapping {mpath}: stderr column {c!r} is not in {path}")
        specs.pop(c, None)
        if unmatched is not None:
            unmatched.discard(c)

    prov_base = {"source": source, "importer": PROBE, "format": "wide", "mapping": str(mpath)}
    chunks = []
    for col, spec in specs.items():
        values = pd.to_numeric(df[col], errors="coerce").astype("float64")
        keep = np.isfinite(values.to_numpy())
        if not keep.all():
            report.skip(
                path, f"column {col}", "NaN, empty or non-numeric value", count=int((~keep).sum())
            )
        if not keep.any():
            continue
        loss = bool(spec.get("loss"))
        shots = checked_int(spec.get("shots"), f"{path}: column {col}: shots")
        if shots is None:  # no shots in the rule (or an explicit null): the mapping's default
            shots = mapping.get("shots") or 0
        chunk = ident[keep].copy()
        chunk["task"] = str(spec["task"])
        chunk["metric"] = str(spec.get("metric") or ("ce_loss" if loss else "acc"))
        chunk["value"] = values[keep]
        chunk["stderr"] = (
            pd.to_numeric(df.loc[keep, spec["stderr"]], errors="coerce").astype("float64")
            if spec.get("stderr")
            else np.nan
        )
        chunk["shots"] = shots
        chunk["_loss"] = loss
        chunk["_cap"] = spec.get("capability")
        chunk["provenance"] = json.dumps(dict(prov_base, column=col, loss=loss), sort_keys=True)
        chunks.append(chunk)
    if not chunks:
        return pd.DataFrame(), []
    out = pd.concat(chunks, ignore_index=True)
    out["capability"] = capabilities(
        out["task"], out["metric"], out["_cap"].astype("string"), tax, report, out["_loss"]
    )
    out = out.drop(columns=["_loss", "_cap"]).assign(probe=PROBE, spec_hash=SPEC_HASH, n=pd.NA)
    metas = checkpoint_metas(out, {**groups, "imports": [prov_base]})
    return out, metas
