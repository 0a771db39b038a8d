"""``run_dynamics``: every dynamics analysis on one store table, written as CSV files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import ParameterError
from ..taxonomy import Taxonomy, load_taxonomy
from .agreement import (
    lead_lag,
    loss_agreement,
    sibling_prediction,
    size_agreement,
    trajectory_correlations,
)
from .cross_run import cross_run_agreement, decision_accuracy, size_order
from .curves import (
    CURVE_KEYS,
    curves,
    loss_series,
    loss_table,
    metric_table,
    run_sizes,
    score_table,
    select_rows,
    sort_by_size,
    x_column,
)
from .fits import fit_curves
from .phases import phases
from .signal import monitoring_advice, run_finals, snr_table

#: The tables :func:`run_dynamics` returns and writes, in order.
TABLES = (
    "curves",
    "fits",
    "phases",
    "correlations",
    "sibling_prediction",
    "lead_lag",
    "size_agreement",
    "size_order",
    "loss_agreement",
    "snr",
    "recommendations",
    "cross_run",
    "decision_accuracy",
)


def run_dynamics(
    df: pd.DataFrame,
    out_dir: str | Path | None,
    taxonomy: Taxonomy | str | Path | None = None,
    x: str = "tokens",
    *,
    runs: str | list[str] | None = None,
    shots: int | list[int] | None = None,
    tasks: str | list[str] | None = None,
    last_n: int = 5,
    target: str | None = None,
    x_tolerance: float = 0.0,
    top_k: int = 2,
) -> dict[str, pd.DataFrame]:
    """Run every dynamics analysis on the tidy table and write ``<name>.csv`` into ``out_dir``.

    ``runs`` / ``tasks`` (globs) and ``shots`` select rows first (:func:`~.curves.select_rows`);
    ``last_n`` is the number of final checkpoints averaged for SNR; ``target`` ("TASK:METRIC")
    the decision-accuracy target; ``x_tolerance`` how runs' x values are matched across runs
    (:func:`~.cross_run.match_x`). Returns {name: DataFrame} for the names in :data:`TABLES`;
    tables that list runs are sorted by run size, then name. ``out_dir=None`` writes nothing.
    ``taxonomy`` may be a :class:`Taxonomy` or the path of a user YAML.
    """
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    xcol = x_column(x)
    if last_n < 2:
        raise ParameterError(f"--last-n must be >= 2 (noise needs two checkpoints), not {last_n}")
    if not df.empty and df[xcol].isna().all():
        other = "step" if xcol == "tokens" else "tokens"
        hint = " (import with --tokens-per-step to get tokens)" if xcol == "tokens" else ""
        raise ParameterError(
            f"no row has a '{xcol}' value, so nothing can be placed on the x axis; "
            f"use x='{other}'{hint}"
        )
    if not df.empty:
        df = select_rows(df, runs=runs, shots=shots, tasks=tasks, taxonomy=tax)
    mt = metric_table(df, tax, xcol)
    st = score_table(df, tax, xcol, metrics=mt)
    cv = curves(df, tax, xcol, scores=st)
    ph = phases(cv) if not cv.empty else pd.DataFrame(columns=[*CURVE_KEYS, "status", "reason"])
    lt = loss_table(df, tax, xcol)
    ls = loss_series(df, tax, xcol)
    finals = run_finals(mt, last_n) if not mt.empty else None
    tables: dict[str, Any] = {
        "curves": cv,
        "fits": fit_curves(cv),
        "phases": ph,
        "correlations": trajectory_correlations(cv),
        "sibling_prediction": sibling_prediction(cv),
        "lead_lag": lead_lag(ph),
        "size_agreement": size_agreement(cv),
        "size_order": size_order(mt),
        "loss_agreement": loss_agreement(cv, lt),
        "snr": snr_table(finals, last_n) if finals is not None else snr_table(pd.DataFrame()),
        "recommendations": monitoring_advice(
            mt, ph, last_n, top_k=top_k, finals=finals, taxonomy=tax
        ),
        "cross_run": cross_run_agreement(mt, ls, x_tolerance=x_tolerance),
        "decision_accuracy": decision_accuracy(mt, ls, target=target, x_tolerance=x_tolerance),
    }
    sizes = run_sizes(df)
    for name in (
        "curves",
        "fits",
        "phases",
        "correlations",
        "sibling_prediction",
        "lead_lag",
        "loss_agreement",
    ):
        tables[name] = sort_by_size(tables[name], sizes)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            tables[name].to_csv(out / f"{name}.csv", index=False)
    return {name: tables[name] for name in TABLES}
