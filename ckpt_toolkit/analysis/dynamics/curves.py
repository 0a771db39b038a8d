"""Capability dynamics over pretraining (paper 2: "The Fine Line", arXiv 2404.01204).

Pure functions over the store's tidy table (``ResultsStore.to_pandas()``); nothing here loads a
model. The pipeline:

1. :func:`score_table` — one score per (run, checkpoint, benchmark): the benchmark's score metric,
   group members averaged (57 MMLU subjects → ``mmlu``), chance-normalised
   ``norm = (s − chance) / (1 − chance)`` with ``norm_stderr = stderr / (1 − chance)``.
2. :func:`curves` — benchmark and category curves vs tokens (or steps) with LOWESS smoothing on
   log-x; category curves average their benchmarks' normalised scores (as in the paper, categories are
   compared on normalised averages).
3. :func:`phases`, :func:`fit_curves` (``dynamics_fits``) and the agreement analyses in
   ``dynamics_agreement``; :func:`run_dynamics` runs everything and writes the CSVs.

Every analysis returns a table with ``status`` ("ok" or "skipped") and ``reason`` columns instead
of raising when a store has too few checkpoints to compute something.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ParameterError
from .taxonomy import Taxonomy, annotate, load_taxonomy, normalize_score

CURVE_KEYS = ["run", "level", "category", "benchmark"]
EXCLUDED_CATEGORIES = ("other",)
#: Fine-tuning outcomes are ground truth for paper 1, not pretraining capability curves.
EXCLUDED_PROBES = ("sft",)


def _x_column(x: str) -> str:
    if x not in ("tokens", "step"):
        raise ParameterError(f"x must be 'tokens' or 'step', not {x!r}")
    return x


def log_x(x: Any) -> np.ndarray:
    """log10 of the x axis with x = 0 (the initialisation) placed one decade left of the first
    positive checkpoint, so step 0 stays on a log axis."""
    arr = np.asarray(x, dtype=float)
    pos = arr[arr > 0]
    floor = (pos.min() / 10.0) if pos.size else 1.0
    return np.log10(np.where(arr > 0, arr, floor))


def _pick_metric(metrics: set[str], preferred: str | None, order: list[str]) -> str | None:
    if preferred and preferred in metrics:
        return preferred
    return next((m for m in order if m in metrics), None)


def score_table(
    df: pd.DataFrame,
    taxonomy: Taxonomy | None = None,
    x: str = "tokens",
    include_other: bool = False,
) -> pd.DataFrame:
    """One chance-normalised score per (run, checkpoint, benchmark).

    Columns: run, params, checkpoint, step, tokens, x, category, benchmark, metric, value,
    stderr, chance, norm, norm_stderr, n_tasks. Loss-like metrics (lower is better) are left out
    (see :func:`loss_table`); so are ``sft`` rows and category ``other`` unless
    ``include_other``. Rows without an
    x value are dropped. Scores whose benchmark has no known chance level are normalised with
    chance 0.
    """
    xcol = _x_column(x)
    tax = taxonomy or load_taxonomy()
    cols = [
        "run",
        "params",
        "checkpoint",
        "step",
        "tokens",
        "x",
        "category",
        "benchmark",
        "metric",
        "value",
        "stderr",
        "chance",
        "norm",
        "norm_stderr",
        "n_tasks",
    ]
    if df.empty:
        return pd.DataFrame(columns=cols)
    a = annotate(df[~df["probe"].isin(EXCLUDED_PROBES)], tax)
    a = a[~a["lower_is_better"] & a[xcol].notna()]
    if not include_other:
        a = a[~a["category"].isin(EXCLUDED_CATEGORIES)]
    if a.empty:
        return pd.DataFrame(columns=cols)
    # one score metric per (probe, task)
    chosen = []
    for (_probe, task), g in a.groupby(["probe", "task"], sort=False):
        info = tax.lookup(str(task))
        m = _pick_metric(set(g["metric"]), info.metric, tax.score_metrics)
        if m is not None:
            chosen.append(g[g["metric"] == m])
    if not chosen:
        return pd.DataFrame(columns=cols)
    a = pd.concat(chosen)
    # the same benchmark at several shot counts → separate benchmarks "name@Kshot"
    nshots = a.groupby("benchmark")["shots"].transform("nunique")
    a["benchmark"] = np.where(
        nshots > 1, a["benchmark"] + "@" + a["shots"].astype(str) + "shot", a["benchmark"]
    )
    a["x"] = a[xcol].astype(float)
    a["chance"] = a["chance"].fillna(0.0)
    a["norm"] = normalize_score(a["value"].astype(float), a["chance"])
    a["norm_stderr"] = a["stderr"].astype(float) / (1.0 - a["chance"])
    a["se2"] = a["norm_stderr"] ** 2
    keys = ["run", "checkpoint", "category", "benchmark"]
    agg = (
        a.groupby(keys, sort=False, dropna=False)
        .agg(
            params=("params", "first"),
            step=("step", "first"),
            tokens=("tokens", "first"),
            x=("x", "first"),
            metric=("metric", "first"),
            value=("value", "mean"),
            chance=("chance", "mean"),
            norm=("norm", "mean"),
            se2=("se2", "sum"),
            se_count=("norm_stderr", "count"),
            n_tasks=("task", "nunique"),
            stderr2=("stderr", lambda s: float(np.nansum(np.asarray(s, float) ** 2))),
        )
        .reset_index()
    )
    # stderr of a mean of k independent scores: sqrt(sum se²) / k (NaN when none has a stderr)
    k = agg["n_tasks"].astype(float)
    have = agg["se_count"] > 0
    agg["norm_stderr"] = np.where(have, np.sqrt(agg["se2"]) / k, np.nan)
    agg["stderr"] = np.where(have, np.sqrt(agg["stderr2"]) / k, np.nan)
    return agg[cols].sort_values(["run", "benchmark", "x"]).reset_index(drop=True)


def lowess_smooth(x: Any, y: Any, frac: float | None = None) -> np.ndarray:
    """LOWESS (statsmodels) of ``y`` on log10 ``x``; fewer than 4 points are returned as is.

    ``frac`` defaults to max(0.3, 4/n): at least four neighbours per local fit.
    """
    xs, ys = log_x(x), np.asarray(y, dtype=float)
    ok = np.isfinite(ys)
    out = ys.copy()
    if ok.sum() < 4:
        return out
    from statsmodels.nonparametric.smoothers_lowess import lowess

    n = int(ok.sum())
    f = frac if frac is not None else min(1.0, max(0.3, 4.0 / n))
    out[ok] = lowess(ys[ok], xs[ok], frac=f, it=1, return_sorted=False)
    return out


def curves(
    df: pd.DataFrame,
    taxonomy: Taxonomy | None = None,
    x: str = "tokens",
    frac: float | None = None,
) -> pd.DataFrame:
    """Benchmark and category curves vs ``x`` ("tokens" or "step"), one row per point.

    Columns: run, params, level ("benchmark" | "category"), category, benchmark (the category
    name on category rows), checkpoint, step, tokens, x, log10_x, metric, value, stderr, chance,
    norm, norm_stderr, smooth (LOWESS of norm on log-x), n_tasks (benchmarks averaged on category
    rows). Cross-size overlays: filter one benchmark and colour by ``params``.
    """
    s = score_table(df, taxonomy, x)
    if s.empty:
        return pd.DataFrame(
            columns=["run", "params", "level", "category", "benchmark", "x", "norm", "smooth"]
        )
    s = s.assign(level="benchmark")
    cat = (
        s.assign(se2=s["norm_stderr"] ** 2)
        .groupby(["run", "checkpoint", "category"], sort=False)
        .agg(
            params=("params", "first"),
            step=("step", "first"),
            tokens=("tokens", "first"),
            x=("x", "first"),
            norm=("norm", "mean"),
            se2=("se2", "sum"),
            se_count=("norm_stderr", "count"),
            n_tasks=("benchmark", "nunique"),
        )
        .reset_index()
    )
    cat["norm_stderr"] = np.where(
        cat["se_count"] == cat["n_tasks"], np.sqrt(cat["se2"]) / cat["n_tasks"], np.nan
    )
    cat = cat.assign(
        level="category",
        benchmark=cat["category"],
        metric="norm_mean",
        value=cat["norm"],
        stderr=cat["norm_stderr"],
        chance=0.0,
    )
    out = pd.concat([s, cat[s.columns]], ignore_index=True)
    out["log10_x"] = log_x(out["x"])
    out = out.sort_values(CURVE_KEYS + ["x"]).reset_index(drop=True)
    out["smooth"] = np.nan
    for _, idx in out.groupby(CURVE_KEYS, sort=False).groups.items():
        g = out.loc[idx]
        out.loc[idx, "smooth"] = lowess_smooth(g["x"].to_numpy(), g["norm"].to_numpy(), frac)
    order = [
        "run",
        "params",
        "level",
        "category",
        "benchmark",
        "checkpoint",
        "step",
        "tokens",
        "x",
        "log10_x",
        "metric",
        "value",
        "stderr",
        "chance",
        "norm",
        "norm_stderr",
        "smooth",
        "n_tasks",
    ]
    return out[order]


def curve_noise(g: pd.DataFrame) -> float:
    """Noise level of one curve: the median stderr of its points (normalised units), or, where
    stderrs are missing, the standard deviation of the residuals around the LOWESS curve."""
    se = g["norm_stderr"].dropna()
    if len(se):
        return float(se.median())
    resid = (g["norm"] - g["smooth"]).dropna()
    return float(resid.std(ddof=1)) if len(resid) > 2 else float("nan")


def _first_persistent(values: np.ndarray, cond: np.ndarray, persist: int = 2) -> int | None:
    """Index of the first point where ``cond`` holds and keeps holding for ``persist`` points
    (or to the end of the curve)."""
    n = len(values)
    for i in range(n):
        j = min(n, i + persist)
        if cond[i:j].all():
            return i
    return None


def phases(
    curve_df: pd.DataFrame, z: float = 2.0, plateau_tol: float | None = None
) -> pd.DataFrame:
    """Training phases of every curve in a :func:`curves` table.

    Per (run, level, category, benchmark):

    * ``final_norm`` — the LOWESS value at the last checkpoint;
    * ``x_50`` / ``x_90`` — first checkpoint from which the smoothed curve stays at or above
      50% / 90% of ``final_norm`` (NaN when the final score is within noise of chance);
    * ``emergence_x`` — first checkpoint (after the first) whose score exceeds the baseline
      ``baseline_norm`` = max(chance, first-checkpoint score) by more than ``z`` combined
      stderrs and stays so at the next checkpoint (emergence judged against the noise);
    * ``plateau_x`` — start of the final stretch over which the smoothed curve moves less than
      ``plateau_tol`` (default max(2 · noise, 0.02));
    * ``peak_x``, ``decline``, ``decline_noise``, ``peak_then_decline`` — the drop from the
      smoothed peak to the final score, flagged only when it exceeds ``z`` times its noise.
    """
    rows = []
    for key, g in curve_df.groupby(CURVE_KEYS, sort=True):
        g = g.sort_values("x")
        base = dict(zip(CURVE_KEYS, key), params=g["params"].iloc[0], n_points=len(g))
        if len(g) < 3:
            rows.append({**base, "status": "skipped", "reason": f"only {len(g)} checkpoint(s)"})
            continue
        x = g["x"].to_numpy(float)
        sm = g["smooth"].to_numpy(float)
        nv = g["norm"].to_numpy(float)
        se = g["norm_stderr"].to_numpy(float)
        noise = curve_noise(g)
        se_eff = np.where(np.isfinite(se), se, noise if math.isfinite(noise) else 0.0)
        final = float(sm[-1])
        rec: dict[str, Any] = {**base, "final_norm": final, "noise": noise, "x_final": float(x[-1])}
        learned = math.isfinite(noise) and final > z * max(noise, 1e-12)
        if learned:
            i50 = _first_persistent(sm, sm >= 0.5 * final, persist=len(sm))
            i90 = _first_persistent(sm, sm >= 0.9 * final, persist=len(sm))
            rec["x_50"] = float(x[i50]) if i50 is not None else np.nan
            rec["x_90"] = float(x[i90]) if i90 is not None else np.nan
        else:
            rec["x_50"] = rec["x_90"] = np.nan
        # Emergence is judged against the noise *and* the initial model: a random-init model can
        # sit above nominal chance through answer-position bias (Pythia step 0: piqa 52%), so
        # the baseline is max(0, score at the first checkpoint).
        b0 = max(0.0, float(nv[0])) if x[0] == 0 or len(nv) > 3 else 0.0
        thr = b0 + z * np.sqrt(se_eff**2 + se_eff[0] ** 2)
        ie = _first_persistent(nv[1:], nv[1:] > thr[1:], persist=2)
        rec["baseline_norm"] = b0
        rec["emergence_x"] = float(x[ie + 1]) if ie is not None else np.nan
        tol = (
            plateau_tol
            if plateau_tol is not None
            else max(2 * (noise if math.isfinite(noise) else 0.0), 0.02)
        )
        ip = len(sm) - 1
        while ip > 0 and (sm[ip - 1 :].max() - sm[ip - 1 :].min()) < tol:
            ip -= 1
        rec["plateau_x"] = float(x[ip]) if ip < len(sm) - 1 else np.nan
        ipk = int(np.nanargmax(sm))
        k = min(3, len(nv))
        final_raw = float(np.nanmean(nv[-k:]))
        decline = float(sm[ipk] - final_raw)
        dn = float(np.sqrt(se_eff[ipk] ** 2 + np.nanmean(se_eff[-k:] ** 2) / k))
        rec.update(
            peak_x=float(x[ipk]),
            peak_norm=float(sm[ipk]),
            decline=decline,
            decline_noise=dn,
            peak_then_decline=bool(ipk < len(sm) - k and decline > z * dn),
            status="ok",
            reason="" if learned else "final score within noise of chance: no x_50/x_90",
        )
        rows.append(rec)
    return pd.DataFrame(rows)


def loss_table(
    df: pd.DataFrame, taxonomy: Taxonomy | None = None, x: str = "tokens"
) -> pd.DataFrame:
    """The loss-like series of every run: (run, checkpoint, x, loss, loss_source).

    Perplexities are turned into losses (``loss = ln ppl``, nats) so runs and sources compare.

    Uses the first of the taxonomy's ``loss_metrics`` a run has (the zoo's ``ppl`` probe
    ``loss``, averaged over held-out domains; for Pythia, lambada_openai ``ppl``).
    """
    xcol = _x_column(x)
    tax = taxonomy or load_taxonomy()
    out = []
    for run, g in df[df[xcol].notna()].groupby("run", sort=True):
        for spec in tax.loss_metrics:
            sel = g["metric"] == spec["metric"]
            if "probe" in spec:
                sel &= g["probe"] == spec["probe"]
            if "task" in spec:
                sel &= g["task"] == spec["task"]
            h = g[sel]
            if h.empty:
                continue
            src = "/".join(f"{k}={v}" for k, v in spec.items())
            h = (
                h.assign(value=np.log(h["value"].astype(float)))
                if "ppl" in spec["metric"] or "perplexity" in spec["metric"]
                else h
            )
            agg = h.groupby("checkpoint").agg(x=(xcol, "first"), loss=("value", "mean"))
            out.append(agg.reset_index().assign(run=run, loss_source=src))
            break
    if not out:
        return pd.DataFrame(columns=["run", "checkpoint", "x", "loss", "loss_source"])
    return pd.concat(out, ignore_index=True)[["run", "checkpoint", "x", "loss", "loss_source"]]


def run_dynamics(
    df: pd.DataFrame,
    out_dir: str | Path | None,
    taxonomy: Taxonomy | str | Path | None = None,
    x: str = "tokens",
) -> dict[str, pd.DataFrame]:
    """Run every dynamics analysis on the tidy table and write ``<name>.csv`` into ``out_dir``.

    Returns {"curves", "fits", "phases", "correlations", "sibling_prediction", "lead_lag",
    "size_agreement", "loss_agreement", "recommendations"} → DataFrame. ``out_dir=None`` writes
    nothing. ``taxonomy`` may be a :class:`Taxonomy` or the path of a user YAML.
    """
    from . import dynamics_agreement as ag
    from .dynamics_fits import fit_curves

    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    xcol = _x_column(x)
    if not df.empty and df[xcol].isna().all():
        other = "step" if xcol == "tokens" else "tokens"
        hint = " (import with --tokens-per-step to get tokens)" if xcol == "tokens" else ""
        raise ParameterError(
            f"no row has a '{xcol}' value, so nothing can be placed on the x axis; "
            f"use x='{other}'{hint}"
        )
    cv = curves(df, tax, x)
    ph = phases(cv) if not cv.empty else pd.DataFrame(columns=CURVE_KEYS + ["status", "reason"])
    lt = loss_table(df, tax, x)
    tables = {
        "curves": cv,
        "fits": fit_curves(cv),
        "phases": ph,
        "correlations": ag.trajectory_correlations(cv),
        "sibling_prediction": ag.sibling_prediction(cv),
        "lead_lag": ag.lead_lag(ph),
        "size_agreement": ag.size_agreement(cv),
        "loss_agreement": ag.loss_agreement(cv, lt),
        "recommendations": ag.recommendations(cv, lt),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, t in tables.items():
            t.to_csv(out / f"{name}.csv", index=False)
    return tables


# The other analyses live in small sibling modules; they are reachable from here too, so a
# notebook can ``from ckpt_toolkit.analysis.dynamics import fit_curves, loss_agreement``.
_LAZY = {
    "fit_curves": "dynamics_fits",
    "trajectory_correlations": "dynamics_agreement",
    "sibling_prediction": "dynamics_agreement",
    "lead_lag": "dynamics_agreement",
    "size_agreement": "dynamics_agreement",
    "loss_agreement": "dynamics_agreement",
    "discordant_share": "dynamics_agreement",
    "training_phases": "dynamics_agreement",
    "recommendations": "dynamics_agreement",
    "plot_curves": "dynamics_plots",
}

__all__ = [
    "curves",
    "curve_noise",
    "log_x",
    "loss_table",
    "lowess_smooth",
    "phases",
    "run_dynamics",
    "score_table",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
