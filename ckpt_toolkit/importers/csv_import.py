"""Import results from CSV: a tidy table (one row per checkpoint x task x metric) or a wide
table (one row per checkpoint, one column per metric) described by a small YAML mapping.

Wide mapping YAML::

    run: model            # column holding the run name (or `run_name: my-run` for a constant)
    step: step            # column holding the training step
    tokens: tokens        # optional column of tokens seen; else tokens_per_step / tokens_by_step
    params: params        # optional column (or `params_value: 1.4e9`; else parsed from the run)
    tokens_per_step: 2097152
    tokens_by_step: {1000: 2097152000}
    shots: 0
    columns:
      arc_easy_acc: {task: arc_easy, metric: acc, stderr: arc_easy_acc_se}
      piqa: {task: piqa}            # metric defaults to "acc"
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.taxonomy import Taxonomy, load_taxonomy
from ..errors import ImportFormatError
from ..specs import spec_hash
from ..store import ResultsStore
from ..yamlfiles import read_yaml_mapping
from .common import ImportReport, as_number, checkpoint_name, parse_size, parse_step

PROBE = "import"
TIDY_REQUIRED = ("task", "metric", "value")
TIDY_OPTIONAL = (
    "run",
    "checkpoint",
    "step",
    "tokens",
    "params",
    "stderr",
    "n",
    "shots",
    "capability",
    "probe",
)
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
}


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ImportFormatError(f"CSV file not found: {path}")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"{path} is not a readable CSV: {exc}") from None


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read and check a wide-CSV mapping YAML; raises :class:`ImportFormatError` naming the key."""
    p = Path(path)
    data = read_yaml_mapping(p, "mapping file", ImportFormatError)
    unknown = set(data) - MAPPING_KEYS
    if unknown:
        raise ImportFormatError(
            f"mapping {p}: unknown key(s) {sorted(unknown)}; known: {sorted(MAPPING_KEYS)}"
        )
    cols = data.get("columns")
    if not isinstance(cols, dict) or not cols:
        raise ImportFormatError(f"mapping {p}: 'columns' must map CSV columns to {{task, metric}}")
    for col, spec in cols.items():
        if isinstance(spec, str):
            cols[col] = {"task": spec}
        elif not isinstance(spec, dict) or "task" not in spec:
            raise ImportFormatError(f"mapping {p}: columns.{col} needs a 'task'")
    data["_path"] = str(p)
    return data


def _tokens(step: int | None, row_tokens: Any, mapping: dict[str, Any]) -> int | None:
    t = as_number(row_tokens)
    if t is not None:
        return int(t)
    if step is None:
        return None
    by_step = mapping.get("tokens_by_step") or {}
    if step in by_step or str(step) in by_step:
        return int(float(by_step.get(step, by_step.get(str(step)))))
    tps = mapping.get("tokens_per_step")
    return int(step * float(tps)) if tps else None


def _base_row(
    path: Path,
    run: str,
    step: int | None,
    tokens: int | None,
    params: Any,
    checkpoint: str | None,
    layout: str,
) -> dict[str, Any]:
    p = as_number(params)
    return {
        "run": run,
        "checkpoint": checkpoint or checkpoint_name(run, step),
        "step": step,
        "tokens": tokens,
        "params": int(p) if p is not None else parse_size(run),
        "provenance": {"source": str(path.resolve()), "importer": PROBE, "layout": layout},
    }


def parse_tidy_csv(
    df: pd.DataFrame,
    path: Path,
    tax: Taxonomy,
    report: ImportReport,
    mapping: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows from a tidy CSV (columns: task, metric, value and run/checkpoint, step, tokens, ...)."""
    mapping = mapping or {}
    missing = [c for c in TIDY_REQUIRED if c not in df.columns]
    if missing:
        raise ImportFormatError(
            f"{path}: tidy CSV lacks column(s) {missing}; it has "
            f"{list(df.columns)} (a wide CSV needs --mapping)"
        )
    if "run" not in df.columns and "checkpoint" not in df.columns:
        raise ImportFormatError(f"{path}: tidy CSV needs a 'run' or 'checkpoint' column")
    unknown = [c for c in df.columns if c not in TIDY_REQUIRED + TIDY_OPTIONAL]
    for c in unknown:
        report.skip(path, f"column {c}", "unknown column in a tidy CSV (ignored)")
    rows = []
    for i, rec in enumerate(df.to_dict(orient="records")):
        where = f"{path}: row {i + 2}"
        ck = rec.get("checkpoint")
        ck = None if ck is None or (isinstance(ck, float) and math.isnan(ck)) else str(ck)
        run = rec.get("run")
        run = str(run) if isinstance(run, str) else (ck.split("@")[0] if ck else None)
        if not run:
            raise ImportFormatError(f"{where}: no run (and no checkpoint to take it from)")
        st = as_number(rec.get("step"))
        step = int(st) if st is not None else parse_step(ck)
        value = as_number(rec.get("value"))
        task, metric = str(rec["task"]), str(rec["metric"])
        if value is None:
            report.skip(path, f"row {i + 2} {task}/{metric}", "NaN or non-numeric value")
            continue
        row = _base_row(
            path,
            run,
            step,
            _tokens(step, rec.get("tokens"), mapping),
            rec.get("params"),
            ck,
            "tidy",
        )
        cap = rec.get("capability")
        sh = as_number(rec.get("shots"))
        n = as_number(rec.get("n"))
        probe = rec.get("probe")
        row.update(
            probe=str(probe) if isinstance(probe, str) else PROBE,
            task=task,
            metric=metric,
            value=value,
            stderr=as_number(rec.get("stderr")),
            n=None if n is None else int(n),
            shots=int(sh) if sh is not None else int(mapping.get("shots", 0) or 0),
            capability=tax.category_of_capability(cap)
            if isinstance(cap, str)
            else tax.lookup(task).category,
        )
        rows.append(row)
    return rows


def parse_wide_csv(
    df: pd.DataFrame, path: Path, mapping: dict[str, Any], tax: Taxonomy, report: ImportReport
) -> list[dict[str, Any]]:
    """Rows from a wide CSV (one row per checkpoint) using a mapping from :func:`load_mapping`."""
    mpath = mapping.get("_path", "<mapping>")
    id_cols = {mapping.get(k) for k in ("run", "step", "tokens", "params", "checkpoint")} - {None}
    for k in ("run", "step", "tokens", "params", "checkpoint"):
        col = mapping.get(k)
        if col is not None and col not in df.columns:
            raise ImportFormatError(
                f"mapping {mpath}: {k} column {col!r} is not in {path} "
                f"(columns: {list(df.columns)})"
            )
    if mapping.get("run") is None and not mapping.get("run_name"):
        raise ImportFormatError(f"mapping {mpath}: give 'run' (a column) or 'run_name'")
    cols = mapping["columns"]
    for col, spec in cols.items():
        for c in (col, spec.get("stderr")):
            if c is not None and c not in df.columns:
                raise ImportFormatError(
                    f"mapping {mpath}: column {c!r} is not in {path} (columns: {list(df.columns)})"
                )
    se_cols = {spec.get("stderr") for spec in cols.values()} - {None}
    for c in df.columns:
        if c not in cols and c not in id_cols and c not in se_cols:
            report.skip(path, f"column {c}", "not in the mapping (ignored)")
    rows = []
    for i, rec in enumerate(df.to_dict(orient="records")):
        run = str(rec[mapping["run"]]) if mapping.get("run") else str(mapping["run_name"])
        ck = rec.get(mapping["checkpoint"]) if mapping.get("checkpoint") else None
        st = as_number(rec.get(mapping["step"])) if mapping.get("step") else None
        step = int(st) if st is not None else parse_step(ck)
        tokens = _tokens(
            step, rec.get(mapping["tokens"]) if mapping.get("tokens") else None, mapping
        )
        params = (
            rec.get(mapping["params"]) if mapping.get("params") else mapping.get("params_value")
        )
        for col, spec in cols.items():
            value = as_number(rec[col])
            if value is None:
                report.skip(path, f"row {i + 2} {col}", "NaN or non-numeric value")
                continue
            row = _base_row(path, run, step, tokens, params, ck, "wide")
            row["provenance"]["column"] = col
            task = str(spec["task"])
            row.update(
                probe=PROBE,
                task=task,
                metric=str(spec.get("metric", "acc")),
                value=value,
                stderr=as_number(rec[spec["stderr"]]) if spec.get("stderr") else None,
                shots=int(spec.get("shots", mapping.get("shots", 0)) or 0),
                capability=tax.category_of_capability(spec["capability"])
                if spec.get("capability")
                else tax.lookup(task).category,
            )
            rows.append(row)
    return rows


def import_csv(
    path: str | Path,
    store: ResultsStore | str | Path,
    *,
    mapping: str | Path | dict[str, Any] | None = None,
    taxonomy: Taxonomy | None = None,
) -> ImportReport:
    """Import a tidy CSV, or a wide CSV with a ``mapping`` (YAML path or dict), into ``store``.

    Rows get probe ``"import"`` (tidy rows may name their own ``probe``), the category from the
    taxonomy as capability, and provenance naming the source file. Re-import replaces rows.
    """
    p = Path(path)
    tax = taxonomy or load_taxonomy()
    df = _read_csv(p)
    report = ImportReport(files=[str(p)])
    if mapping is not None:
        m = load_mapping(mapping) if not isinstance(mapping, dict) else dict(mapping)
    else:
        m = None
    if m is not None and "columns" in m:
        rows = parse_wide_csv(df, p, m, tax, report)
    else:
        rows = parse_tidy_csv(df, p, tax, report, m)
    by_key: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        r["spec_hash"] = spec_hash({"importer": PROBE})
        k = (r["checkpoint"], r["probe"], r["task"], r["metric"], r["shots"])
        if k in by_key:
            report.skip(
                p,
                f"{r['checkpoint']} {r['task']}/{r['metric']}",
                "duplicate row (the later one wins)",
            )
        by_key[k] = r
    metas = {}
    for r in by_key.values():
        metas[r["checkpoint"]] = {
            k: r[k] for k in ("checkpoint", "run", "step", "tokens", "params")
        }
        metas[r["checkpoint"]]["config"] = {"source": str(p.resolve())}
    report.checkpoints = list(metas)
    report.runs = sorted({m_["run"] for m_ in metas.values()})
    report.rows_written = (
        ResultsStore(store).upsert(list(by_key.values()), metas.values())
        if not isinstance(store, ResultsStore)
        else store.upsert(list(by_key.values()), metas.values())
    )
    return report
