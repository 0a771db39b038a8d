"""Fitted learning curves with extrapolation error from early checkpoints (paper 2, arXiv 2404.01204).

Two models of the normalised score ``y`` against ``u = x / x_max`` (x > 0 only):

* ``power_law``:  y = a · u^b
* ``saturating``: y = c − b · u^(−a)  (a > 0: rises towards the ceiling c)

Each is fitted by least squares (:func:`fit_model`) on all checkpoints (in-sample RMSE) and on the early ones
only (x ≤ ``early_frac`` · x_max); the early fit is extrapolated to the later checkpoints and its
held-out RMSE and error at the final checkpoint are reported — how far ahead a curve can be
forecast from the start of training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .curves import CURVE_KEYS


def _power(u: np.ndarray, a: float, b: float) -> np.ndarray:
    return a * np.power(u, b)


def _saturating(u: np.ndarray, c: float, b: float, a: float) -> np.ndarray:
    return c - b * np.power(u, -a)


MODELS: dict[str, tuple[Callable[..., np.ndarray], list[float], tuple[list[float], list[float]]]]
MODELS = {
    "power_law": (_power, [0.5, 0.2], ([-10.0, -5.0], [10.0, 5.0])),
    "saturating": (_saturating, [0.5, 0.1, 0.3], ([-1.0, -10.0, 1e-4], [1.5, 10.0, 3.0])),
}


def _linear_part(name: str, u: np.ndarray, y: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, ...]:
    """For exponents ``e`` (shape G), the least-squares linear parameters of model ``name``
    (clipped to their bounds) and the sum of squared errors: the model is linear once its
    exponent is fixed (variable projection)."""
    (lo, hi) = MODELS[name][2]
    if name == "power_law":  # y = a · u^b, b = e
        f = np.power(u[None, :], e[:, None])
        ff = (f * f).sum(axis=1)
        a = np.where(ff > 0, (f @ y) / np.where(ff > 0, ff, 1.0), 0.0)
        a = np.clip(a, lo[0], hi[0])
        sse = ((a[:, None] * f - y[None, :]) ** 2).sum(axis=1)
        return sse, a
    g = np.power(u[None, :], -e[:, None])  # y = c − b · g, a = e
    gc = g - g.mean(axis=1, keepdims=True)
    var = (gc * gc).sum(axis=1)
    slope = np.where(var > 0, (gc @ (y - y.mean())) / np.where(var > 0, var, 1.0), 0.0)
    b = np.clip(-slope, lo[1], hi[1])
    c_free = (y[None, :] + b[:, None] * g).mean(axis=1)
    c = np.clip(c_free, lo[0], hi[0])
    gg = (g * g).sum(axis=1)
    b_given_c = np.where(gg > 0, (g * (c[:, None] - y[None, :])).sum(axis=1) / gg, b)
    b = np.where(c != c_free, np.clip(b_given_c, lo[1], hi[1]), b)  # c at a bound: refit b
    sse = ((c[:, None] - b[:, None] * g - y[None, :]) ** 2).sum(axis=1)
    return sse, c, b


def fit_model(name: str, u: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Least-squares parameters of model ``name`` on (u, y), or None when it cannot be fitted.

    The exponent is found by a grid over its bounds followed by a bounded Brent search around
    the best grid point; the other parameters are then linear and solved in closed form (and
    clipped to their bounds). One fit costs a few hundred microseconds, so fitting every curve
    of a large store stays cheap.
    """
    from scipy.optimize import minimize_scalar

    _, p0, (lo, hi) = MODELS[name]
    u = np.asarray(u, float)
    y = np.asarray(y, float)
    if len(u) < len(p0) + 1 or not (np.all(np.isfinite(u)) and np.all(np.isfinite(y))):
        return None
    if np.any(u <= 0):
        return None
    e_lo, e_hi = lo[-1], hi[-1]
    grid = np.linspace(e_lo, e_hi, 101) if name == "power_law" else np.geomspace(e_lo, e_hi, 81)
    sse = _linear_part(name, u, y, grid)[0]
    i = int(np.nanargmin(sse))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = minimize_scalar(
        lambda e: float(_linear_part(name, u, y, np.array([e]))[0][0]),
        bounds=(a, b),
        method="bounded",
        options={"xatol": 1e-10},
    )
    e = float(res.x) if res.fun <= sse[i] else float(grid[i])
    lin = [float(v[0]) for v in _linear_part(name, u, y, np.array([e]))[1:]]
    return np.array([*lin, e])


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2))) if len(a) else float("nan")


def fit_curves(
    curve_df: pd.DataFrame, early_frac: float = 0.25, min_points: int = 5
) -> pd.DataFrame:
    """Fit both models to every curve of a :func:`~.dynamics.curves` table.

    Columns: run, level, category, benchmark, model, params (JSON list), rmse (in-sample),
    early_until_x, n_early, n_heldout, rmse_heldout (early fit on later points), pred_final,
    actual_final, error_final, status, reason.
    """
    rows: list[dict[str, Any]] = []
    if curve_df.empty:
        return pd.DataFrame(columns=CURVE_KEYS + ["model", "status", "reason"])
    d = curve_df[(curve_df["x"] > 0) & curve_df["norm"].notna()].sort_values([*CURVE_KEYS, "x"])
    xs_all, ys_all = d["x"].to_numpy(float), d["norm"].to_numpy(float)
    groups = d.groupby(CURVE_KEYS, sort=True).indices
    for key in curve_df.groupby(CURVE_KEYS, sort=True).groups:
        idx = groups.get(key, np.array([], dtype=int))
        base = dict(zip(CURVE_KEYS, key))
        x = xs_all[idx]
        y = ys_all[idx]
        for name, (fn, _, _) in MODELS.items():
            rec: dict[str, Any] = {**base, "model": name, "n_points": len(x)}
            if len(x) < min_points:
                rows.append(
                    {
                        **rec,
                        "status": "skipped",
                        "reason": f"{len(x)} checkpoints with x > 0 (< {min_points})",
                    }
                )
                continue
            u = x / x.max()
            p = fit_model(name, u, y)
            if p is None:
                rows.append({**rec, "status": "skipped", "reason": "fit did not converge"})
                continue
            rec.update(params=[round(float(v), 6) for v in p], rmse=_rmse(fn(u, *p), y))
            early = x <= early_frac * x.max()
            rec.update(
                early_until_x=float(x[early].max()) if early.any() else np.nan,
                n_early=int(early.sum()),
                n_heldout=int((~early).sum()),
                actual_final=float(y[-1]),
            )
            pe = fit_model(name, u[early], y[early]) if early.sum() >= min_points - 1 else None
            if pe is None or not (~early).any():
                rec.update(
                    status="ok",
                    reason="too few early checkpoints to extrapolate"
                    if pe is None
                    else "no later checkpoints to extrapolate to",
                )
            else:
                pred = fn(u[~early], *pe)
                rec.update(
                    rmse_heldout=_rmse(pred, y[~early]),
                    pred_final=float(pred[-1]),
                    error_final=float(pred[-1] - y[-1]),
                    status="ok",
                    reason="",
                )
            rows.append(rec)
    out = pd.DataFrame(rows)
    if "params" in out:
        out["params"] = out["params"].map(lambda v: None if not isinstance(v, list) else str(v))
    return out
