"""Agreement analyses over capability curves (paper 2, "The Fine Line", arXiv 2404.01204).

All take the :func:`~.dynamics.curves` table (and the :func:`~.dynamics.loss_table`), return a
DataFrame with ``status``/``reason`` columns, and skip (with a reason) what too few checkpoints
cannot support.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from .curves import curve_noises
from .pairs import spearman

MIN_POINTS = 4


def _bench(cv: pd.DataFrame) -> pd.DataFrame:
    return cv[cv["level"] == "benchmark"]


def _wide_groups(cv: pd.DataFrame) -> list[tuple[str, str, list[str], np.ndarray]]:
    """Per (run, category): its benchmark names (sorted) and the checkpoint × benchmark matrix
    of normalised scores (rows sorted by x; NaN where a benchmark lacks a checkpoint). One pivot
    for the whole table, not one per group."""
    b = _bench(cv)
    if b.empty:
        return []
    w = b.pivot_table(
        index=["run", "category", "x"], columns="benchmark", values="norm", aggfunc="mean"
    ).sort_index()
    cols = np.array([str(c) for c in w.columns])
    values = w.to_numpy(float)
    out = []
    for (run, cat), idx in w.groupby(level=["run", "category"], sort=True).indices.items():
        m = values[idx]
        keep = np.isfinite(m).any(axis=0)
        names = cols[keep]
        order = np.argsort(names)
        out.append((run, cat, [str(n) for n in names[order]], m[:, keep][:, order]))
    return out


def trajectory_correlations(cv: pd.DataFrame) -> pd.DataFrame:
    """Within-category trajectory correlation: for each run, category and pair of benchmarks in
    it, Spearman and Pearson correlation of their normalised scores over shared checkpoints;
    plus one ``pair="(mean)"`` summary row per (run, category)."""
    rows: list[dict[str, Any]] = []
    for run, cat, names, m in _wide_groups(cv):
        if len(names) < 2:
            rows.append(
                dict(
                    run=run,
                    category=cat,
                    benchmark_a=names[0] if names else None,
                    status="skipped",
                    reason="only one benchmark in this category",
                )
            )
            continue
        rhos = []
        for ia, ib in itertools.combinations(range(len(names)), 2):
            ok = np.isfinite(m[:, ia]) & np.isfinite(m[:, ib])
            va, vb = m[ok, ia], m[ok, ib]
            a, b = names[ia], names[ib]
            rec = dict(run=run, category=cat, benchmark_a=a, benchmark_b=b, n_points=len(va))
            if len(va) < MIN_POINTS or np.unique(va).size < 2 or np.unique(vb).size < 2:
                rows.append(
                    {
                        **rec,
                        "status": "skipped",
                        "reason": f"{len(va)} shared checkpoints (< {MIN_POINTS}) or flat",
                    }
                )
                continue
            sp = spearman(va, vb)
            pe = np.corrcoef(va, vb)[0, 1]
            rhos.append((sp, pe))
            rows.append(
                {**rec, "spearman": float(sp), "pearson": float(pe), "status": "ok", "reason": ""}
            )
        if rhos:
            rows.append(
                dict(
                    run=run,
                    category=cat,
                    benchmark_a="(mean)",
                    benchmark_b="(mean)",
                    n_points=len(rhos),
                    spearman=float(np.mean([r[0] for r in rhos])),
                    pearson=float(np.mean([r[1] for r in rhos])),
                    status="ok",
                    reason=f"mean over {len(rhos)} pairs",
                )
            )
    return pd.DataFrame(rows)


def _ols_rmse(
    xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray
) -> tuple[float, float, float]:
    """OLS y ~ 1 + x fitted on train; (rmse on test, baseline rmse, slope)."""
    n = len(xtr)
    sx, sy = xtr.sum(), ytr.sum()
    return _ols_from_sums(n, sx, sy, (xtr * xtr).sum(), (xtr * ytr).sum(), xte, yte)


def _ols_from_sums(
    n: float, sx: float, sy: float, sxx: float, sxy: float, xte: np.ndarray, yte: np.ndarray
) -> tuple[float, float, float]:
    """OLS y ~ 1 + x from its sufficient statistics; (rmse on test, baseline rmse, slope).

    The baseline predicts the training mean; flat training x (no information) gives the
    baseline itself and a NaN slope."""
    my = sy / n
    base = float(np.sqrt(np.mean((my - yte) ** 2)))
    var = sxx - sx * sx / n
    if var <= 1e-15 * max(1.0, sxx):
        return base, base, float("nan")
    slope = (sxy - sx * sy / n) / var
    pred = my + slope * (xte - sx / n)
    return float(np.sqrt(np.mean((pred - yte) ** 2))), base, float(slope)


def sibling_prediction(cv: pd.DataFrame, train_frac: float = 0.5) -> pd.DataFrame:
    """Predict each benchmark's normalised curve from the mean of its category siblings.

    Two held-out protocols (OLS ``y = α + β · mean(siblings)``):

    * ``later_checkpoints`` — fit on the first ``train_frac`` of the run's checkpoints, score
      the rest;
    * ``other_runs`` — fit on every other run (size), score this run (from sufficient
      statistics: the cost is linear in runs).

    ``rmse`` is the held-out error; ``baseline_rmse`` predicts the training mean; ``skill`` =
    1 − rmse / baseline_rmse (> 0: the siblings carry information).
    """
    pairs: dict[tuple[str, str, str], pd.DataFrame] = {}
    rows: list[dict[str, Any]] = []
    for run, cat, names, m in _wide_groups(cv):
        fin = np.isfinite(m)
        filled = np.where(fin, m, 0.0)
        for j, name in enumerate(names):
            sibs = [k for k in range(len(names)) if k != j]
            if not sibs:
                rows.append(
                    dict(
                        run=run,
                        category=cat,
                        benchmark=name,
                        protocol="-",
                        status="skipped",
                        reason="no sibling benchmark in the category",
                    )
                )
                continue
            cnt = fin[:, sibs].sum(axis=1)
            xs = np.divide(
                filled[:, sibs].sum(axis=1), cnt, out=np.full(len(cnt), np.nan), where=cnt > 0
            )
            ok = np.isfinite(m[:, j]) & np.isfinite(xs)
            pairs[(run, cat, name)] = pd.DataFrame({"y": m[ok, j], "x": xs[ok]})
    # per (category, benchmark): totals over runs, so "every other run" is total − this run
    sums: dict[tuple[str, str], np.ndarray] = {}
    for (_run, cat, name), d in pairs.items():
        x, y = d["x"].to_numpy(float), d["y"].to_numpy(float)
        sums[(cat, name)] = sums.get((cat, name), 0) + _ols_sums(x, y)
    for (run, cat, name), d in pairs.items():
        base = dict(run=run, category=cat, benchmark=name)
        x, y = d["x"].to_numpy(float), d["y"].to_numpy(float)
        n_tr = int(math.floor(len(d) * train_frac))
        if n_tr >= 3 and len(d) - n_tr >= 1:
            fit = _ols_rmse(x[:n_tr], y[:n_tr], x[n_tr:], y[n_tr:])
            rows.append(_sibling_row(base, "later_checkpoints", n_tr, len(d) - n_tr, *fit))
        else:
            rows.append(
                {
                    **base,
                    "protocol": "later_checkpoints",
                    "status": "skipped",
                    "reason": f"{len(d)} checkpoints: too few to hold out later ones",
                }
            )
        rest = sums[(cat, name)] - _ols_sums(x, y)
        if rest[0] >= 3 and len(d) >= 1:
            fit = _ols_from_sums(*rest, x, y)
            rows.append(_sibling_row(base, "other_runs", int(rest[0]), len(d), *fit))
    return pd.DataFrame(rows)


def _ols_sums(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The sufficient statistics of a one-variable OLS: n, Σx, Σy, Σx², Σxy."""
    return np.array([len(x), x.sum(), y.sum(), (x * x).sum(), (x * y).sum()])


def _sibling_row(
    base: dict, protocol: str, n_train: int, n_test: int, rmse: float, bl: float, slope: float
) -> dict:
    """One fitted row of :func:`sibling_prediction` (skill = 1 − rmse / baseline rmse)."""
    skill = 1 - rmse / bl if bl > 0 else np.nan
    return {
        **base,
        "protocol": protocol,
        "n_train": n_train,
        "n_test": n_test,
        "rmse": rmse,
        "baseline_rmse": bl,
        "skill": skill,
        "slope": slope,
        "status": "ok",
        "reason": "",
    }


def lead_lag(ph: pd.DataFrame) -> pd.DataFrame:
    """Which category leads and which lags: per run, categories ranked by tokens to 50% of their
    final normalised score (ties broken by emergence); then the mean rank over runs.

    Rows with ``run="(all)"`` hold the mean rank and the role ("leads" / "lags" / "middle").
    """
    cols = ["run", "category", "x_50", "x_90", "emergence_x", "final_norm", "rank"]
    if ph.empty or "x_50" not in ph:
        return pd.DataFrame(columns=cols + ["status", "reason"])
    c = ph[(ph["level"] == "category") & (ph["status"] == "ok")].copy()
    rows = []
    for _run, g in c.groupby("run", sort=True):
        g = g.copy()
        ok = g["x_50"].notna()
        g["rank"] = np.nan
        g.loc[ok, "rank"] = (
            g.loc[ok, ["x_50", "emergence_x"]]
            .apply(
                lambda r: (r["x_50"], r["emergence_x"] if pd.notna(r["emergence_x"]) else np.inf),
                axis=1,
            )
            .rank(method="min")
        )
        for _, r in g.iterrows():
            rows.append(
                {k: r.get(k) for k in cols}
                | {
                    "status": "ok" if ok[r.name] else "skipped",
                    "reason": "" if ok[r.name] else "no learning signal (final within noise)",
                }
            )
    out = pd.DataFrame(rows, columns=cols + ["status", "reason"])
    ranked = out[out["rank"].notna()]
    if not ranked.empty:
        mean = ranked.groupby("category")["rank"].mean().sort_values()
        for cat, rk in mean.items():
            role = "leads" if rk == mean.min() else "lags" if rk == mean.max() else "middle"
            if len(mean) == 1:
                role = "only category"
            xs = ranked[ranked["category"] == cat]
            out.loc[len(out)] = {
                "run": "(all)",
                "category": cat,
                "x_50": float(xs["x_50"].median()),
                "x_90": float(xs["x_90"].median()),
                "emergence_x": float(xs["emergence_x"].median()),
                "final_norm": float(xs["final_norm"].mean()),
                "rank": rk,
                "status": "ok",
                "reason": role,
            }
    return out


#: Above this many runs, :func:`size_agreement` compares each run only with the next larger one
#: (all pairs would grow as runs²).
MAX_RUNS_ALL_PAIRS = 16


def _run_pairs(names: list[str], sizes: dict[str, float]) -> list[tuple[str, str]]:
    """Every pair of runs (by name) up to :data:`MAX_RUNS_ALL_PAIRS` runs; beyond, each run with
    the next one in size order (size, then name)."""
    if len(names) <= MAX_RUNS_ALL_PAIRS:
        return list(itertools.combinations(sorted(names), 2))
    order = sorted(names, key=lambda r: (np.nan_to_num(sizes.get(r, np.inf), nan=np.inf), r))
    return list(zip(order[:-1], order[1:]))


def size_agreement(cv: pd.DataFrame, n_grid: int = 20) -> pd.DataFrame:
    """Do curve shapes agree across sizes once tokens are normalised?

    For every curve (benchmark or category) and pair of runs: the shape is the LOWESS curve
    divided by its final value, on a log grid of normalised tokens — ``fraction`` (x / final x)
    or ``tokens_per_param`` (x / params). Reports the Pearson correlation of the two shapes and
    their mean absolute difference over the overlapping range. Every pair of runs is compared
    up to :data:`MAX_RUNS_ALL_PAIRS` runs; with more, each run is compared with the next larger
    one (neighbours in size), so the table grows linearly with runs.
    """
    rows: list[dict[str, Any]] = []
    if cv.empty or cv["run"].nunique() < 2:
        return pd.DataFrame([dict(status="skipped", reason="needs at least two runs (sizes)")])
    d = cv[cv["x"] > 0].sort_values(["level", "category", "benchmark", "run", "x"])
    noise = curve_noises(d)
    xs, sm, pv = (d[c].to_numpy(float) for c in ("x", "smooth", "params"))
    curves_of = d.groupby(["level", "category", "benchmark"], sort=True)
    for (level, cat, bench), g_idx in curves_of.indices.items():
        runs: dict[str, tuple[np.ndarray, np.ndarray, float, float]] = {}
        sub = d.iloc[g_idx]
        for run, r_idx in sub.groupby("run", sort=True).indices.items():
            if len(r_idx) < MIN_POINTS:
                continue
            idx = g_idx[r_idx]
            final = float(sm[idx[-1]])
            nz = float(noise.get((run, level, cat, bench), np.nan))
            if not math.isfinite(nz) or final <= 2 * nz:
                rows.append(
                    dict(
                        level=level,
                        category=cat,
                        benchmark=bench,
                        run_a=run,
                        status="skipped",
                        reason="no learning signal in this run",
                    )
                )
                continue
            runs[run] = (xs[idx], sm[idx], final, float(pv[idx[0]]))
        sizes = {r: v[3] for r, v in runs.items()}
        for ra, rb in _run_pairs(list(runs), sizes):
            (xa, sa_, fa, pa), (xb, sb_, fb, pb) = runs[ra], runs[rb]
            for norm in ("fraction", "tokens_per_param"):
                rec = dict(
                    level=level,
                    category=cat,
                    benchmark=bench,
                    run_a=ra,
                    run_b=rb,
                    normalisation=norm,
                )
                if norm == "fraction":
                    ua, ub = xa / xa.max(), xb / xb.max()
                else:
                    if math.isnan(pa) or math.isnan(pb):
                        rows.append({**rec, "status": "skipped", "reason": "params unknown"})
                        continue
                    ua, ub = xa / pa, xb / pb
                la, lb = np.log10(ua), np.log10(ub)
                lo, hi = max(la.min(), lb.min()), min(la.max(), lb.max())
                if hi - lo <= 0:
                    rows.append({**rec, "status": "skipped", "reason": "no overlap in range"})
                    continue
                grid = np.linspace(lo, hi, n_grid)
                sa = np.interp(grid, la, sa_ / fa)
                sb = np.interp(grid, lb, sb_ / fb)
                corr = float(np.corrcoef(sa, sb)[0, 1]) if sa.std() > 0 and sb.std() > 0 else np.nan
                rows.append(
                    {
                        **rec,
                        "shape_corr": corr,
                        "mean_abs_diff": float(np.mean(np.abs(sa - sb))),
                        "overlap_decades": float(hi - lo),
                        "status": "ok",
                        "reason": "",
                    }
                )
    return pd.DataFrame(rows)


def discordant_share(
    loss: np.ndarray, score: np.ndarray, score_se: np.ndarray | None = None, z: float = 2.0
) -> tuple[float, float, int]:
    """Share of checkpoint pairs that loss orders differently from the score.

    A pair (i, j) is discordant when the lower-loss checkpoint has the lower score. Returns
    (share of all pairs with distinct values, share among pairs whose score difference exceeds
    ``z`` stderrs — NaN without stderrs —, number of pairs with distinct values).
    """
    loss = np.asarray(loss, float)
    score = np.asarray(score, float)
    i, j = np.triu_indices(len(loss), k=1)
    dl, ds = loss[j] - loss[i], score[j] - score[i]
    ordered = (dl != 0) & (ds != 0)
    disc = ordered & ((dl < 0) != (ds > 0))  # lower loss should mean higher score
    tot = int(ordered.sum())
    share = float(disc.sum() / tot) if tot else float("nan")
    share_sig = float("nan")
    if score_se is not None:
        se = np.asarray(score_se, float)
        known = np.isfinite(se[i]) & np.isfinite(se[j])
        sig = ordered & known & (np.abs(ds) > z * np.hypot(se[i], se[j]))
        if sig.any():
            share_sig = float((disc & sig).sum() / sig.sum())
    return share, share_sig, tot


def loss_agreement(cv: pd.DataFrame, loss: pd.DataFrame) -> pd.DataFrame:
    """Loss/perplexity vs capability along training, per run and curve.

    ``spearman`` is the rank correlation of −loss with the normalised score (1 = loss orders
    checkpoints exactly as the capability does); ``discordant_share`` the share of checkpoint
    pairs ordered differently; ``discordant_share_beyond_noise`` the same among pairs whose score
    difference exceeds 2 stderrs (for category curves the stderr of the mean).
    """
    if loss.empty:
        return pd.DataFrame(
            [
                dict(
                    status="skipped",
                    reason="no loss-like metric in the store "
                    "(ppl probe loss, lambada_openai ppl, ...)",
                )
            ]
        )
    keys = ["run", "level", "category", "benchmark"]
    has_loss = set(loss["run"])
    m = cv.merge(loss[["run", "checkpoint", "loss", "loss_source"]], on=["run", "checkpoint"])
    m = m.dropna(subset=["loss", "norm"])
    groups = m.groupby(keys, sort=True).indices
    lv, nv = m["loss"].to_numpy(float), m["norm"].to_numpy(float)
    se, src = m["norm_stderr"].to_numpy(float), m["loss_source"].to_numpy()
    rows: list[dict[str, Any]] = []
    for key in cv.groupby(keys, sort=True).groups:
        base = dict(zip(keys, key))
        if key[0] not in has_loss:
            rows.append({**base, "status": "skipped", "reason": "run has no loss-like metric"})
            continue
        idx = groups.get(key, np.array([], dtype=int))
        if len(idx) < 3:
            rows.append(
                {
                    **base,
                    "status": "skipped",
                    "reason": f"{len(idx)} checkpoints with both loss and score (< 3)",
                }
            )
            continue
        lk, sk = lv[idx], nv[idx]
        if np.unique(lk).size < 2 or np.unique(sk).size < 2:
            rows.append(
                {
                    **base,
                    "n_points": len(idx),
                    "status": "skipped",
                    "reason": "constant loss or score: no ordering to compare",
                }
            )
            continue
        share, share_sig, npairs = discordant_share(lk, sk, se[idx])
        rows.append(
            {
                **base,
                "loss_source": src[idx[0]],
                "n_points": len(idx),
                "spearman": spearman(-lk, sk),
                "discordant_share": share,
                "discordant_share_beyond_noise": share_sig,
                "n_pairs": npairs,
                "status": "ok",
                "reason": "",
            }
        )
    return pd.DataFrame(rows)
