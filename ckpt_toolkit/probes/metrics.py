"""Aggregates with standard errors (every stored number carries one)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_stderr(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and the standard error of the mean (sample std with n-1, as lm-eval's
    ``mean_stderr``; for 0/1 values this is the binomial stderr sqrt(p(1-p)/(n-1)))."""
    n = len(values)
    if n == 0:
        return math.nan, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def ratio_stderr(num: Sequence[float], den: Sequence[float]) -> tuple[float, float | None]:
    """Ratio of sums r = Σy/Σx over units (documents, items) and its delta-method stderr
    sqrt(Σ(y - r·x)² / (n(n-1))) / mean(x) — the units, not the tokens, are the samples, so
    correlation between tokens of one document is accounted for."""
    n = len(num)
    sx = float(sum(den))
    if n == 0 or sx == 0:
        return math.nan, None
    r = float(sum(num)) / sx
    if n < 2:
        return r, None
    resid = sum((y - r * x) ** 2 for y, x in zip(num, den))
    return r, math.sqrt(resid / (n * (n - 1))) / (sx / n)


def token_stderr(total: float, total_sq: float, n: int) -> float | None:
    """Stderr of a mean over ``n`` token values from their sum and sum of squares — the fallback
    for a single document, where document-level stderr is undefined (it ignores the correlation
    between tokens of one document, so it is optimistic)."""
    if n < 2:
        return None
    mean = total / n
    var = max(0.0, (total_sq - n * mean * mean) / (n - 1))
    return math.sqrt(var / n)
