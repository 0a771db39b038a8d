"""The analyses of the pairwise evaluation: one named step each, each returning one table.

Every step reads a :class:`PairData` (the prepared, oriented per-model table as arrays plus the
pairing rules) and, for the held-out analyses, the model-level :class:`Split` s and the fitted
:class:`ComparatorFit` s. The columns of every table are declared in :data:`COLUMNS` (and in
``docs/pairwise.md``).

=======================  ===================================================================
step                     table
=======================  ===================================================================
:func:`proxy_accuracy`   accuracy of every (single or combined) proxy over all pairs, ties,
                         bootstrap interval, relative error reduction vs perplexity
:func:`correlations`     Spearman / Kendall of each proxy with each target
:func:`plan_splits`      (not a table) the seeded 60/40 model-level splits
:func:`fit_comparators`  (not a table) the learned comparator per split × source target
:func:`split_records`    per-split accuracy of proxies and comparators on the test pairs
:func:`comparator_table` comparator vs proxies on held-out pairs (mean ± sd over splits)
:func:`transfer_table`   comparator trained on one target, tested on another
:func:`gap_quantiles`    accuracy by quantile of the true gap |Δtarget|
:func:`importance`       the comparator's feature importance per proxy
:func:`topk_recall`      top-k recall of the truly best test model
:func:`borda`            Borda ranking of the models from the comparator's pairwise wins
=======================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .compare import MAX_TRAIN_PAIRS, PairwiseComparator, model_splits, pairs_within
from .core import (
    bootstrap_accuracy,
    bootstrap_weights,
    counted_pairs,
    credit_matrix,
    percentile_ci,
    proxy_ties,
    rank_correlations,
    score_credit,
    valid_pairs,
)

_AGG = ["accuracy_mean", "accuracy_sd", "n_splits", "n_test_pairs_mean", "ci_low", "ci_high"]
#: the columns of every table a step returns
COLUMNS: dict[str, list[str]] = {
    "proxy_accuracy": [
        "proxy", "target", "kind", "accuracy", "error", "n_pairs", "n_proxy_ties", "ci_low",
        "ci_high", "error_ci_low", "error_ci_high", "ppl_proxy", "rel_error_reduction",
        "rer_ci_low", "rer_ci_high",
    ],
    "correlations": [
        "proxy", "target", "spearman", "spearman_ci_low", "spearman_ci_high", "kendall",
        "kendall_ci_low", "kendall_ci_high", "n_models",
    ],
    "split_records": [
        "target", "source_target", "method", "classifier", "split", "accuracy", "n",
    ],
    "comparator": ["target", "source_target", "method", "classifier", *_AGG, "kind"],
    "transfer": ["source_target", "target", "classifier", *_AGG],
    "gap_quantiles": [
        "target", "method", "quantile", "gap_low", "gap_high", "accuracy", "n_pairs", "pairs",
    ],
    "importance": [
        "target", "classifier", "proxy", "importance_mean", "importance_sd", "n_splits",
    ],
    "topk": ["target", "method", "k", "recall_mean", "recall_sd", "n_splits"],
    "borda": [
        "target", "model", "borda_mean", "n_splits_tested", "true_value", "borda_rank",
        "true_rank",
    ],
    "splits": ["split", "model", "side"],
}  # fmt: skip


def empty(name: str) -> pd.DataFrame:
    """An empty table with the columns of step ``name``."""
    return pd.DataFrame(columns=COLUMNS[name])


@dataclass
class PairData:
    """The prepared table as the steps read it.

    Attributes:
        table: ``model`` + oriented proxies + combined proxies + targets (one row per model).
        proxies / combined / targets: column names (the comparator sees ``proxies`` only).
        allowed: n×n boolean, the pairs that may be formed (``group_col``: same group only).
        min_gap / ties / target_ties: the counting rules of :mod:`.core`.
    """

    table: pd.DataFrame
    proxies: list[str]
    combined: list[str]
    targets: list[str]
    allowed: np.ndarray
    min_gap: float = 0.0
    ties: str = "half"
    target_ties: str = "drop"
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        """Number of models."""
        return len(self.table)

    @property
    def all_proxies(self) -> list[str]:
        """Single and combined proxies, in that order."""
        return self.proxies + self.combined

    @property
    def models(self) -> pd.Series:
        """Model names."""
        return self.table["model"]

    def values(self, col: str) -> np.ndarray:
        """Column ``col`` as floats."""
        key = ("v", col)
        if key not in self._cache:
            self._cache[key] = self.table[col].to_numpy(dtype=float)
        return self._cache[key]

    def proxy_matrix(self) -> np.ndarray:
        """(n, P) matrix of the single proxies (the comparator's input)."""
        return self.table[self.proxies].to_numpy(dtype=float)

    def valid(self, t: str) -> np.ndarray:
        """n×n: pairs whose gap in target ``t`` exceeds ``min_gap``, within ``allowed``."""
        key = ("valid", t)
        if key not in self._cache:
            self._cache[key] = valid_pairs(self.values(t), self.min_gap) & self.allowed
        return self._cache[key]

    def counted(self, t: str) -> np.ndarray:
        """n×n: pairs an accuracy on ``t`` counts (valid pairs; all pairs with target ties
        counted as half), within ``allowed``."""
        key = ("counted", t)
        if key not in self._cache:
            c = counted_pairs(self.values(t), self.min_gap, self.target_ties)
            self._cache[key] = c & self.allowed
        return self._cache[key]

    def credit(self, p: str, t: str) -> tuple[np.ndarray, np.ndarray]:
        """(credit, mask) of proxy ``p`` on target ``t`` (:func:`.core.credit_matrix`)."""
        key = ("credit", p, t)
        if key not in self._cache:
            c, m = credit_matrix(
                self.values(t),
                self.values(p),
                min_gap=self.min_gap,
                ties=self.ties,
                target_ties=self.target_ties,
            )
            self._cache[key] = (c, m & self.allowed)
        return self._cache[key]


@dataclass(frozen=True)
class Split:
    """One model-level split: train and test model indices, and every unordered pair of test
    models (``I[k] < J[k]``)."""

    index: int
    train: np.ndarray
    test: np.ndarray
    I: np.ndarray  # noqa: E741 - pair index arrays, as in the paper's notation
    J: np.ndarray


@dataclass
class ComparatorFit:
    """A comparator trained on one split's train models with one source target's labels.

    ``f`` holds f(I[k], J[k]) for every unordered test pair of the split; ``dests`` are the
    targets its test pairs are scored on (the source, plus every target for transfer)."""

    split: int
    source: str
    classifier: str
    importance: np.ndarray
    f: np.ndarray
    dests: list[str]


# -- over all pairs ------------------------------------------------------------------------
def proxy_accuracy(
    data: PairData,
    *,
    ppl_proxy: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
    kinds: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Pairwise accuracy of every proxy on every target over all pairs of the pool.

    Columns: ``COLUMNS["proxy_accuracy"]`` — accuracy, error = 1 − accuracy, n_pairs,
    n_proxy_ties (valid pairs the proxy ties on), a model-bootstrap percentile interval, and
    rel_error_reduction = (err_ppl − err) / err_ppl vs ``ppl_proxy`` with its interval.
    """
    rng = np.random.default_rng(seed)
    W = bootstrap_weights(data.n, n_boot, rng)
    kinds = kinds or {}
    rows = []
    for t in data.targets:
        acc_by, boot_by, first = {}, {}, len(rows)
        for p in data.all_proxies:
            credit, mask = data.credit(p, t)
            acc, n_pairs = score_credit(credit, mask)
            boot = bootstrap_accuracy(credit, mask, W)
            acc_by[p], boot_by[p] = acc, boot
            lo, hi = percentile_ci(boot)
            ties = np.triu(proxy_ties(data.values(p)) & data.valid(t), 1)
            rows.append(
                dict(
                    proxy=p, target=t, kind=kinds.get(p, "proxy"), accuracy=acc,
                    error=1 - acc, n_pairs=n_pairs, n_proxy_ties=int(ties.sum()), ci_low=lo,
                    ci_high=hi, error_ci_low=1 - hi, error_ci_high=1 - lo,
                    ppl_proxy=ppl_proxy or "",
                )
            )  # fmt: skip
        for r in rows[first:]:
            r["rel_error_reduction"] = r["rer_ci_low"] = r["rer_ci_high"] = np.nan
            if ppl_proxy is None:
                continue
            e_ppl, e = 1 - acc_by[ppl_proxy], 1 - acc_by[r["proxy"]]
            r["rel_error_reduction"] = (e_ppl - e) / e_ppl if e_ppl > 0 else np.nan
            be_ppl, be = 1 - boot_by[ppl_proxy], 1 - boot_by[r["proxy"]]
            with np.errstate(invalid="ignore", divide="ignore"):
                rer = np.where(be_ppl > 0, (be_ppl - be) / np.where(be_ppl > 0, be_ppl, 1), np.nan)
            r["rer_ci_low"], r["rer_ci_high"] = percentile_ci(rer)
    return pd.DataFrame(rows, columns=COLUMNS["proxy_accuracy"])


def correlations(data: PairData, *, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Spearman ρ and Kendall τ-b of each proxy with each target over all models, with
    model-bootstrap 95% percentile intervals. Columns: ``COLUMNS["correlations"]``."""
    rng = np.random.default_rng(seed + 1)
    n = data.n
    idx = rng.integers(0, n, size=(n_boot, n)) if n and n_boot > 0 else np.zeros((0, n), int)
    rows = []
    for t in data.targets:
        for p in data.all_proxies:
            c = rank_correlations(data.values(t), data.values(p), idx)
            rows.append(
                dict(
                    proxy=p, target=t, spearman=c["spearman"],
                    spearman_ci_low=c["spearman_ci"][0], spearman_ci_high=c["spearman_ci"][1],
                    kendall=c["kendall"], kendall_ci_low=c["kendall_ci"][0],
                    kendall_ci_high=c["kendall_ci"][1], n_models=n,
                )
            )  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS["correlations"])


# -- held-out models -----------------------------------------------------------------------
def plan_splits(
    data: PairData, *, n_splits: int = 20, train_frac: float = 0.6, seed: int = 0
) -> list[Split]:
    """Seeded model-level splits (:func:`.compare.model_splits`); none below 4 models."""
    if data.n < 4:
        return []
    out = []
    for s, (tr, te) in enumerate(model_splits(data.n, n_splits, train_frac, seed)):
        I, J = pairs_within(te)  # noqa: E741
        out.append(Split(s, tr, te, I, J))
    return out


def splits_table(data: PairData, splits: Sequence[Split]) -> pd.DataFrame:
    """Which model is on which side of each split. Columns: ``COLUMNS["splits"]``."""
    names = data.models.to_numpy()
    frames = [
        pd.DataFrame({"split": s.index, "model": names[idx], "side": side})
        for s in splits
        for idx, side in ((s.train, "train"), (s.test, "test"))
    ]
    return pd.concat(frames, ignore_index=True) if frames else empty("splits")


def fit_comparators(
    data: PairData,
    splits: Sequence[Split],
    *,
    classifiers: Sequence[str] = ("xgboost", "logreg"),
    seed: int = 0,
    transfer: bool = True,
    progress: bool = False,
    max_train_pairs: int | None = MAX_TRAIN_PAIRS,
    threads: int | str | None = None,
) -> list[ComparatorFit]:
    """Train a comparator per split × source target × classifier on the split's train models
    (pairs within the train side, both orientations) and predict every test pair. The first
    classifier is the main one: with ``transfer`` its fits are scored on every target.

    A train side with more than ``max_train_pairs`` valid pairs trains on a seeded sample of
    that many (:func:`.compare.sample_pairs`, seeded by (seed, split, target); every classifier
    of a split and target sees the same pairs). The split × target units run on ``threads``
    worker threads (:func:`ckpt_toolkit.threads.resolve_threads`; each fit itself is
    single-threaded), collected in order: the fits do not depend on the thread count."""
    from threadpoolctl import threadpool_limits

    from ...threads import resolve_threads

    P = data.proxy_matrix()
    units = [
        (s, ti, src)
        for s in splits
        for ti, src in enumerate(data.targets)
        if len(pairs_within(s.train, data.values(src), data.min_gap, data.allowed)[0])
    ]

    def fit_unit(unit: tuple[Split, int, str]) -> list[ComparatorFit]:
        s, ti, src = unit
        t = data.values(src)
        out = []
        for k, clf in enumerate(classifiers):
            comp = PairwiseComparator(clf, seed=seed + s.index).fit(
                P[s.train], t[s.train], data.min_gap, data.allowed[np.ix_(s.train, s.train)],
                max_pairs=max_train_pairs, pair_seed=(seed, s.index, ti),
            )  # fmt: skip
            dests = list(data.targets) if (transfer and k == 0) else [src]
            f = comp.predict_proba(P, s.I, s.J)
            out.append(ComparatorFit(s.index, src, clf, comp.importance(), f, dests))
        return out

    workers = resolve_threads(threads, cap=max(1, len(units))) if len(units) > 1 else 1
    bar = tqdm(total=len(units), desc="pairwise fits", disable=not progress)
    fits: list[ComparatorFit] = []
    # tiny linear-algebra problems: BLAS threads only add overhead and oversubscribe cores
    with threadpool_limits(limits=1), bar:
        if workers <= 1:
            results: Iterator[list[ComparatorFit]] = map(fit_unit, units)
        else:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pairwise-fit")
            results = pool.map(fit_unit, units)
        try:
            for unit_fits in results:
                fits.extend(unit_fits)
                bar.update(1)
        finally:
            if workers > 1:
                pool.shutdown(cancel_futures=True)
    return fits


def _test_pairs(data: PairData, s: Split, t: str) -> np.ndarray:
    """Boolean over the split's test pairs: the pairs an accuracy on ``t`` counts."""
    return data.counted(t)[s.I, s.J]


def _comparator_credit(data: PairData, s: Split, t: str, f: np.ndarray, keep: np.ndarray):
    """(credit, kept) of comparator probabilities on the kept test pairs of target ``t``."""
    ii, jj, f = s.I[keep], s.J[keep], f[keep]
    tv = data.values(t)
    tie = f == 0.5
    credit = np.where(tie, 0.5, ((f > 0.5) == (tv[ii] > tv[jj])).astype(float))
    credit = np.where(data.valid(t)[ii, jj], credit, 0.5)  # target ties (target_ties="half")
    kept = ~tie if data.ties == "exclude" else np.ones_like(tie)
    return credit, kept


def _proxy_test_credits(data: PairData, splits: Sequence[Split]) -> Iterator[tuple]:
    """For every split × target × proxy, in that order: ``(split, target, proxy, ii, jj,
    credit, kept)`` over the split's test pairs ``(ii, jj)`` that an accuracy on the target
    counts (``credit``/``kept`` as :meth:`PairData.credit`, on those pairs)."""
    for s in splits:
        for t in data.targets:
            keep = _test_pairs(data, s, t)
            ii, jj = s.I[keep], s.J[keep]
            for p in data.all_proxies:
                credit, mask = data.credit(p, t)
                yield s, t, p, ii, jj, credit[ii, jj], mask[ii, jj]


def _mean(credit: np.ndarray, keep: np.ndarray) -> float:
    keep = keep.astype(bool)
    return float(credit[keep].mean()) if keep.any() else float("nan")


def split_records(
    data: PairData, splits: Sequence[Split], fits: Sequence[ComparatorFit]
) -> pd.DataFrame:
    """Per split: the accuracy of every proxy (method ``proxy:<p>``, classifier ``none``) and
    of every fitted comparator (``comparator:<clf>``, per destination target) on the split's
    test pairs. Columns: ``COLUMNS["split_records"]`` (``n``: pairs scored)."""
    recs = []
    by_split = {s.index: s for s in splits}
    for s, t, p, _, _, c, k in _proxy_test_credits(data, splits):
        recs.append((t, "", f"proxy:{p}", "none", s.index, _mean(c, k), int(k.sum())))
    for fit in fits:
        s = by_split[fit.split]
        for t in fit.dests:
            keep = _test_pairs(data, s, t)
            c, k = _comparator_credit(data, s, t, fit.f, keep)
            method = f"comparator:{fit.classifier}"
            recs.append((t, fit.source, method, fit.classifier, s.index, _mean(c, k), len(c)))
    return pd.DataFrame(recs, columns=COLUMNS["split_records"])


def _agg(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = df.groupby(by, sort=False)
    out = g["accuracy"].agg(accuracy_mean="mean", accuracy_sd="std", n_splits="count")
    out["n_test_pairs_mean"] = g["n"].mean()
    out = out.reset_index()
    half = 1.96 * out["accuracy_sd"] / np.sqrt(out["n_splits"].clip(lower=1))
    # normal interval of the mean over splits (splits overlap, so it is optimistic; the sd is
    # the split-to-split spread the paper reports as ±)
    out["ci_low"], out["ci_high"] = out["accuracy_mean"] - half, out["accuracy_mean"] + half
    return out


def comparator_table(records: pd.DataFrame) -> pd.DataFrame:
    """Held-out accuracy of the comparators (trained and tested on the same target) and of
    each proxy on the same test pairs: mean, sd and a normal interval over splits.
    Columns: ``COLUMNS["comparator"]`` (``kind``: proxy / comparator)."""
    recs = records.dropna(subset=["accuracy"])
    diag = recs[(recs["source_target"] == "") | (recs["source_target"] == recs["target"])]
    if diag.empty:
        return empty("comparator")
    out = _agg(diag, ["target", "source_target", "method", "classifier"])
    out["kind"] = np.where(out["method"].str.startswith("proxy:"), "proxy", "comparator")
    out = out.sort_values(
        ["target", "kind", "accuracy_mean"], ascending=[True, True, False], kind="stable"
    )
    return out[COLUMNS["comparator"]].reset_index(drop=True)


def transfer_table(records: pd.DataFrame, classifier: str) -> pd.DataFrame:
    """The main comparator trained on one target's labels (``source_target``) and tested on
    another's (``target``); the diagonal equals :func:`comparator_table`'s.
    Columns: ``COLUMNS["transfer"]``."""
    recs = records.dropna(subset=["accuracy"])
    tr = recs[recs["method"] == f"comparator:{classifier}"]
    if tr.empty:
        return empty("transfer")
    return _agg(tr, ["source_target", "target", "classifier"])[COLUMNS["transfer"]]


def _gap_edges(data: PairData, t: str, q: int) -> np.ndarray:
    tv = data.values(t)
    ii, jj = np.nonzero(np.triu(data.valid(t), 1))
    gaps = np.abs(tv[ii] - tv[jj])
    if gaps.size == 0:
        return np.array([0.0, 0.0])
    return np.unique(np.quantile(gaps, np.linspace(0, 1, q + 1)))


def gap_quantiles(
    data: PairData, splits: Sequence[Split], fits: Sequence[ComparatorFit], *, q: int = 4
) -> pd.DataFrame:
    """Accuracy per quantile bin of the true gap |Δtarget| (bin edges from all valid pairs of
    the pool): test pairs pooled over splits for proxies and comparators (trained on the same
    target); without splits, proxies over all pairs. Columns: ``COLUMNS["gap_quantiles"]``."""
    edges = {t: _gap_edges(data, t, q) for t in data.targets}
    # per (target, method): credit sum and pair count per bin, accumulated with bincount
    sums: dict[tuple[str, str], np.ndarray] = {}
    counts: dict[tuple[str, str], np.ndarray] = {}

    def add(t: str, method: str, ii, jj, credit, keep) -> None:
        gap = np.abs(data.values(t)[ii] - data.values(t)[jj])
        b = np.digitize(gap, edges[t][1:-1], right=True)
        keep = keep.astype(bool)
        nb = len(edges[t])
        key = (t, method)
        if key not in sums:
            sums[key], counts[key] = np.zeros(nb), np.zeros(nb, dtype=np.int64)
        sums[key] += np.bincount(b[keep], weights=credit[keep], minlength=nb)
        counts[key] += np.bincount(b[keep], minlength=nb)

    by_split = {s.index: s for s in splits}
    for _, t, p, ii, jj, c, k in _proxy_test_credits(data, splits):
        add(t, f"proxy:{p}", ii, jj, c, k)
    for fit in fits:
        s, t = by_split[fit.split], fit.source
        keep = _test_pairs(data, s, t)
        c, k = _comparator_credit(data, s, t, fit.f, keep)
        add(t, f"comparator:{fit.classifier}", s.I[keep], s.J[keep], c, k)
    pairs = "test pairs pooled over splits"
    if not splits:  # too few models for splits: proxies over all pairs of the pool
        pairs = "all pairs"
        ii, jj = np.triu_indices(data.n, 1)
        for t in data.targets:
            for p in data.all_proxies:
                credit, mask = data.credit(p, t)
                add(t, f"proxy:{p}", ii, jj, credit[ii, jj], mask[ii, jj])
    rows = [
        (t, method, b, sums[(t, method)][b] / n, int(n))
        for (t, method), cnt in counts.items()
        for b, n in enumerate(cnt)
        if n > 0
    ]
    if not rows:
        return empty("gap_quantiles")
    agg = pd.DataFrame(rows, columns=["target", "method", "bin", "accuracy", "n_pairs"])
    agg = agg.sort_values(["target", "method", "bin"], kind="stable")
    agg["pairs"] = pairs
    agg["quantile"] = agg["bin"].astype(int) + 1
    agg["gap_low"] = [edges[t][b] for t, b in zip(agg["target"], agg["bin"])]
    agg["gap_high"] = [
        edges[t][min(b + 1, len(edges[t]) - 1)] for t, b in zip(agg["target"], agg["bin"])
    ]
    return agg[COLUMNS["gap_quantiles"]].reset_index(drop=True)


def importance(data: PairData, fits: Sequence[ComparatorFit]) -> pd.DataFrame:
    """Feature importance per proxy (its four features summed, normalised to 1), mean and sd
    over splits, per source target and classifier. Columns: ``COLUMNS["importance"]``."""
    rows = [
        (fit.source, fit.classifier, p, v, fit.split)
        for fit in fits
        for p, v in zip(data.proxies, fit.importance)
    ]
    if not rows:
        return empty("importance")
    df = pd.DataFrame(rows, columns=["target", "classifier", "proxy", "importance", "split"])
    return (
        df.groupby(["target", "classifier", "proxy"], sort=False)["importance"]
        .agg(importance_mean="mean", importance_sd="std", n_splits="count")
        .reset_index()
    )


def _borda_scores(n: int, s: Split, f: np.ndarray) -> np.ndarray:
    """Σ_j f(i, j) over the split's test pairs, per model (0 for train models)."""
    score = np.zeros(n)
    np.add.at(score, s.I, f)
    np.add.at(score, s.J, 1 - f)
    return score


def _topk_hits(score: np.ndarray, tv: np.ndarray, ks: Sequence[int], rng) -> dict[int, float]:
    """1.0 when a truly best model (max target) is among the top-k by ``score`` (ties in the
    score broken at random, seeded)."""
    order = np.lexsort((rng.random(len(score)), -score))
    best = set(np.flatnonzero(tv == tv.max()))
    return {k: float(bool(best & set(order[:k]))) for k in ks if k < len(score)}


def topk_recall(
    data: PairData,
    splits: Sequence[Split],
    fits: Sequence[ComparatorFit],
    *,
    ks: Sequence[int] = (1, 2, 3),
    seed: int = 0,
) -> pd.DataFrame:
    """Share of splits where a truly best test model is among the k best by each proxy's value
    or by the comparator's Borda score (ties broken at random, seeded per split).
    Columns: ``COLUMNS["topk"]``."""
    rows = []
    by_split = {s.index: s for s in splits}
    rngs = {s.index: np.random.default_rng([seed + 2, s.index]) for s in splits}
    for s in splits:
        for t in data.targets:
            tv = data.values(t)[s.test]
            for p in data.all_proxies:
                hits = _topk_hits(data.values(p)[s.test], tv, ks, rngs[s.index])
                rows += [(t, f"proxy:{p}", k, h) for k, h in hits.items()]
    for fit in fits:
        s = by_split[fit.split]
        score = _borda_scores(data.n, s, fit.f)[s.test]
        hits = _topk_hits(score, data.values(fit.source)[s.test], ks, rngs[s.index])
        rows += [(fit.source, f"comparator:{fit.classifier}", k, h) for k, h in hits.items()]
    if not rows:
        return empty("topk")
    df = pd.DataFrame(rows, columns=["target", "method", "k", "hit"])
    return (
        df.groupby(["target", "method", "k"], sort=False)["hit"]
        .agg(recall_mean="mean", recall_sd="std", n_splits="count")
        .reset_index()
    )


def borda(
    data: PairData, splits: Sequence[Split], fits: Sequence[ComparatorFit], classifier: str
) -> pd.DataFrame:
    """Borda ranking from the main comparator: per model, the mean over the splits where it was
    tested of Σ_j f(i, j) / (n_test − 1), ranked against the true ranking.
    Columns: ``COLUMNS["borda"]``; empty when no comparator was fitted."""
    main = [f for f in fits if f.classifier == classifier]
    if not main:
        return empty("borda")
    by_split = {s.index: s for s in splits}
    count = np.zeros(data.n)
    for s in splits:
        count[s.test] += 1
    frames = []
    for t in data.targets:
        total = np.zeros(data.n)
        for fit in (f for f in main if f.source == t):
            s = by_split[fit.split]
            total[s.test] += _borda_scores(data.n, s, fit.f)[s.test] / (len(s.test) - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        df = pd.DataFrame(
            {
                "target": t,
                "model": data.models,
                "borda_mean": score,
                "n_splits_tested": count.astype(int),
                "true_value": data.values(t),
            }
        )
        df["borda_rank"] = df["borda_mean"].rank(ascending=False, method="min")
        df["true_rank"] = df["true_value"].rank(ascending=False, method="min")
        frames.append(df.sort_values("borda_rank", kind="stable"))
    return pd.concat(frames, ignore_index=True)[COLUMNS["borda"]]
