"""Training phases of capability curves (paper 2, "The Fine Line", arXiv 2404.01204): tokens to
50% / 90% of the final score, emergence above noise, plateau, peak-then-decline beyond noise."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .curves import CURVE_KEYS, curve_noise


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
        if "shots" in g:
            base["shots"] = g["shots"].iloc[0]
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
