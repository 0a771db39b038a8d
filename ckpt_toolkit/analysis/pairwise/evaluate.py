"""Which checkpoint will fine-tune better? Proxies and a learned comparator, evaluated pairwise.

The method of "Can Pre-training Indicators Reliably Predict Fine-tuning Outcomes of LLMs?"
(arXiv 2504.12491). Input: a per-model table — one row per model (checkpoint / variant), proxy
columns measured before fine-tuning, target columns measured after it. Every proxy is taken as
given, higher = better (``invert`` flips some: perplexity enters as 1/PPL or −PPL).

* :func:`evaluate_pairwise` — every analysis at once, returning a :class:`PairwiseResult`;
* :func:`write_outputs` — its tables as CSV files plus ``summary.json``;
* :func:`model_table_from_store` — the per-model table from the results store's tidy rows.

Pair-level primitives live in :mod:`.pairwise_core`, the comparator in :mod:`.pairwise_compare`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import ParameterError
from .pairwise_compare import CLASSIFIERS, PairwiseComparator, model_splits, pairs_within
from .pairwise_core import (
    bootstrap_accuracy,
    bootstrap_weights,
    check_ties,
    credit_matrix,
    flag_rows,
    minmax,
    percentile_ci,
    rank_correlations,
    score_credit,
)
from .pairwise_store import model_table_from_store  # noqa: F401  (re-exported API)

#: columns of a per-model table that are metadata, never proxies by default
META_COLUMNS = ("model", "run", "checkpoint", "step", "tokens", "params", "family")
#: name prefixes of proxies that are usually lower-is-better (a warning suggests ``invert``)
LOWER_IS_BETTER = ("ppl", "loss", "bpb", "sc_ppl", "sc_loss", "perplexity", "nll")

OUTPUT_FILES = {
    "proxy_accuracy": "proxy_accuracy.csv",
    "comparator": "comparator.csv",
    "transfer": "transfer.csv",
    "gap_quantiles": "gap_quantiles.csv",
    "importance": "importance.csv",
    "topk": "topk.csv",
    "borda": "borda.csv",
    "correlations": "correlations.csv",
    "flags": "flags.csv",
    "splits": "splits.csv",
}


class PairwiseWarning(UserWarning):
    """A suspicious value or setting in a pairwise analysis (the analysis still runs)."""


@dataclass
class PairwiseResult:
    """Everything :func:`evaluate_pairwise` computed; every attribute is a DataFrame except
    ``summary`` (a JSON-able dict) and ``table`` (the cleaned, oriented per-model table)."""

    proxy_accuracy: pd.DataFrame
    comparator: pd.DataFrame
    transfer: pd.DataFrame
    gap_quantiles: pd.DataFrame
    importance: pd.DataFrame
    topk: pd.DataFrame
    borda: pd.DataFrame
    correlations: pd.DataFrame
    flags: pd.DataFrame
    splits: pd.DataFrame
    table: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)

    def frames(self) -> dict[str, pd.DataFrame]:
        """The output tables by name (the keys of :data:`OUTPUT_FILES`)."""
        return {name: getattr(self, name) for name in OUTPUT_FILES}


# -- input handling ------------------------------------------------------------------------
def parse_combine(spec: str) -> tuple[str, dict[str, float]]:
    """Parse ``"name=+a,-b,c"`` into ``("name", {"a": 1.0, "b": -1.0, "c": 1.0})``.

    A combined proxy is the signed sum of the min-max normalised members; a member may carry a
    weight, ``"name=+0.5*a,-b"``.
    """
    if "=" not in spec:
        raise ParameterError(f"combined proxy {spec!r} must look like 'name=+a,-b'")
    name, _, members = spec.partition("=")
    name = name.strip()
    out: dict[str, float] = {}
    for raw in members.split(","):
        m = raw.strip()
        if not m:
            continue
        sign = -1.0 if m.startswith("-") else 1.0
        m = m.lstrip("+-").strip()
        weight = 1.0
        if "*" in m:
            w, _, m = m.partition("*")
            try:
                weight = float(w)
            except ValueError:
                raise ParameterError(f"combined proxy {spec!r}: bad weight {w!r}") from None
        out[m.strip()] = sign * weight
    if not name or not out:
        raise ParameterError(f"combined proxy {spec!r} needs a name and at least one member")
    return name, out


def _model_ids(table: pd.DataFrame, model_col: str | None) -> pd.Series:
    if model_col is not None:
        if model_col not in table.columns:
            raise ParameterError(f"model column {model_col!r} not in the table")
        ids = table[model_col]
    elif "model" in table.columns:
        ids = table["model"]
    elif "checkpoint" in table.columns:
        ids = table["checkpoint"]
    else:
        ids = pd.Series(table.index, index=table.index)
    ids = ids.astype(str).reset_index(drop=True)
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].unique()[:3].tolist()
        raise ParameterError(f"model ids must be unique; duplicated: {dup}")
    return ids


def _numeric(table: pd.DataFrame, col: str, what: str) -> np.ndarray:
    if col not in table.columns:
        raise ParameterError(
            f"{what} column {col!r} not in the table; columns: {list(table.columns)}"
        )
    x = pd.to_numeric(table[col], errors="coerce")
    bad = table[col].notna() & x.isna()
    if bad.any():
        raise ParameterError(
            f"{what} column {col!r} holds non-numeric values, e.g. {table[col][bad].iloc[0]!r}"
        )
    return x.to_numpy(dtype=float)


def default_ppl_proxy(proxies: Sequence[str]) -> str | None:
    """The perplexity proxy errors are compared against: ``inv_ppl`` if present, else the first
    proxy whose name starts with ``ppl``, else the first starting with ``inv_ppl``."""
    if "inv_ppl" in proxies:
        return "inv_ppl"
    for prefix in ("ppl", "inv_ppl"):
        for p in proxies:
            if p.startswith(prefix):
                return p
    return None


def _prepare(
    table: pd.DataFrame,
    targets: Sequence[str],
    proxies: Sequence[str] | None,
    invert: Iterable[str],
    combine: Mapping[str, Mapping[str, float]] | Iterable[str] | None,
    model_col: str | None,
    z_max: float,
    drop_flagged: bool,
    auto_combine: bool,
) -> tuple[pd.DataFrame, list[str], list[str], list[str], pd.DataFrame, list[str]]:
    """Oriented, cleaned table (``model`` + proxies + combined + targets), base proxies,
    combined-proxy names, targets, flags and warning messages."""
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    targets = list(dict.fromkeys(targets))
    if not targets:
        raise ParameterError("no target column given")
    ids = _model_ids(table, model_col)
    table = table.reset_index(drop=True)
    if proxies is None:
        skip = set(targets) | set(META_COLUMNS) | {model_col}
        proxies = [
            c
            for c in table.columns
            if c not in skip
            and pd.api.types.is_numeric_dtype(table[c])
            and not str(c).startswith(("sft:", "config:"))
        ]
    elif isinstance(proxies, str):
        proxies = [p.strip() for p in proxies.split(",") if p.strip()]
    proxies = list(dict.fromkeys(proxies))
    if not proxies:
        raise ParameterError("no proxy column given or found in the table")
    overlap = set(proxies) & set(targets)
    if overlap:
        raise ParameterError(f"column(s) {sorted(overlap)} given both as proxy and as target")
    invert = list(dict.fromkeys(invert or ()))
    unknown = [p for p in invert if p not in proxies]
    if unknown:
        raise ParameterError(f"invert names {unknown}, which are not proxies {proxies}")
    msgs: list[str] = []
    for p in proxies:
        if p not in invert and p.lower().startswith(LOWER_IS_BETTER):
            msgs.append(
                f"proxy {p!r} looks lower-is-better but is used as given (higher = better); "
                f"pass invert=[{p!r}] (--invert {p}) if lower is better"
            )

    out = pd.DataFrame({"model": ids})
    for p in proxies:
        out[p] = _numeric(table, p, "proxy")
    for t in targets:
        out[t] = _numeric(table, t, "target")
    # flags report the values as given (before orientation); robust z is sign-symmetric
    cols = proxies + targets
    flags = flag_rows(out, cols, out["model"], z_max=z_max)
    nan_flags = flags[flags["action"] == "excluded"]
    # outliers are judged within the models that stay (not against rows excluded for NaN)
    ok = out[~out["model"].isin(set(nan_flags["model"]))]
    out_flags = flag_rows(ok, cols, ok["model"], z_max=z_max) if len(ok) else flags.iloc[:0]
    flags = pd.concat([nan_flags, out_flags[out_flags["action"] == "kept"]], ignore_index=True)
    for p in invert:
        out[p] = -out[p]
    excluded = sorted(set(flags.loc[flags["action"] == "excluded", "model"]))
    if excluded:
        bad = flags[flags["action"] == "excluded"]
        no_target = out.loc[out[targets].isna().all(axis=1), "model"]
        no_target = sorted(set(no_target) & set(excluded))
        other = [m for m in excluded if m not in set(no_target)]
        reasons = bad.groupby("model")["reason"].first()
        parts = []
        if no_target:
            parts.append(
                f"{len(no_target)} without any target value (not fine-tuned?): "
                + ", ".join(no_target[:5])
                + (" ..." if len(no_target) > 5 else "")
            )
        if other:
            parts.append(
                f"{len(other)} with missing or non-finite values: "
                + "; ".join(f"{m} ({reasons[m]})" for m in other[:5])
                + (" ..." if len(other) > 5 else "")
            )
        msgs.append(f"{len(excluded)} model(s) excluded (see flags.csv): " + "; ".join(parts))
    outliers = flags[flags["action"] == "kept"]
    if len(outliers):
        if drop_flagged:
            flags.loc[flags["action"] == "kept", "action"] = "excluded"
            excluded = sorted(set(excluded) | set(outliers["model"]))
        msgs.append(
            f"{len(outliers)} suspicious value(s) far outside the pool's range "
            f"({'dropped' if drop_flagged else 'kept'}): "
            + "; ".join(f"{r.model}: {r.reason}" for r in outliers.head(5).itertuples())
        )
    out = out[~out["model"].isin(excluded)].reset_index(drop=True)

    # combined proxies: signed sums of min-max normalised (oriented) proxies over the pool
    combos: dict[str, dict[str, float]] = {}
    if combine:
        items = combine.items() if isinstance(combine, Mapping) else map(parse_combine, combine)
        for name, members in items:
            combos[name] = dict(members)
    if auto_combine and len(proxies) >= 2 and "combo:all" not in combos:
        combos["combo:all"] = {p: 1.0 for p in proxies}
    for name, members in combos.items():
        if name in out.columns:
            raise ParameterError(f"combined proxy name {name!r} clashes with a column")
        missing = [m for m in members if m not in proxies]
        if missing:
            raise ParameterError(
                f"combined proxy {name!r} uses {missing}, which are not proxies {proxies}"
            )
        out[name] = sum(w * minmax(out[m].to_numpy()) for m, w in members.items())
    return out, proxies, list(combos), targets, flags, msgs


# -- analyses over all pairs ---------------------------------------------------------------
def proxy_accuracy_table(
    table: pd.DataFrame,
    targets: Sequence[str],
    proxies: Sequence[str],
    *,
    ties: str = "half",
    min_gap: float = 0.0,
    ppl_proxy: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
    kinds: Mapping[str, str] | None = None,
    allowed: np.ndarray | None = None,
) -> pd.DataFrame:
    """Pairwise accuracy of every proxy on every target over all pairs of the table.

    Columns: proxy, target, kind, accuracy, error, n_pairs, n_proxy_ties, ci_low, ci_high
    (model-bootstrap percentile interval of the accuracy), error_ci_low, error_ci_high,
    rel_error_reduction (vs ``ppl_proxy``: (err_ppl − err) / err_ppl, as in the paper's
    tables) with rer_ci_low / rer_ci_high, and ppl_proxy.
    """
    rng = np.random.default_rng(seed)
    W = bootstrap_weights(len(table), n_boot, rng)
    rows = []
    for t in targets:
        tv = table[t].to_numpy(dtype=float)
        acc_by, boot_by = {}, {}
        for p in proxies:
            pv = table[p].to_numpy(dtype=float)
            credit, mask = credit_matrix(tv, pv, min_gap=min_gap, ties=ties)
            target_ok = np.abs(tv[:, None] - tv) > min_gap
            if allowed is not None:
                mask, target_ok = mask & allowed, target_ok & allowed
            acc, n_pairs = score_credit(credit, mask)
            tie_mask = np.triu(credit == 0.5, 1) & np.triu(target_ok, 1)
            boot = bootstrap_accuracy(credit, mask, W)
            acc_by[p], boot_by[p] = acc, boot
            lo, hi = percentile_ci(boot)
            rows.append(
                dict(
                    proxy=p,
                    target=t,
                    kind=(kinds or {}).get(p, "proxy"),
                    accuracy=acc,
                    error=1 - acc,
                    n_pairs=n_pairs,
                    n_proxy_ties=int(tie_mask.sum()),
                    ci_low=lo,
                    ci_high=hi,
                    error_ci_low=1 - hi,
                    error_ci_high=1 - lo,
                )
            )
        for r in rows[-len(proxies) :]:
            p = r["proxy"]
            r["ppl_proxy"] = ppl_proxy or ""
            if ppl_proxy is None:
                r["rel_error_reduction"] = r["rer_ci_low"] = r["rer_ci_high"] = np.nan
                continue
            e_ppl, e = 1 - acc_by[ppl_proxy], 1 - acc_by[p]
            r["rel_error_reduction"] = (e_ppl - e) / e_ppl if e_ppl > 0 else np.nan
            be_ppl, be = 1 - boot_by[ppl_proxy], 1 - boot_by[p]
            with np.errstate(invalid="ignore", divide="ignore"):
                rer = np.where(be_ppl > 0, (be_ppl - be) / np.where(be_ppl > 0, be_ppl, 1), np.nan)
            r["rer_ci_low"], r["rer_ci_high"] = percentile_ci(rer)
    return pd.DataFrame(rows)


def correlation_table(
    table: pd.DataFrame,
    targets: Sequence[str],
    proxies: Sequence[str],
    *,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman ρ and Kendall τ of each proxy with each target, with model-bootstrap 95%
    percentile intervals. Columns: proxy, target, spearman, spearman_ci_low/high, kendall,
    kendall_ci_low/high, n_models."""
    rng = np.random.default_rng(seed + 1)
    n = len(table)
    idx = rng.integers(0, n, size=(n_boot, n)) if n and n_boot > 0 else np.zeros((0, n), int)
    rows = []
    for t in targets:
        tv = table[t].to_numpy(dtype=float)
        for p in proxies:
            c = rank_correlations(tv, table[p].to_numpy(dtype=float), idx)
            rows.append(
                dict(
                    proxy=p,
                    target=t,
                    spearman=c["spearman"],
                    spearman_ci_low=c["spearman_ci"][0],
                    spearman_ci_high=c["spearman_ci"][1],
                    kendall=c["kendall"],
                    kendall_ci_low=c["kendall_ci"][0],
                    kendall_ci_high=c["kendall_ci"][1],
                    n_models=n,
                )
            )
    return pd.DataFrame(rows)


# -- learning to compare -------------------------------------------------------------------
def _pred_credit(f: np.ndarray, truth: np.ndarray, ties: str) -> tuple[np.ndarray, np.ndarray]:
    """Credit of comparator probabilities ``f`` against booleans ``truth`` (i beats j)."""
    tie = f == 0.5
    credit = np.where(tie, 0.5, ((f > 0.5) == truth).astype(float))
    keep = ~tie if ties == "exclude" else np.ones_like(tie)
    return credit, keep


def _topk_hits(score: np.ndarray, tv: np.ndarray, ks: Sequence[int], rng) -> dict[int, float]:
    """1.0 when a truly best model (max target) is among the top-k by ``score`` (ties in the
    score broken at random, seeded)."""
    order = np.lexsort((rng.random(len(score)), -score))
    best = set(np.flatnonzero(tv == tv.max()))
    return {k: float(bool(best & set(order[:k]))) for k in ks if k < len(score)}


def _gap_edges(tv: np.ndarray, min_gap: float, q: int, allowed: np.ndarray) -> np.ndarray:
    ii, jj = np.triu_indices(len(tv), 1)
    keep = allowed[ii, jj]
    ii, jj = ii[keep], jj[keep]
    gaps = np.abs(tv[ii] - tv[jj])
    gaps = gaps[gaps > min_gap]
    if gaps.size == 0:
        return np.array([0.0, 0.0])
    return np.unique(np.quantile(gaps, np.linspace(0, 1, q + 1)))


def evaluate_pairwise(
    table: pd.DataFrame,
    targets: Sequence[str] | str,
    proxies: Sequence[str] | str | None = None,
    *,
    invert: Iterable[str] = (),
    combine: Mapping[str, Mapping[str, float]] | Iterable[str] | None = None,
    auto_combine: bool = True,
    ppl_proxy: str | None = None,
    ties: str = "half",
    min_gap: float = 0.0,
    classifier: str = "xgboost",
    baseline: str | None = "logreg",
    n_splits: int = 20,
    train_frac: float = 0.6,
    seed: int = 0,
    n_boot: int = 200,
    gap_quantiles: int = 4,
    topk: Sequence[int] = (1, 2, 3),
    z_max: float = 5.0,
    drop_flagged: bool = False,
    model_col: str | None = None,
    group_col: str | None = None,
    transfer: bool = True,
    progress: bool = True,
) -> PairwiseResult:
    """Evaluate proxies and the learned comparator on predicting pairwise fine-tuning order.

    Args:
        table: one row per model; a ``model`` (or ``checkpoint``) column names the models,
            else the index does.
        targets: post-fine-tuning score columns (e.g. ``sft:math``).
        proxies: pre-fine-tuning columns, higher = better; default every numeric column that is
            neither a target, ``sft:*``, ``config:*`` nor metadata (step, tokens, params, ...).
        invert: proxies where lower is better (they are negated).
        combine: combined proxies, ``{"name": {"a": +1, "b": -1}}`` or ``["name=+a,-b"]``:
            signed sums of min-max normalised proxies over the pool.
        auto_combine: also add ``combo:all``, the sum of all normalised proxies.
        ppl_proxy: the perplexity proxy for the relative error reduction (default
            :func:`default_ppl_proxy`).
        ties: proxy (or comparator) ties get half credit (``half``) or are left out (``exclude``).
        min_gap: pairs with |Δtarget| ≤ min_gap are target ties and left out everywhere.
        classifier / baseline: comparator classifiers (``xgboost``, ``logreg``); the baseline
            is also scored on the same splits (None: skip it).
        n_splits / train_frac / seed: repeated seeded model-level splits.
        n_boot: model-bootstrap resamples for intervals on all-pairs accuracies and correlations.
        gap_quantiles: number of quantile bins of the true gap |Δtarget|.
        topk: k values for top-k recall of the truly best model.
        z_max: robust z above which a value is flagged; ``drop_flagged`` drops those models.
        group_col: form pairs only between models with the same value in this column (e.g.
            ``params``: compare checkpoints at a fixed model size, as the paper does); the
            Borda ranking still covers all test models.
        transfer: compute the cross-target transfer matrix.
        progress: tqdm bar over splits.
    """
    check_ties(ties)
    if classifier not in CLASSIFIERS:
        raise ParameterError(f"classifier must be one of {CLASSIFIERS}, not {classifier!r}")
    if baseline is not None and baseline not in CLASSIFIERS:
        raise ParameterError(f"baseline must be one of {CLASSIFIERS} or None, not {baseline!r}")
    if min_gap < 0:
        raise ParameterError(f"min_gap must be >= 0, not {min_gap}")
    clean, base, combos, targets, flags, msgs = _prepare(
        table, targets, proxies, invert, combine, model_col, z_max, drop_flagged, auto_combine
    )
    all_proxies = base + combos
    if group_col is not None:
        if group_col not in table.columns:
            raise ParameterError(f"group column {group_col!r} not in the table")
        by_model = dict(zip(_model_ids(table, model_col), table[group_col].reset_index(drop=True)))
        clean.insert(1, "group", [by_model[m] for m in clean["model"]])
        g = clean["group"].to_numpy()
        allowed = g[:, None] == g[None, :]
    else:
        allowed = np.ones((len(clean), len(clean)), dtype=bool)
    if ppl_proxy is None:
        ppl_proxy = default_ppl_proxy(base)
    elif ppl_proxy not in all_proxies:
        raise ParameterError(f"ppl_proxy {ppl_proxy!r} is not among the proxies {all_proxies}")
    for m in msgs:
        warnings.warn(m, PairwiseWarning, stacklevel=2)
    n = len(clean)
    if n < 2:
        raise ParameterError(f"need at least 2 usable models for pairs; got {n}")
    kinds = {p: ("combined" if p in combos else "proxy") for p in all_proxies}

    acc = proxy_accuracy_table(
        clean,
        targets,
        all_proxies,
        ties=ties,
        min_gap=min_gap,
        ppl_proxy=ppl_proxy,
        n_boot=n_boot,
        seed=seed,
        kinds=kinds,
        allowed=allowed if group_col is not None else None,
    )
    corr = correlation_table(clean, targets, all_proxies, n_boot=n_boot, seed=seed)

    P = clean[base].to_numpy(dtype=float)
    T = {t: clean[t].to_numpy(dtype=float) for t in targets}
    classifiers = [classifier] + ([baseline] if baseline and baseline != classifier else [])
    credits = {}
    for p in all_proxies:
        for t in targets:
            c, m = credit_matrix(T[t], clean[p].to_numpy(dtype=float), min_gap=min_gap, ties=ties)
            credits[(p, t)] = (c, m & allowed)
    split_recs, imp_recs, topk_recs, gap_recs, split_rows = [], [], [], [], []
    borda_sum = {t: np.zeros(n) for t in targets}
    borda_cnt = np.zeros(n)
    rng = np.random.default_rng(seed + 2)
    edges = {t: _gap_edges(T[t], min_gap, gap_quantiles, allowed) for t in targets}
    splits = model_splits(n, n_splits, train_frac, seed) if n >= 4 else []
    if n < 4:
        warnings.warn(
            f"only {n} models: the learned comparator needs at least 4; skipping it",
            PairwiseWarning,
            stacklevel=2,
        )
    # tiny linear-algebra problems: BLAS threads only add overhead and oversubscribe cores
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        for s, (tr, te) in enumerate(tqdm(splits, desc="pairwise splits", disable=not progress)):
            split_rows += [(s, clean["model"][i], "train") for i in tr]
            split_rows += [(s, clean["model"][i], "test") for i in te]
            borda_cnt[te] += 1
            test_pairs = {t: pairs_within(te, T[t], min_gap, allowed) for t in targets}
            all_I, all_J = pairs_within(te)
            # unsupervised proxies re-scored on exactly the comparator's test pairs
            for t in targets:
                ii, jj = test_pairs[t]
                gbin = np.digitize(np.abs(T[t][ii] - T[t][jj]), edges[t][1:-1], right=True)
                for p in all_proxies:
                    credit, mask = credits[(p, t)]
                    c, k = credit[ii, jj], mask[ii, jj]
                    split_recs.append((t, "", f"proxy:{p}", "none", s, _mean(c, k), int(k.sum())))
                    gap_recs += [(t, f"proxy:{p}", b, ci, ki) for b, ci, ki in zip(gbin, c, k)]
                    hits = _topk_hits(clean[p].to_numpy()[te], T[t][te], topk, rng)
                    topk_recs += [(t, f"proxy:{p}", k_, h) for k_, h in hits.items()]
            for src in targets:
                Itr, _ = pairs_within(tr, T[src], min_gap, allowed)
                if len(Itr) == 0:
                    continue
                for clf in classifiers:
                    comp = PairwiseComparator(clf, seed=seed + s).fit(
                        P[tr], T[src][tr], min_gap, allowed[np.ix_(tr, tr)]
                    )
                    imp_recs += [(src, clf, p, v, s) for p, v in zip(base, comp.importance())]
                    dests = targets if (transfer and clf == classifier) else [src]
                    for t in dests:
                        ii, jj = test_pairs[t]
                        f = comp.predict_proba(P, ii, jj)
                        c, k = _pred_credit(f, T[t][ii] > T[t][jj], ties)
                        split_recs.append(
                            (t, src, f"comparator:{clf}", clf, s, _mean(c, k), len(ii))
                        )
                        if t == src:
                            gbin = np.digitize(
                                np.abs(T[t][ii] - T[t][jj]), edges[t][1:-1], right=True
                            )
                            gap_recs += [
                                (t, f"comparator:{clf}", b, ci, ki) for b, ci, ki in zip(gbin, c, k)
                            ]
                    # Borda count over all test pairs: score_i = Σ_j f(i, j) (§4.4)
                    f_all = comp.predict_proba(P, all_I, all_J)
                    score = np.zeros(n)
                    np.add.at(score, all_I, f_all)
                    np.add.at(score, all_J, 1 - f_all)
                    hits = _topk_hits(score[te], T[src][te], topk, rng)
                    topk_recs += [(src, f"comparator:{clf}", k_, h) for k_, h in hits.items()]
                    if clf == classifier:
                        borda_sum[src][te] += score[te] / (len(te) - 1)

    recs = pd.DataFrame(
        split_recs,
        columns=["target", "source_target", "method", "classifier", "split", "accuracy", "n"],
    )
    comparator, transfer_df = _aggregate_splits(recs, classifier)
    result = PairwiseResult(
        proxy_accuracy=acc,
        comparator=comparator,
        transfer=transfer_df,
        gap_quantiles=_aggregate_gaps(
            gap_recs, edges, splits, clean, targets, all_proxies, credits
        ),
        importance=_aggregate_importance(imp_recs),
        topk=_aggregate_topk(topk_recs),
        borda=_borda_table(clean, targets, borda_sum, borda_cnt),
        correlations=corr,
        flags=flags,
        splits=pd.DataFrame(split_rows, columns=["split", "model", "side"]),
        table=clean,
    )
    result.summary = _summary(
        result,
        targets,
        base,
        combos,
        ppl_proxy,
        msgs,
        dict(
            ties=ties,
            min_gap=min_gap,
            classifier=classifier,
            baseline=baseline,
            n_splits=len(splits),
            train_frac=train_frac,
            seed=seed,
            n_boot=n_boot,
            invert=list(invert or ()),
            gap_quantiles=gap_quantiles,
            topk=list(topk),
            z_max=z_max,
            drop_flagged=drop_flagged,
            group_col=group_col,
        ),
        n_input=len(table),
    )
    return result


def _mean(credit: np.ndarray, keep: np.ndarray) -> float:
    keep = keep.astype(bool)
    return float(credit[keep].mean()) if keep.any() else float("nan")


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


def _aggregate_splits(recs: pd.DataFrame, classifier: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    cols = [
        "target",
        "source_target",
        "method",
        "classifier",
        "accuracy_mean",
        "accuracy_sd",
        "n_splits",
        "n_test_pairs_mean",
        "ci_low",
        "ci_high",
    ]
    if recs.empty:
        empty = pd.DataFrame(columns=cols)
        return empty, empty.copy()
    recs = recs.dropna(subset=["accuracy"])
    diag = recs[(recs["source_target"] == "") | (recs["source_target"] == recs["target"])]
    comparator = _agg(diag, ["target", "source_target", "method", "classifier"])[cols]
    comparator["kind"] = np.where(
        comparator["method"].str.startswith("proxy:"), "proxy", "comparator"
    )
    comparator = comparator.sort_values(
        ["target", "kind", "accuracy_mean"], ascending=[True, True, False], kind="stable"
    )
    tr = recs[recs["method"] == f"comparator:{classifier}"]
    transfer = _agg(tr, ["source_target", "target", "classifier"])
    transfer = transfer[
        [
            "source_target",
            "target",
            "classifier",
            "accuracy_mean",
            "accuracy_sd",
            "n_splits",
            "n_test_pairs_mean",
            "ci_low",
            "ci_high",
        ]
    ]
    return comparator.reset_index(drop=True), transfer.reset_index(drop=True)


def _aggregate_gaps(gap_recs, edges, splits, clean, targets, proxies, credits) -> pd.DataFrame:
    cols = ["target", "method", "quantile", "gap_low", "gap_high", "accuracy", "n_pairs", "pairs"]
    if gap_recs:
        rows, pairs = gap_recs, "test pairs pooled over splits"
    else:  # too few models for splits: proxies over all pairs of the pool
        rows, pairs = [], "all pairs"
        for t in targets:
            tv = clean[t].to_numpy(dtype=float)
            ii, jj = np.triu_indices(len(tv), 1)
            b = np.digitize(np.abs(tv[ii] - tv[jj]), edges[t][1:-1], right=True)
            for p in proxies:
                credit, mask = credits[(p, t)]
                rows += [
                    (t, f"proxy:{p}", bi, c, m) for bi, c, m in zip(b, credit[ii, jj], mask[ii, jj])
                ]
    g = pd.DataFrame(rows, columns=["target", "method", "bin", "credit", "keep"])
    g = g[g["keep"].astype(bool)]
    agg = (
        g.groupby(["target", "method", "bin"])
        .agg(accuracy=("credit", "mean"), n_pairs=("credit", "size"))
        .reset_index()
    )
    agg["pairs"] = pairs
    agg["quantile"] = agg["bin"].astype(int) + 1
    agg["gap_low"] = [edges[t][b] for t, b in zip(agg["target"], agg["bin"])]
    agg["gap_high"] = [
        edges[t][min(b + 1, len(edges[t]) - 1)] for t, b in zip(agg["target"], agg["bin"])
    ]
    return agg[cols]


def _aggregate_importance(imp_recs) -> pd.DataFrame:
    df = pd.DataFrame(imp_recs, columns=["target", "classifier", "proxy", "importance", "split"])
    if df.empty:
        return pd.DataFrame(
            columns=[
                "target",
                "classifier",
                "proxy",
                "importance_mean",
                "importance_sd",
                "n_splits",
            ]
        )
    return (
        df.groupby(["target", "classifier", "proxy"], sort=False)["importance"]
        .agg(importance_mean="mean", importance_sd="std", n_splits="count")
        .reset_index()
    )


def _aggregate_topk(topk_recs) -> pd.DataFrame:
    df = pd.DataFrame(topk_recs, columns=["target", "method", "k", "hit"])
    if df.empty:
        return pd.DataFrame(
            columns=["target", "method", "k", "recall_mean", "recall_sd", "n_splits"]
        )
    return (
        df.groupby(["target", "method", "k"], sort=False)["hit"]
        .agg(recall_mean="mean", recall_sd="std", n_splits="count")
        .reset_index()
    )


def _borda_table(clean, targets, borda_sum, borda_cnt) -> pd.DataFrame:
    rows = []
    for t in targets:
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(borda_cnt > 0, borda_sum[t] / np.maximum(borda_cnt, 1), np.nan)
        df = pd.DataFrame(
            {
                "target": t,
                "model": clean["model"],
                "borda_mean": score,
                "n_splits_tested": borda_cnt.astype(int),
                "true_value": clean[t],
            }
        )
        df["borda_rank"] = df["borda_mean"].rank(ascending=False, method="min")
        df["true_rank"] = df["true_value"].rank(ascending=False, method="min")
        rows.append(df.sort_values("borda_rank", kind="stable"))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _summary(result, targets, base, combos, ppl_proxy, msgs, config, n_input) -> dict:
    per_target = {}
    acc, comp = result.proxy_accuracy, result.comparator
    for t in targets:
        a = acc[acc["target"] == t].sort_values("accuracy", ascending=False)
        d: dict[str, Any] = {}
        if len(a):
            d["best_proxy"] = a.iloc[0]["proxy"]
            d["best_proxy_accuracy"] = a.iloc[0]["accuracy"]
        if ppl_proxy:
            d["ppl_accuracy"] = float(a.loc[a["proxy"] == ppl_proxy, "accuracy"].iloc[0])
        c = comp[(comp["target"] == t) & (comp["kind"] == "comparator")] if len(comp) else comp
        for r in c.itertuples() if len(c) else []:
            d[f"{r.method}_accuracy_mean"] = r.accuracy_mean
            d[f"{r.method}_accuracy_sd"] = r.accuracy_sd
        per_target[t] = d
    return _jsonable(
        {
            "n_models_input": n_input,
            "n_models_used": len(result.table),
            "n_models_excluded": n_input - len(result.table),
            "targets": list(targets),
            "proxies": list(base),
            "combined_proxies": list(combos),
            "ppl_proxy": ppl_proxy,
            "config": config,
            "per_target": per_target,
            "n_flags": len(result.flags),
            "warnings": msgs,
            "files": OUTPUT_FILES,
        }
    )


def write_outputs(result: PairwiseResult, out_dir: str | Path) -> dict[str, Path]:
    """Write every table of ``result`` as CSV (see :data:`OUTPUT_FILES`) plus ``summary.json``
    and the cleaned per-model table ``models.csv`` into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, df in result.frames().items():
        paths[name] = out_dir / OUTPUT_FILES[name]
        df.to_csv(paths[name], index=False)
    paths["models"] = out_dir / "models.csv"
    result.table.to_csv(paths["models"], index=False)
    paths["summary"] = out_dir / "summary.json"
    paths["summary"].write_text(json.dumps(result.summary, indent=2, sort_keys=False) + "\n")
    return paths
