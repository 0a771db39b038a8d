"""Pair counting shared by the cross-run analyses: how two orderings of the same items agree."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairCounts:
    """Counts over the unordered pairs (i < j) of items ordered by ``a`` and by ``b``.

    ``concordant`` / ``discordant``: pairs that both order strictly, the same way / the other
    way; ``ties_a`` / ``ties_b``: pairs tied in ``a`` (resp. ``b``) only; ``ties_both``: tied in
    both; ``n_pairs``: all pairs.
    """

    concordant: int
    discordant: int
    ties_a: int
    ties_b: int
    ties_both: int
    n_pairs: int

    @property
    def discordant_share(self) -> float:
        """Discordant share among pairs both orderings order strictly (NaN when none)."""
        ordered = self.concordant + self.discordant
        return self.discordant / ordered if ordered else float("nan")


def pair_counts(a: np.ndarray, b: np.ndarray) -> PairCounts:
    """:class:`PairCounts` of the orderings of ``a`` and ``b`` (same length, NaN-free).

    Vectorised over the upper triangle: O(n²) memory for n items, no Python loop.
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    n = len(a)
    if n < 2:
        return PairCounts(0, 0, 0, 0, 0, 0)
    i, j = np.triu_indices(n, k=1)
    sa = np.sign(a[j] - a[i])
    sb = np.sign(b[j] - b[i])
    prod = sa * sb
    return PairCounts(
        concordant=int((prod > 0).sum()),
        discordant=int((prod < 0).sum()),
        ties_a=int(((sa == 0) & (sb != 0)).sum()),
        ties_b=int(((sb == 0) & (sa != 0)).sum()),
        ties_both=int(((sa == 0) & (sb == 0)).sum()),
        n_pairs=len(i),
    )


def average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``a`` with ties given their average rank (as ``scipy.stats.rankdata``)."""
    _, inv, counts = np.unique(np.asarray(a, float), return_inverse=True, return_counts=True)
    end = np.cumsum(counts)
    return ((end - counts + 1 + end) / 2.0)[inv]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    if len(ra) < 2 or np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])
