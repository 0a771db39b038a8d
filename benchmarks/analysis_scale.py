"""How `ckpt dynamics` scales with the rows of a store (the dynamics half;
the pairwise half is ``benchmarks/pairwise_scale.py``).

Synthetic stores of about 100k and 1M rows are made by relabelling the real Pythia evaluations
(4 sizes × 27 checkpoints, about 18.5k rows): copy k of run ``R`` becomes run ``R#k`` with the
same parameters and checkpoints and its values jittered by a tiny amount (so copies do not tie).
Each stage of :func:`~ckpt_toolkit.analysis.dynamics.run_dynamics` is then timed on its own.

Usage::

    python benchmarks/analysis_scale.py                  # 100k and 1M rows
    python benchmarks/analysis_scale.py --rows 100000
    python benchmarks/analysis_scale.py --source store.duckdb   # relabel another store's rows

Without ``--source`` the Pythia rows come from ``tests/data/pythia_evals.parquet`` (rebuilt as
lm-eval JSON and imported, as the tests do).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ckpt_toolkit.analysis import dynamics as D
from ckpt_toolkit.analysis.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[1]


def pythia_rows(source: Path | None) -> pd.DataFrame:
    """The tidy rows to relabel: a store (``.duckdb``), an lm-eval folder, or the tests' subset."""
    from ckpt_toolkit.importers import import_lm_eval
    from ckpt_toolkit.store import ResultsStore

    with tempfile.TemporaryDirectory() as tmp:
        if source is not None and source.suffix == ".duckdb":
            return ResultsStore(source, read_only=True).to_pandas()
        if source is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from conftest import write_pythia_evals

            source = write_pythia_evals(Path(tmp) / "evals")
        store = ResultsStore(Path(tmp) / "s.duckdb")
        import_lm_eval(source, store, progress=False)
        return store.to_pandas()


def relabelled(base: pd.DataFrame, n_rows: int, seed: int = 0) -> pd.DataFrame:
    """About ``n_rows`` rows: copies of ``base`` with runs renamed ``R#k`` and values jittered."""
    rng = np.random.default_rng(seed)
    k = max(1, round(n_rows / len(base)))
    parts = []
    for i in range(k):
        c = base.copy()
        c["run"] = c["run"] + f"#{i}"
        c["checkpoint"] = c["checkpoint"] + f"#{i}"
        c["value"] = c["value"] * (1 + rng.normal(0, 1e-3, len(c)))
        parts.append(c)
    return pd.concat(parts, ignore_index=True)


def timed(name: str, fn: Callable[[], Any], times: dict[str, float]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    times[name] = time.perf_counter() - t0
    return out


def stages(df: pd.DataFrame) -> dict[str, float]:
    """Seconds per stage of the dynamics pipeline on ``df``."""
    tax = load_taxonomy()
    t: dict[str, float] = {}
    mt = timed("metric_table", lambda: D.metric_table(df, tax), t)
    st = timed("score_table", lambda: D.score_table(df, tax, metrics=mt), t)
    cv = timed("curves (LOWESS)", lambda: D.curves(df, tax, scores=st), t)
    ph = timed("phases", lambda: D.phases(cv), t)
    timed("fits", lambda: D.fit_curves(cv), t)
    timed("correlations", lambda: D.trajectory_correlations(cv), t)
    timed("sibling_prediction", lambda: D.sibling_prediction(cv), t)
    timed("lead_lag", lambda: D.lead_lag(ph), t)
    timed("size_agreement", lambda: D.size_agreement(cv), t)
    lt = timed("loss_table", lambda: D.loss_table(df, tax), t)
    ls = timed("loss_series", lambda: D.loss_series(df, tax), t)
    timed("loss_agreement", lambda: D.loss_agreement(cv, lt), t)
    fin = timed("snr: run finals", lambda: D.run_finals(mt), t)
    timed("snr: table", lambda: D.snr_table(fin), t)
    timed("recommendations", lambda: D.monitoring_advice(mt, ph, finals=fin), t)
    timed("cross_run", lambda: D.cross_run_agreement(mt, ls), t)
    timed("decision_accuracy", lambda: D.decision_accuracy(mt, ls), t)
    timed("size_order", lambda: D.size_order(mt), t)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--source", type=Path, default=None, help="store (.duckdb) or lm-eval folder")
    args = ap.parse_args()
    base = pythia_rows(args.source)
    results = {}
    for n in args.rows:
        df = relabelled(base, n)
        print(f"{len(df):,} rows, {df['run'].nunique()} runs ...", flush=True)
        results[len(df)] = stages(df)
    table = pd.DataFrame(results)
    table.loc["total"] = table.sum()
    table.columns = [f"{c:,} rows (s)" for c in table.columns]
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
