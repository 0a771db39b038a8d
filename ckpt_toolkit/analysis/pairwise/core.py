"""Pair-level building blocks of the pairwise analysis (arXiv 2504.12491, §3 "Pairwise evaluation").

Everything here is a pure function of numpy arrays: one entry per model. A *pair* (i, j) is
*valid* for a target when the models' target scores differ by more than ``min_gap``; a proxy
*credits* a valid pair with 1 when it orders the two models like the target does, 0 when it
orders them the other way, and 0.5 (``ties="half"``) or nothing (``ties="exclude"``) when the
proxy ties. A *target tie* (gap at or below ``min_gap``) is left out (``target_ties="drop"``,
the default) or kept with half credit for every method (``target_ties="half"``: the target
cannot order the pair, so any order is half right). Matrices are symmetric n×n with a False diagonal, so sums over them count every
unordered pair twice — ratios are unaffected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...errors import ParameterError

TIES = ("half", "exclude")
TARGET_TIES = ("drop", "half")
#: relative tolerance under which two proxy values count as a tie (guards float noise in sums)
TIE_RTOL = 1e-12


def check_ties(ties: str) -> str:
    """Validate the tie rule (``half`` or ``exclude``)."""
    if ties not in TIES:
        raise ParameterError(f"ties must be one of {TIES}, not {ties!r}")
    return ties


def check_target_ties(target_ties: str) -> str:
    """Validate the target-tie rule (``drop`` or ``half``)."""
    if target_ties not in TARGET_TIES:
        raise ParameterError(f"target_ties must be one of {TARGET_TIES}, not {target_ties!r}")
    return target_ties


def proxy_ties(p: np.ndarray) -> np.ndarray:
    """n×n boolean: the proxy values of i and j are equal (up to :data:`TIE_RTOL`)."""
    p = np.asarray(p, dtype=float)
    scale = np.maximum(np.abs(p)[:, None], np.abs(p)[None, :])
    return np.abs(p[:, None] - p[None, :]) <= TIE_RTOL * scale


def valid_pairs(t: np.ndarray, min_gap: float = 0.0) -> np.ndarray:
    """n×n boolean: pairs whose target gap |t_i − t_j| exceeds ``min_gap`` (a true tie or a gap
    at or below ``min_gap`` carries no order to predict, so the pair is left out)."""
    t = np.asarray(t, dtype=float)
    return np.abs(t[:, None] - t[None, :]) > min_gap


def counted_pairs(t: np.ndarray, min_gap: float = 0.0, target_ties: str = "drop") -> np.ndarray:
    """n×n boolean: the pairs an accuracy counts — the valid pairs (``drop``), or every pair of
    two different models (``half``: target ties stay in, with half credit)."""
    if check_target_ties(target_ties) == "drop":
        return valid_pairs(t, min_gap)
    n = len(t)
    return ~np.eye(n, dtype=bool)


def credit_matrix(
    t: np.ndarray,
    p: np.ndarray,
    *,
    min_gap: float = 0.0,
    ties: str = "half",
    target_ties: str = "drop",
) -> tuple[np.ndarray, np.ndarray]:
    """(credit, mask): per-pair credit of proxy ``p`` on target ``t`` and the pairs that count.

    ``credit[i, j]`` is 1 if sign(p_i − p_j) = sign(t_i − t_j), 0 if opposite and 0.5 on a
    proxy tie (``ties="half"``); with ``ties="exclude"`` proxy ties are removed from ``mask``.
    Target ties are left out of ``mask`` (``target_ties="drop"``) or credited 0.5 (``half``).
    """
    check_ties(ties)
    t = np.asarray(t, dtype=float)
    p = np.asarray(p, dtype=float)
    mask = counted_pairs(t, min_gap, target_ties)
    tie = proxy_ties(p)
    agree = np.sign(p[:, None] - p[None, :]) == np.sign(t[:, None] - t[None, :])
    credit = np.where(tie, 0.5, agree.astype(float))
    if target_ties == "half":
        credit = np.where(valid_pairs(t, min_gap), credit, 0.5)
    if ties == "exclude":
        mask = mask & ~tie
    return credit, mask


def score_credit(credit: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    """(accuracy, number of unordered pairs) of a credit matrix; NaN accuracy when no pair."""
    n2 = int(mask.sum())
    if n2 == 0:
        return float("nan"), 0
    return float((credit * mask).sum() / n2), n2 // 2


def bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) multiplicities of a model-level bootstrap (resampling models, not pairs,
    because pairs sharing a model are dependent)."""
    if n_boot <= 0 or n == 0:
        return np.zeros((0, n))
    idx = rng.integers(0, n, size=(n_boot, n))
    return np.stack([np.bincount(row, minlength=n) for row in idx]).astype(float)


def bootstrap_accuracy(credit: np.ndarray, mask: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Accuracy under each bootstrap resample of models.

    A resample holding model i w_i times holds every pair (i, j) w_i·w_j times; copies of one
    model are never a pair (the mask's diagonal is False). Hence
    acc_b = Σ w_i w_j c_ij m_ij / Σ w_i w_j m_ij,

    two quadratic forms computed as one matrix product each (O(n_boot · n²)); credits are
    multiples of 0.5 and weights integers, so the sums are exact in any order.
    """
    if weights.shape[0] == 0:
        return np.zeros(0)
    num = ((weights @ (credit * mask)) * weights).sum(axis=1)
    den = ((weights @ mask.astype(float)) * weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples, ignoring NaN; (NaN, NaN) when empty."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def minmax(x: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] over the pool; a constant column maps to 0."""
    x = np.asarray(x, dtype=float)
    if x.size == 0 or not np.isfinite(x).any():
        return np.zeros_like(x)
    lo, hi = np.nanmin(x), np.nanmax(x)
    if not np.isfinite(hi - lo) or hi == lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


def robust_z(x: np.ndarray) -> np.ndarray:
    """|x − median| / (1.4826·MAD); falls back to the mean absolute deviation (×1.2533) when the
    MAD is 0; all zeros when the column is constant."""
    x = np.asarray(x, dtype=float)
    med = np.nanmedian(x)
    dev = np.abs(x - med)
    scale = 1.4826 * np.nanmedian(dev)
    if not scale > 0:
        scale = 1.2533 * np.nanmean(dev)
    if not scale > 0:
        return np.zeros_like(x)
    return dev / scale


def flag_rows(
    table: pd.DataFrame, columns: list[str], models: pd.Series, *, z_max: float = 5.0
) -> pd.DataFrame:
    """Suspicious cells: NaN / infinite values and values with robust z above ``z_max``.

    Returns a ``flags`` table (model, column, value, robust_z, reason, action); ``action`` is
    ``excluded`` for non-finite values (the model is left out of the whole analysis) and
    ``kept`` for outliers (reported, still used unless the caller drops them).
    """
    rows = []
    for col in columns:
        x = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
        finite = np.isfinite(x)
        z = np.full_like(x, np.nan)
        if finite.sum() >= 5:  # a MAD of fewer values is too unstable to flag on
            z[finite] = robust_z(x[finite])
        for i in range(len(x)):
            if not finite[i]:
                what = "missing (NaN)" if np.isnan(x[i]) else "not finite"
                rows.append((models.iloc[i], col, x[i], np.nan, f"{col} is {what}", "excluded"))
            elif z[i] > z_max:
                rows.append(
                    (
                        models.iloc[i],
                        col,
                        x[i],
                        float(z[i]),
                        f"{col} is far outside the pool's range (robust z {z[i]:.1f} > {z_max})",
                        "kept",
                    )
                )
    return pd.DataFrame(rows, columns=["model", "column", "value", "robust_z", "reason", "action"])


def _spearman_rows(T: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row pair (average ranks for ties; NaN for a constant row)."""
    from scipy.stats import rankdata

    rt, rp = rankdata(T, axis=1), rankdata(P, axis=1)
    rt = rt - rt.mean(axis=1, keepdims=True)
    rp = rp - rp.mean(axis=1, keepdims=True)
    den = np.sqrt((rt**2).sum(axis=1) * (rp**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rt * rp).sum(axis=1) / np.where(den > 0, den, 1), np.nan)


def _kendall_rows(T: np.ndarray, P: np.ndarray, chunk_cells: int = 20_000_000) -> np.ndarray:
    """Kendall τ-b of each row pair: Σ s_t·s_p / sqrt(Σ s_t² · Σ s_p²) over ordered pairs, with
    s = sign of the difference (ties contribute 0, which is exactly τ-b's correction)."""
    b, n = T.shape
    out = np.empty(b)
    step = max(1, chunk_cells // max(1, n * n))
    for lo in range(0, b, step):
        t, p = T[lo : lo + step], P[lo : lo + step]
        st = np.sign(t[:, :, None] - t[:, None, :])
        sp = np.sign(p[:, :, None] - p[:, None, :])
        den = np.sqrt((st**2).sum(axis=(1, 2)) * (sp**2).sum(axis=(1, 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo : lo + step] = np.where(
                den > 0, (st * sp).sum(axis=(1, 2)) / np.where(den > 0, den, 1), np.nan
            )
    return out


def _resample_counts(weights_idx: np.ndarray, n: int) -> np.ndarray:
    """(n_boot, n) multiplicities of each model in each resample of index arrays."""
    b = weights_idx.shape[0]
    flat = (weights_idx + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)


def _kendall_resamples(t: np.ndarray, p: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Kendall τ-b of ``t`` vs ``p`` in each resample with multiplicities ``W`` (n_boot, n),
    without materialising the resamples: a resample holding model i w_i times holds the pair
    (i, j) w_i·w_j times (copies of one model tie, contributing 0), so every sum of
    :func:`_kendall_rows` is a quadratic form w^T S w of an n×n sign matrix. The sums are of
    integers, exact in float64, so the result equals :func:`_kendall_rows` on ``t[idx]``."""
    st = np.sign(t[:, None] - t[None, :])
    sp = np.sign(p[:, None] - p[None, :])

    def form(m: np.ndarray) -> np.ndarray:
        return ((W @ m) * W).sum(axis=1)

    num, dt, dp = form(st * sp), form(st * st), form(sp * sp)
    den = np.sqrt(dt * dp)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def rank_correlations(
    t: np.ndarray, p: np.ndarray, weights_idx: np.ndarray
) -> dict[str, float | tuple[float, float]]:
    """Spearman ρ and Kendall τ-b of proxy vs target, with percentile intervals over bootstrap
    resamples of models (``weights_idx``: (n_boot, n) index arrays). Vectorised over resamples:
    O(n_boot · n log n) for Spearman, O(n_boot · n²) multiply-adds (one matrix product) for
    Kendall."""
    t = np.asarray(t, dtype=float)
    p = np.asarray(p, dtype=float)
    out: dict[str, float | tuple[float, float]] = {
        "spearman": float(_spearman_rows(t[None], p[None])[0]),
        "kendall": float(_kendall_rows(t[None], p[None])[0]),
    }
    if len(weights_idx):
        W = _resample_counts(np.asarray(weights_idx), len(t))
        out["spearman_ci"] = percentile_ci(_spearman_rows(t[weights_idx], p[weights_idx]))
        out["kendall_ci"] = percentile_ci(_kendall_resamples(t, p, W))
    else:
        out["spearman_ci"] = out["kendall_ci"] = (float("nan"), float("nan"))
    return out
