"""Signal and noise of each metric, and the monitoring advice built on them.

Signal-to-noise after Heineman et al. 2025, "Signal and Noise: A Framework for Reducing
Uncertainty in Language Model Evaluation" (arXiv 2508.13144), per task × metric × shots:

* each run's *final score* is the mean of its last ``last_n`` checkpoints (in a training window:
  its last ``last_n`` checkpoints inside the window);
* ``signal`` = (max − min of the runs' final scores) / |mean of the final scores| — the largest
  pairwise difference between runs, relative to the score level;
* ``noise`` = root mean square over runs of (sd of the run's last ``last_n`` checkpoints, ddof 1)
  / |its final score| — checkpoint-to-checkpoint jitter, relative to the score level;
* ``snr`` = signal / noise.

:func:`monitoring_advice` ranks metrics by SNR per training window and category and never
recommends one that is within noise of chance or below :data:`MIN_SNR`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..taxonomy import Taxonomy
from .curves import METRIC_KEYS, score_metric_of, training_windows, window_of

#: Below this signal-to-noise ratio a metric is not recommended: the spread between runs is
#: less than twice the checkpoint-to-checkpoint noise, so one checkpoint cannot rank runs.
MIN_SNR = 2.0
#: A run's final score is "above chance" when it exceeds chance by more than Z_CHANCE times its
#: noise: max(sd over the last checkpoints, the score's own stderr).
Z_CHANCE = 2.0

SNR_COLUMNS = [
    "window",
    "x_from",
    "x_to",
    "task",
    "metric",
    "shots",
    "capability",
    "lower_is_better",
    "n_runs",
    "last_n",
    "signal",
    "noise",
    "snr",
    "status",
    "reason",
]


def _windowed(mt: pd.DataFrame) -> pd.DataFrame:
    """``mt`` once per window: "final" (every checkpoint) and early / mid / late thirds of
    log-x (checkpoints at x = 0 belong to no third)."""
    wins = training_windows(mt["x"].to_numpy(float))
    parts = [mt.assign(window="final", x_from=np.nan, x_to=np.nan)]
    if wins:
        w = window_of(mt["x"], wins)
        bounds = {name: (lo, hi) for name, lo, hi in wins}
        inside = mt[w.notna()].assign(window=w[w.notna()])
        inside["x_from"] = inside["window"].map(lambda k: bounds[k][0])
        inside["x_to"] = inside["window"].map(lambda k: bounds[k][1])
        parts.append(inside)
    return pd.concat(parts, ignore_index=True)


def run_finals(mt: pd.DataFrame, last_n: int = 5) -> pd.DataFrame:
    """Per window × task × metric × shots × run: ``final`` (mean of the last ``last_n``
    checkpoints), ``sd`` (their standard deviation, ddof 1), ``n_points``, ``stderr`` (mean
    stderr of those checkpoints), ``chance``, ``capability``, ``params``, ``x_last``."""
    if last_n < 2:
        raise ValueError(f"last_n must be >= 2 to measure noise, not {last_n}")
    d = _windowed(mt)
    keys = ["window", *METRIC_KEYS, "run"]
    d = d.sort_values([*keys, "x"], kind="stable")
    pos = d.groupby(keys, sort=False).cumcount(ascending=False)
    last = d[pos < last_n]
    out = (
        last.groupby(keys, sort=False)
        .agg(
            final=("value", "mean"),
            sd=("value", "std"),
            n_points=("value", "size"),
            stderr=("stderr", "mean"),
            chance=("chance", "first"),
            capability=("category", "first"),
            lower_is_better=("lower_is_better", "first"),
            params=("params", "first"),
            x_last=("x", "max"),
            x_from=("x_from", "first"),
            x_to=("x_to", "first"),
        )
        .reset_index()
    )
    return out


def snr_table(finals: pd.DataFrame, last_n: int = 5) -> pd.DataFrame:
    """Signal, noise and SNR per window × task × metric × shots from :func:`run_finals`."""
    if finals.empty:
        return pd.DataFrame(columns=SNR_COLUMNS)
    f = finals.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (f["sd"] / f["final"].abs()) ** 2
    f["rel_noise2"] = rel.where(np.isfinite(rel))
    keys = ["window", *METRIC_KEYS]
    g = f.groupby(keys, sort=False)
    t = g.agg(
        x_from=("x_from", "first"),
        x_to=("x_to", "first"),
        capability=("capability", "first"),
        lower_is_better=("lower_is_better", "first"),
        n_runs=("run", "nunique"),
        hi=("final", "max"),
        lo=("final", "min"),
        mean=("final", "mean"),
        noise2=("rel_noise2", "mean"),
        noisy_runs=("rel_noise2", "count"),
    ).reset_index()
    with np.errstate(divide="ignore", invalid="ignore"):
        t["signal"] = (t["hi"] - t["lo"]) / t["mean"].abs()
        t["noise"] = np.sqrt(t["noise2"])
        t["snr"] = t["signal"] / t["noise"]
    t["last_n"] = last_n
    reason = np.select(
        [
            t["n_runs"] < 2,
            t["noisy_runs"] == 0,
            t["mean"] == 0,
            ~np.isfinite(t["snr"]),
        ],
        [
            "needs at least 2 runs to compare",
            f"no run has a nonzero final score over >= 2 of its last {last_n} checkpoints here",
            "mean final score is 0: relative signal undefined",
            "noise is 0 (no checkpoint-to-checkpoint variation)",
        ],
        default="",
    )
    t["reason"] = reason
    t["status"] = np.where(reason == "", "ok", "skipped")
    for col in ("signal", "noise", "snr"):
        t[col] = t[col].where(t["status"] == "ok")
    t["_w"] = t["window"].map({"final": 0, "early": 1, "mid": 2, "late": 3})
    t = t.sort_values(["_w", "snr"], ascending=[True, False], na_position="last")
    return t[SNR_COLUMNS].reset_index(drop=True)


def snr(mt: pd.DataFrame, last_n: int = 5) -> pd.DataFrame:
    """``snr.csv``: signal-to-noise per window × task × metric × shots of a
    :func:`~.curves.metric_table` (see the module docstring for the definitions)."""
    return snr_table(run_finals(mt, last_n), last_n)


def _declines(ph: pd.DataFrame | None) -> pd.DataFrame:
    """Peak-then-decline beyond noise per (task, shots), in words."""
    cols = ["task", "shots", "decline_note"]
    if ph is None or ph.empty or "peak_then_decline" not in ph:
        return pd.DataFrame(columns=cols)
    d = ph[(ph["level"] == "benchmark") & (ph["peak_then_decline"] == True)].copy()  # noqa: E712
    if d.empty:
        return pd.DataFrame(columns=cols)
    d["task"] = d["benchmark"].str.replace(r"@\d+shot$", "", regex=True)
    if "shots" not in d:
        d["shots"] = 0
    d["note"] = (
        d["run"].astype(str)
        + " (−"
        + d["decline"].map("{:.3f}".format)
        + ", "
        + (d["decline"] / d["decline_noise"]).map("{:.1f}".format)
        + "× its noise)"
    )
    out = d.groupby(["task", "shots"])["note"].agg("; ".join).reset_index()
    out["decline_note"] = "warning: peaks then declines beyond noise in " + out["note"]
    return out[cols]


ADVICE_COLUMNS = [
    "window",
    "x_from",
    "x_to",
    "category",
    "rank",
    "task",
    "metric",
    "shots",
    "snr",
    "signal",
    "noise",
    "runs_above_chance",
    "n_runs",
    "recommended",
    "warning",
    "reason",
]


def monitoring_advice(
    mt: pd.DataFrame,
    ph: pd.DataFrame | None = None,
    last_n: int = 5,
    top_k: int = 2,
    min_snr: float = MIN_SNR,
    z: float = Z_CHANCE,
    finals: pd.DataFrame | None = None,
    taxonomy: Taxonomy | None = None,
) -> pd.DataFrame:
    """Which metrics to watch, per training window (early / mid / late, and final) and category.

    Candidates: each benchmark's score metric and every loss-like metric, at each shot count.
    A candidate is *eligible* when its window SNR ≥ ``min_snr`` and at least one run's final
    score is above chance by more than ``z`` times its noise (no chance check for loss-like
    metrics or unknown chance). Eligible candidates are ranked by SNR; the first ``top_k`` per
    (window, category) are ``recommended``. ``warning`` carries a peak-then-decline beyond noise
    from the phases table ``ph``; every row's ``reason`` says why it is or is not recommended.
    ``taxonomy`` decides each benchmark's score metric (default: the built-in taxonomy).
    """
    if mt.empty:
        return pd.DataFrame(columns=ADVICE_COLUMNS)
    fin = finals if finals is not None else run_finals(mt, last_n)
    table = snr_table(fin, last_n)
    score = score_metric_of(mt, taxonomy).assign(_score=True)
    table = table.merge(score, on=["task", "metric"], how="left")
    table = table[
        table["_score"].fillna(False).astype(bool) | table["lower_is_better"].astype(bool)
    ]
    # runs clearly above chance, per window × metric
    f = fin.copy()
    noise_abs = np.fmax(f["sd"].fillna(0.0), f["stderr"].fillna(0.0))
    f["above"] = (f["final"] - f["chance"]) > z * noise_abs
    f["has_chance"] = f["chance"].notna() & ~f["lower_is_better"].astype(bool)
    above = (
        f.groupby(["window", *METRIC_KEYS])
        .agg(runs_above_chance=("above", "sum"), has_chance=("has_chance", "any"))
        .reset_index()
    )
    t = table.merge(above, on=["window", *METRIC_KEYS], how="left")
    t = t.merge(_declines(ph), on=["task", "shots"], how="left")
    t["warning"] = t["decline_note"].fillna("")
    t["at_chance"] = t["has_chance"].fillna(False).astype(bool) & (t["runs_above_chance"] == 0)
    t["low"] = ~(t["snr"] >= min_snr)
    t["eligible"] = (t["status"] == "ok") & ~t["at_chance"] & ~t["low"]
    t = t.rename(columns={"capability": "category"})
    t = t.sort_values(
        ["window", "category", "eligible", "snr"], ascending=[True, True, False, False]
    )
    t["rank"] = t.groupby(["window", "category"]).cumcount() + 1
    t["recommended"] = t["eligible"] & (t["rank"] <= top_k)
    t["rank"] = t["rank"].where(t["eligible"])
    snr_txt = (
        "SNR "
        + t["snr"].map("{:.1f}".format)
        + " (signal "
        + t["signal"].map("{:.3f}".format)
        + " across "
        + t["n_runs"].astype(str)
        + " runs, noise "
        + t["noise"].map("{:.3f}".format)
        + ")"
    )
    chance_txt = np.where(
        t["has_chance"].fillna(False).astype(bool),
        "; above chance in "
        + t["runs_above_chance"].fillna(0).astype(int).astype(str)
        + "/"
        + t["n_runs"].astype(str)
        + " runs",
        "",
    )
    t["reason"] = np.select(
        [
            t["status"] != "ok",
            t["at_chance"],
            t["low"],
            t["recommended"],
        ],
        [
            "not measurable: " + t["reason"].astype(str),
            "not recommended: within noise of chance in every run",
            "not recommended: " + snr_txt + f" below the threshold {min_snr:g}",
            "recommended: " + snr_txt + chance_txt,
        ],
        default="not recommended: ranked below the top " + str(top_k) + " by SNR; " + snr_txt,
    )
    t["_w"] = t["window"].map({"early": 0, "mid": 1, "late": 2, "final": 3})
    t = t.sort_values(
        ["_w", "category", "rank", "snr"],
        ascending=[True, True, True, False],
        na_position="last",
    )
    return t[ADVICE_COLUMNS].reset_index(drop=True)
