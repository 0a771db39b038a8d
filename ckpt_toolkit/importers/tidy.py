"""Tidy tables (CSV or Parquet): one row per checkpoint x task x metric, checked and converted
column by column (vectorised: the cost per row is a few array operations, not Python code).

Required columns: ``task, metric, value`` and ``run`` or ``checkpoint``; optional: ``step,
tokens, params, stderr, n, shots, capability, probe``. A value that is empty, NaN or not a number
skips its row (reported). A bad identity cell — ``step`` of ``1.7`` or ``ten``, text in
``stderr``/``shots``/``n``, negative shots, a number beyond 2^63 — refuses the file with an
:class:`ImportFormatError` naming the file, the row and the value: nothing wrong is stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.taxonomy import Taxonomy
from ..errors import ImportFormatError
from ..probes.registry import IMPORT
from ..specs import spec_hash
from .columns import float_column, int_column, row_label
from .common import ImportReport, parse_size
from .tokens import TokensPerStep, tokens_per_step_for

PROBE = IMPORT
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
#: Columns read as text from a CSV (names, not numbers).
TEXT_COLUMNS = ("run", "checkpoint", "task", "metric", "capability", "probe")
#: Whole-number columns: read as numbers, re-read as text when a float could be inexact.
INT_COLUMNS = ("step", "tokens", "params", "n", "shots")
SPEC_HASH = spec_hash({"importer": PROBE})


def is_tidy(columns: Any) -> bool:
    """Whether a table with these columns is a tidy table (else it is wide)."""
    cols = set(columns)
    return set(TIDY_REQUIRED) <= cols and bool({"run", "checkpoint"} & cols)


def _text(s: pd.Series) -> pd.Series:
    out = s.astype("string").str.strip()
    return out.mask(out == "")


def capabilities(
    tasks: pd.Series,
    metrics: pd.Series,
    given: pd.Series | None,
    tax: Taxonomy,
    report: ImportReport,
    loss: pd.Series | None = None,
) -> pd.Series:
    """Taxonomy category per row, computed once per distinct (task, metric, capability):
    a row's own capability label wins; loss series of unknown tasks are language modelling;
    tasks still in "other" are listed in the report."""
    keys = pd.DataFrame(
        {
            "task": tasks.astype("string"),
            "metric": metrics.astype("string"),
            "cap": given.astype("string") if given is not None else pd.NA,
            "loss": loss if loss is not None else False,
        }
    )
    cols = ["task", "metric", "cap", "loss"]
    codes = keys.groupby(cols, sort=False, dropna=False).ngroup().to_numpy()
    uniq = keys.drop_duplicates(cols)
    cats = []
    for task, metric, cap, is_loss in uniq.itertuples(index=False):
        task, metric = str(task), str(metric)
        cap = None if cap is pd.NA or cap is None else str(cap)
        if cap is not None:
            cat = tax.category_of_capability(cap)
        else:
            info = tax.lookup(task)
            cat = info.category
            if not info.known and (bool(is_loss) or tax.is_loss_series(task, metric)):
                cat = "language_modeling"
        if cat == "other":
            report.note_other(task, cap is not None or tax.lookup(task).known)
        cats.append(cat)
    return pd.Series(np.asarray(cats, dtype=object)[codes], index=tasks.index, dtype="string")


def fill_tokens(
    frame: pd.DataFrame,
    tokens_per_step: TokensPerStep,
    from_mapping: TokensPerStep,
    report: ImportReport,
    path: Path,
) -> pd.Series:
    """Tokens per row: as read, else step x tokens per step of the run (a warning per run whose
    tokens were assumed from a family default or stay unknown)."""
    tokens = frame["tokens"].astype("Int64")
    need = tokens.isna() & frame["step"].notna()
    if not need.any():
        return tokens
    tps = {}
    for run in frame.loc[need, "run"].unique():
        n, warning = tokens_per_step_for(str(run), tokens_per_step, from_mapping)
        if warning:
            report.warn(warning)
        tps[run] = n
    per_row = frame.loc[need, "run"].map(tps).astype("float64")
    steps = frame.loc[need, "step"].astype("float64")
    prod = steps * per_row
    if (prod >= 2.0**63).any():
        i = int(np.flatnonzero((prod >= 2.0**63).to_numpy())[0])
        raise ImportFormatError(
            f"{path}: tokens = step x tokens per step is beyond 2^63 for run "
            f"{frame.loc[need, 'run'].iloc[i]!r}"
        )
    exact = frame.loc[need, "step"].astype("Int64") * per_row.astype("Int64")
    tokens.loc[need] = exact
    return tokens


def checkpoint_metas(frame: pd.DataFrame, extra_config: dict[str, Any]) -> list[dict[str, Any]]:
    """One metadata record per checkpoint of ``frame`` (run, step, tokens, params, config)."""
    first = frame.drop_duplicates("checkpoint", keep="last")
    out = []
    for rec in first[["checkpoint", "run", "step", "tokens", "params"]].to_dict(orient="records"):
        rec = {
            k: (None if v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v)
            for k, v in rec.items()
        }
        rec["config"] = json.loads(json.dumps(extra_config, default=str))
        out.append(rec)
    return out


def parse_tidy(
    df: pd.DataFrame,
    path: Path,
    tax: Taxonomy,
    report: ImportReport,
    *,
    tokens_per_step: TokensPerStep = None,
    default_shots: int = 0,
    source: str | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Store rows and checkpoint metadata from a tidy table (see the module docstring)."""
    missing = [c for c in TIDY_REQUIRED if c not in df.columns]
    if missing:
        raise ImportFormatError(
            f"{path}: tidy table lacks column(s) {missing}; it has "
            f"{list(df.columns)[:20]} (a wide table needs --mapping)"
        )
    if "run" not in df.columns and "checkpoint" not in df.columns:
        raise ImportFormatError(f"{path}: tidy table needs a 'run' or 'checkpoint' column")
    for c in df.columns:
        if c not in TIDY_REQUIRED + TIDY_OPTIONAL:
            report.skip(path, f"column {c}", "unknown column in a tidy table (ignored)")
    source = source or str(path.resolve())
    col = {
        c: (df[c] if c in df.columns else pd.Series(pd.NA, index=df.index))
        for c in TIDY_REQUIRED + TIDY_OPTIONAL
    }

    value = pd.to_numeric(col["value"], errors="coerce").astype("float64")
    keep = np.isfinite(value.to_numpy())
    if not keep.all():
        bad = np.flatnonzero(~keep)
        cell = df["value"].iloc[int(bad[0])]
        shown = "empty" if pd.isna(cell) else repr(cell.item() if hasattr(cell, "item") else cell)
        report.skip(
            path,
            f"{row_label(path, int(bad[0]))} value {shown}",
            "NaN, empty or non-numeric value",
            count=len(bad),
        )
    task, metric = _text(col["task"]), _text(col["metric"])
    for name, s in (("task", task), ("metric", metric)):
        miss = s.isna().to_numpy(dtype=bool) & keep
        if miss.any():
            raise ImportFormatError(f"{row_label(path, int(np.flatnonzero(miss)[0]))}: no {name}")
    step = int_column(col["step"], "step", path) if "step" in df.columns else None
    ck = _text(col["checkpoint"])
    run = _text(col["run"])
    if "run" not in df.columns or run.isna().any():
        run = run.fillna(ck.str.split("@", n=1).str[0])
    miss = run.isna().to_numpy(dtype=bool) & keep
    if miss.any():
        raise ImportFormatError(
            f"{row_label(path, int(np.flatnonzero(miss)[0]))}: no run (and no checkpoint to "
            "take it from)"
        )
    if step is None:
        step = pd.Series(pd.NA, index=df.index, dtype="Int64")
    from_ck = ck.str.extract(r"step[-_]?(\d+)", expand=False)
    if from_ck.notna().any():
        step = step.fillna(int_column(from_ck, "step (from the checkpoint name)", path))
    ck = ck.fillna(run + "@step" + step.astype("string")).fillna(run)
    out = pd.DataFrame(
        {
            "run": run,
            "checkpoint": ck,
            "step": step,
            "tokens": int_column(col["tokens"], "tokens", path),
            "params": int_column(col["params"], "params", path),
        }
    )
    out["tokens"] = fill_tokens(out, tokens_per_step, None, report, path)
    missing_params = out["params"].isna()
    if missing_params.any():
        sizes = {r: parse_size(r) for r in out.loc[missing_params, "run"].unique()}
        out.loc[missing_params, "params"] = (
            out.loc[missing_params, "run"].map(sizes).astype("Int64")
        )
    probe = _text(col["probe"]).fillna(PROBE)
    shots = int_column(col["shots"], "shots", path).fillna(default_shots)
    out = out.assign(
        probe=probe,
        task=task,
        metric=metric,
        value=value,
        stderr=float_column(col["stderr"], "stderr", path),
        n=int_column(col["n"], "n", path),
        shots=shots.astype("int64"),
        spec_hash=SPEC_HASH,
    )
    out = out[keep].reset_index(drop=True)
    given_cap = _text(col["capability"])[keep].reset_index(drop=True)
    out["capability"] = capabilities(out["task"], out["metric"], given_cap, tax, report)
    prov = {"source": source, "importer": PROBE, "format": "tidy"}
    out["provenance"] = json.dumps(prov, sort_keys=True)
    metas = checkpoint_metas(out, {"imports": [prov]})
    return out, metas
