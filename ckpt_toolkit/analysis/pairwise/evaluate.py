"""Which checkpoint will fine-tune better? Every pairwise analysis, run as named steps.

The method of "Can Pre-training Indicators Reliably Predict Fine-tuning Outcomes of LLMs?"
(arXiv 2504.12491). Input: a per-model table — one row per model (checkpoint / variant), proxy
columns measured before fine-tuning, target columns measured after it. Every proxy is taken as
given, higher = better (``invert`` flips some: perplexity enters as 1/PPL or −PPL).

* :func:`evaluate_pairwise` — prepare the table (:func:`.inputs.prepare_table`), then run the
  steps of :mod:`.steps` and collect their tables in a :class:`PairwiseResult`;
* :func:`write_outputs` — its tables as CSV files plus ``summary.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ParameterError
from ...threads import parse_threads
from . import steps
from .compare import CLASSIFIERS, MAX_TRAIN_PAIRS, comparator_skip_reason
from .core import check_target_ties, check_ties
from .inputs import PairwiseInputs, default_ppl_proxy, pairwise_inputs, prepare_table, warn_all
from .signal import SIGNAL_COLUMNS, mark_ground_truth

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
    "signal": "ground_truth_signal.csv",
}


@dataclass
class PairwiseResult:
    """Everything :func:`evaluate_pairwise` computed; every attribute is a DataFrame (columns:
    :data:`.steps.COLUMNS`, ``signal``: :data:`.signal.SIGNAL_COLUMNS`) except ``summary`` (a
    JSON-able dict) and ``table`` (the cleaned, oriented per-model table)."""

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
    signal: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SIGNAL_COLUMNS))
    summary: dict[str, Any] = field(default_factory=dict)

    def frames(self) -> dict[str, pd.DataFrame]:
        """The output tables by name (the keys of :data:`OUTPUT_FILES`)."""
        return {name: getattr(self, name) for name in OUTPUT_FILES}


def _allowed(
    table: pd.DataFrame, clean: pd.DataFrame, group_col: str | None, model_col: str | None
) -> np.ndarray:
    n = len(clean)
    if group_col is None:
        return ~np.eye(n, dtype=bool)
    if group_col not in table.columns:
        raise ParameterError(f"group column {group_col!r} not in the table")
    names = (
        table[model_col].astype(str) if model_col is not None
        else pd.Series([f"row{i}" for i in range(len(table))])
    )  # fmt: skip
    by_model = dict(zip(names, table[group_col].reset_index(drop=True)))
    g = np.asarray([by_model[m] for m in clean["model"]], dtype=object)
    clean.insert(1, "group", g)
    return (g[:, None] == g[None, :]) & ~np.eye(n, dtype=bool)


def _check_numbers(min_gap, n_splits, train_frac, n_boot, gap_quantiles, topk, z_max) -> None:
    """Reject out-of-range numeric options before any work (the message names the option)."""
    checks = (
        (min_gap >= 0, f"min_gap (--min-gap) must be >= 0, not {min_gap}"),
        (n_splits >= 1, f"n_splits (--splits) must be at least 1, not {n_splits}"),
        (
            0 < train_frac < 1,
            f"train_frac (--train-frac) must be between 0 and 1, not {train_frac}",
        ),
        (n_boot >= 0, f"n_boot (--n-boot) must be >= 0, not {n_boot}"),
        (gap_quantiles >= 1, f"gap_quantiles must be at least 1, not {gap_quantiles}"),
        (all(k >= 1 for k in topk), f"topk values must be at least 1, not {list(topk)}"),
        (z_max > 0, f"z_max (--z-max) must be > 0, not {z_max}"),
    )
    for ok, message in checks:
        if not ok:
            raise ParameterError(message)


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
    target_ties: str = "drop",
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
    signal: pd.DataFrame | None = None,
    progress: bool = True,
    max_train_pairs: int | None = MAX_TRAIN_PAIRS,
    threads: int | str | None = None,
) -> PairwiseResult:
    """Evaluate proxies and the learned comparator on predicting pairwise fine-tuning order.

    Args:
        table: one row per model; a model-name column (``model``, ``id``, ``name``,
            ``checkpoint`` or ``model_col``) names the models and is never a proxy.
        targets: post-fine-tuning score columns (e.g. ``sft:math``).
        proxies: pre-fine-tuning columns, higher = better; default every numeric column that is
            neither a target, ``sft:*``, ``config:*`` nor metadata (step, tokens, params, ...).
        invert: proxies where lower is better (they are negated).
        combine: combined proxies, ``{"name": {"a": +1, "b": -1}}`` or ``["name=+a,-b"]``:
            signed sums of min-max normalised proxies over the pool.
        auto_combine: also add ``combo:all``, the sum of all normalised proxies.
        ppl_proxy: the perplexity proxy for the relative error reduction (default
            :func:`.inputs.default_ppl_proxy`).
        ties: proxy (or comparator) ties get half credit (``half``) or are left out (``exclude``).
        target_ties: pairs with |Δtarget| ≤ min_gap are left out (``drop``) or counted with
            half credit for every method (``half``).
        min_gap: the target gap at or below which a pair is a target tie.
        classifier / baseline: comparator classifiers (``xgboost``, ``logreg``); the baseline
            is also scored on the same splits (None: skip it). The comparator is fitted only
            with enough models per split (:func:`.compare.comparator_skip_reason`); otherwise
            ``summary["comparator"]["reason"]`` says why and a warning is raised.
        n_splits / train_frac / seed: repeated seeded model-level splits.
        n_boot: model-bootstrap resamples for intervals on all-pairs accuracies and correlations.
        gap_quantiles: number of quantile bins of the true gap |Δtarget|.
        topk: k values for top-k recall of the truly best model.
        z_max: robust z above which a value is flagged; ``drop_flagged`` drops those models.
        group_col: form pairs only between models with the same value in this column (e.g.
            ``params``: compare checkpoints at a fixed model size, as the paper does); the
            Borda ranking still covers all test models.
        transfer: compute the cross-target transfer matrix.
        signal: :func:`.signal.ground_truth_signal` of the targets; proxy and comparator rows of
            a target whose ground truth is within noise get ``meaningful`` = False.
        progress: tqdm bar over the comparator's fits.
        max_train_pairs: at most this many training pairs per comparator fit (a seeded sample
            of the train side's valid pairs when it has more; None: every pair). The default
            (:data:`.compare.MAX_TRAIN_PAIRS`) leaves pools of up to about 105 models untouched.
        threads: worker threads for the comparator's fits (``auto``/None: the policy of
            :mod:`ckpt_toolkit.threads`); the results do not depend on it.
    """
    check_ties(ties)
    check_target_ties(target_ties)
    if classifier not in CLASSIFIERS:
        raise ParameterError(f"classifier must be one of {CLASSIFIERS}, not {classifier!r}")
    if baseline is not None and baseline not in CLASSIFIERS:
        raise ParameterError(f"baseline must be one of {CLASSIFIERS} or None, not {baseline!r}")
    _check_numbers(min_gap, n_splits, train_frac, n_boot, gap_quantiles, topk, z_max)
    if max_train_pairs is not None and not max_train_pairs >= 1:
        raise ParameterError(
            f"max_train_pairs (--max-train-pairs) must be at least 1 or None, not {max_train_pairs}"
        )
    parse_threads(threads)
    prep = prepare_table(
        table, targets, proxies, invert=invert, combine=combine, model_col=model_col,
        z_max=z_max, drop_flagged=drop_flagged, auto_combine=auto_combine,
    )  # fmt: skip
    clean = prep.table
    allowed = _allowed(table, clean, group_col, prep.model_col)
    all_proxies = prep.proxies + prep.combined
    if ppl_proxy is None:
        ppl_proxy = default_ppl_proxy(prep.proxies)
    elif ppl_proxy not in all_proxies:
        raise ParameterError(f"ppl_proxy {ppl_proxy!r} is not among the proxies {all_proxies}")
    msgs = list(prep.messages)
    skip = comparator_skip_reason(len(clean), train_frac)
    if skip:
        msgs.append(f"the learned comparator is not fitted: {skip}")
    warn_all(msgs)

    data = steps.PairData(
        clean, prep.proxies, prep.combined, prep.targets, allowed, min_gap, ties, target_ties
    )
    kinds = {p: ("combined" if p in prep.combined else "proxy") for p in all_proxies}
    splits = steps.plan_splits(data, n_splits=n_splits, train_frac=train_frac, seed=seed)
    classifiers = [classifier] + ([baseline] if baseline and baseline != classifier else [])
    fits = (
        []
        if skip
        else steps.fit_comparators(
            data, splits, classifiers=classifiers, seed=seed, transfer=transfer,
            progress=progress, max_train_pairs=max_train_pairs, threads=threads,
        )
    )  # fmt: skip
    records = steps.split_records(data, splits, fits)
    sig = signal if signal is not None else pd.DataFrame(columns=SIGNAL_COLUMNS)
    result = PairwiseResult(
        proxy_accuracy=mark_ground_truth(
            steps.proxy_accuracy(data, ppl_proxy=ppl_proxy, n_boot=n_boot, seed=seed, kinds=kinds),
            sig,
        ),
        comparator=mark_ground_truth(steps.comparator_table(records), sig),
        transfer=steps.transfer_table(records, classifier),
        gap_quantiles=steps.gap_quantiles(data, splits, fits, q=gap_quantiles),
        importance=steps.importance(data, fits),
        topk=steps.topk_recall(data, splits, fits, ks=topk, seed=seed),
        borda=steps.borda(data, splits, fits, classifier),
        correlations=steps.correlations(data, n_boot=n_boot, seed=seed),
        flags=prep.flags,
        splits=steps.splits_table(data, splits),
        table=clean,
        signal=sig,
    )
    result.summary = _summary(
        result,
        prep,
        ppl_proxy,
        msgs,
        dict(
            ties=ties, target_ties=target_ties, min_gap=min_gap, classifier=classifier,
            baseline=baseline, n_splits=len(splits), train_frac=train_frac, seed=seed,
            n_boot=n_boot, invert=list(invert or ()), gap_quantiles=gap_quantiles,
            topk=list(topk), z_max=z_max, drop_flagged=drop_flagged, group_col=group_col,
            model_col=prep.model_col, max_train_pairs=max_train_pairs,
        ),
        n_input=len(table),
        comparator={"fitted": not skip, "reason": skip},
    )  # fmt: skip
    return result


def evaluate_store(
    rows: pd.DataFrame,
    checkpoints: pd.DataFrame | None = None,
    *,
    pool: str = "targets",
    targets: Sequence[str] | str | None = None,
    proxies: Sequence[str] | str | None = None,
    fallback_targets: Sequence[str] | None = None,
    shots: int | None = None,
    source: str = "the store",
    **options: Any,
) -> tuple[PairwiseInputs, PairwiseResult]:
    """:func:`.inputs.pairwise_inputs` then :func:`evaluate_pairwise` on them, with the ground
    truth's signal attached: the one path of ``ckpt pairwise --store``, ``ckpt demo`` and the
    proxies notebook. ``options`` are :func:`evaluate_pairwise`'s keyword arguments."""
    kw: dict[str, Any] = {} if fallback_targets is None else {"fallback_targets": fallback_targets}
    inputs = pairwise_inputs(
        rows, checkpoints, pool=pool, targets=targets, proxies=proxies, shots=shots,
        source=source, **kw,
    )  # fmt: skip
    warn_all(inputs.notes)
    result = evaluate_pairwise(
        inputs.table, inputs.targets, inputs.proxies, signal=inputs.signal, **options
    )
    result.summary["inputs"] = _jsonable(
        {"pool": inputs.pool, "stand_in": inputs.stand_in, "notes": inputs.notes}
    )
    return inputs, result


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


def _summary(result, prep, ppl_proxy, msgs, config, n_input, comparator) -> dict:
    per_target = {}
    acc, comp = result.proxy_accuracy, result.comparator
    sig = result.signal.set_index("target") if len(result.signal) else None
    for t in prep.targets:
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
        if sig is not None and t in sig.index:
            d["ground_truth_ratio"] = sig.loc[t, "ratio"]
            d["ground_truth"] = sig.loc[t, "ground_truth"]
        per_target[t] = d
    return _jsonable(
        {
            "n_models_input": n_input,
            "n_models_used": len(result.table),
            "n_models_excluded": n_input - len(result.table),
            "targets": list(prep.targets),
            "proxies": list(prep.proxies),
            "combined_proxies": list(prep.combined),
            "ppl_proxy": ppl_proxy,
            "comparator": comparator,
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
