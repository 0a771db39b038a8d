"""Does the ground truth itself separate the models? The signal of the SFT scores.

A proxy can only be right about differences the fine-tuning scores can see. For each target
(``sft:<task>``) over the models of the pool:

* ``var_between`` — the sample variance (ddof = 1) of the models' SFT scores;
* ``mean_sq_stderr`` — the mean over models of the squared standard error of each score (the
  ``stderr`` the fine-tuning runner stores: over test items, and over seeds where repeated);
* ``ratio`` = var_between / mean_sq_stderr. If every model had the same true score, the observed
  scores would differ by noise alone and the ratio would be about 1.

A target whose ratio is below :data:`MIN_SIGNAL_RATIO` (4) is *within noise*: its proxy and
comparator accuracies are marked not meaningful (``ground_truth`` column ``within noise``).
Without stored standard errors the ratio is unknown (``ground_truth`` = ``stderr unknown``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ...probes.registry import SFT

#: variance ratio below which a target's ground truth is called within noise
MIN_SIGNAL_RATIO = 4.0

SIGNAL_COLUMNS = [
    "target",
    "task",
    "metric",
    "n_models",
    "mean_score",
    "var_between",
    "mean_sq_stderr",
    "ratio",
    "ground_truth",
]


def _verdict(ratio: float, min_ratio: float) -> str:
    if not np.isfinite(ratio):
        return "stderr unknown"
    return "separates models" if ratio >= min_ratio else "within noise"


def ground_truth_signal(
    rows: pd.DataFrame,
    models: Iterable[str] | None = None,
    *,
    min_ratio: float = MIN_SIGNAL_RATIO,
) -> pd.DataFrame:
    """Per fine-tuning target: between-model variance of the SFT scores vs their mean squared
    standard error (module docstring). Columns: :data:`SIGNAL_COLUMNS`.

    Args:
        rows: the store's tidy rows; the ``sft`` probe's ``score`` rows (task level, target
            ``sft:<task>``) and per-dataset ``acc`` rows (``sft:<task>/<dataset>``) are used.
        models: checkpoints to restrict to (the pairwise pool); default every checkpoint.
        min_ratio: threshold of the ``ground_truth`` verdict.
    """
    if rows.empty or "probe" not in rows.columns:
        return pd.DataFrame(columns=SIGNAL_COLUMNS)
    sft = rows[rows["probe"] == SFT]
    sft = sft[
        (sft["metric"] == "score")
        | ((sft["metric"] == "acc") & sft["task"].astype(str).str.contains("/", regex=False))
    ]
    if models is not None:
        sft = sft[sft["checkpoint"].isin(set(models))]
    if sft.empty:
        return pd.DataFrame(columns=SIGNAL_COLUMNS)
    if "created_at" in sft.columns:
        sft = sft.sort_values("created_at", kind="stable")
    sft = sft.drop_duplicates(["checkpoint", "task", "metric"], keep="last")
    se = sft["stderr"] if "stderr" in sft.columns else pd.Series(np.nan, index=sft.index)
    sft = sft.assign(value=sft["value"].astype(float), se2=pd.to_numeric(se).astype(float) ** 2)
    g = sft.groupby(["task", "metric"], sort=True)
    out = pd.DataFrame(
        {
            "n_models": g["value"].count(),
            "mean_score": g["value"].mean(),
            "var_between": g["value"].var(ddof=1),
            # a missing stderr on any model makes the mean unknown (NaN), never optimistic
            "mean_sq_stderr": g["se2"].agg(lambda s: s.mean() if s.notna().all() else np.nan),
        }
    ).reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["ratio"] = np.where(
            out["mean_sq_stderr"] > 0, out["var_between"] / out["mean_sq_stderr"], np.nan
        )
    out["ratio"] = out["ratio"].astype(float)
    out["target"] = "sft:" + out["task"].astype(str)
    out["ground_truth"] = [_verdict(r, min_ratio) for r in out["ratio"]]
    return out[SIGNAL_COLUMNS].reset_index(drop=True)


def mark_ground_truth(frame: pd.DataFrame, signal: pd.DataFrame | None) -> pd.DataFrame:
    """``frame`` (a table with a ``target`` column) with ``ground_truth_ratio`` and
    ``ground_truth`` columns from ``signal``; ``meaningful`` is False where the target's ground
    truth is within noise. Targets absent from ``signal`` get ``ground_truth`` = ``unknown``."""
    out = frame.copy()
    if "target" not in out.columns:
        return out
    sig = signal.set_index("target") if signal is not None and len(signal) else None
    if sig is None:
        out["ground_truth_ratio"] = np.nan
        out["ground_truth"] = "unknown"
    else:
        out["ground_truth_ratio"] = out["target"].map(sig["ratio"]).astype(float)
        out["ground_truth"] = out["target"].map(sig["ground_truth"]).fillna("unknown")
    out["meaningful"] = out["ground_truth"] != "within noise"
    return out
