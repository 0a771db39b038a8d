"""Comparisons *across runs* at equal tokens: does loss order runs as capabilities do, how early
does each metric call the final winner, and do bigger models score higher?

* :func:`cross_run_agreement` — at each x shared by ≥ 3 runs, Spearman of −loss vs a capability
  metric across runs and the share of discordant run pairs (the cross-run disagreement "The Fine
  Line", arXiv 2404.01204, warns about; ``loss_agreement`` looks only within one run).
* :func:`decision_accuracy` — after Magnusson et al. 2025, "DataDecide: How to Predict Best
  Pretraining Data with Small Experiments" (arXiv 2504.11393): the share of run pairs a metric
  at x orders as the target does.
* :func:`size_order` — at each run's final checkpoint, Spearman of the score with parameters.

Runs' x values rarely coincide exactly; :func:`match_x` says how they are matched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...errors import ParameterError
from .pairs import pair_counts, spearman

MIN_RUNS_CROSS = 3


def match_x(x: pd.Series, tolerance: float = 0.0) -> pd.Series:
    """The matched x of each value: with ``tolerance`` 0, x itself (exact tokens or steps);
    otherwise distinct x values are grouped left to right, a group holding every value within
    ``(1 + tolerance)`` times its smallest one, and each value maps to that smallest value.
    x = 0 is only ever matched with 0."""
    if tolerance < 0:
        raise ParameterError(f"x tolerance must be >= 0, not {tolerance}")
    if tolerance == 0 or x.empty:
        return x.astype(float)
    uniq = np.sort(pd.unique(x.dropna().astype(float)))
    mapping: dict[float, float] = {}
    start: float | None = None
    for v in uniq:  # one pass over the distinct x values, not over rows
        if start is None or v == 0 or start == 0 or v > start * (1 + tolerance):
            start = v
        mapping[v] = start
    return x.astype(float).map(mapping)


def _at_matched_x(d: pd.DataFrame, keys: list[str], tolerance: float) -> pd.DataFrame:
    """``d`` with ``xk`` (the matched x); per run and matched x the latest checkpoint only."""
    d = d.assign(xk=match_x(d["x"], tolerance))
    d = d.sort_values("x", kind="stable")
    return d.drop_duplicates(subset=[*keys, "run", "xk"], keep="last")


def _capabilities(mt: pd.DataFrame) -> pd.DataFrame:
    return mt[~mt["lower_is_better"].astype(bool)]


CROSS_COLUMNS = [
    "x",
    "loss_task",
    "loss_metric",
    "task",
    "metric",
    "shots",
    "n_runs",
    "spearman",
    "discordant_share",
    "n_pairs",
]


def cross_run_agreement(
    mt: pd.DataFrame,
    losses: pd.DataFrame,
    min_runs: int = MIN_RUNS_CROSS,
    x_tolerance: float = 0.0,
) -> pd.DataFrame:
    """``cross_run.csv``: for every loss-like series × capability metric × matched x shared by
    at least ``min_runs`` runs, ``spearman`` = Spearman of −loss with the metric across runs
    (1 = lower loss always scores higher) and ``discordant_share`` = share of the run pairs
    ordered strictly by both in which the lower-loss run scores lower (``n_pairs`` of them).

    ``mt`` is a :func:`~.curves.metric_table`, ``losses`` a :func:`~.curves.loss_series`.
    """
    cap = _capabilities(mt)
    if cap.empty or losses.empty:
        return pd.DataFrame(columns=CROSS_COLUMNS)
    ck = ["task", "metric", "shots"]
    lk = ["loss_task", "loss_metric"]
    c = _at_matched_x(cap[["run", "x", *ck, "value"]], ck, x_tolerance)
    lo = _at_matched_x(losses[["run", "x", *lk, "loss"]], lk, x_tolerance)
    m = c.drop(columns="x").merge(lo.drop(columns="x"), on=["run", "xk"], how="inner")
    m = m.dropna(subset=["value", "loss"])
    if m.empty:
        return pd.DataFrame(columns=CROSS_COLUMNS)
    m["n_runs"] = m.groupby(["xk", *lk, *ck])["run"].transform("size")
    m = m[m["n_runs"] >= min_runs]
    rows: list[dict[str, Any]] = []
    neg_loss = -m["loss"].to_numpy(float)
    val = m["value"].to_numpy(float)
    for key, idx in m.groupby(["xk", *lk, *ck], sort=True).indices.items():
        pc = pair_counts(neg_loss[idx], val[idx])
        rows.append(
            dict(
                zip(["x", *lk, *ck], key),
                n_runs=len(idx),
                spearman=spearman(neg_loss[idx], val[idx]),
                discordant_share=pc.discordant_share,
                n_pairs=pc.concordant + pc.discordant,
            )
        )
    return pd.DataFrame(rows, columns=CROSS_COLUMNS)


def _short(x: float) -> str:
    """1.5e9 → '1.5B' (token counts in sentences)."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:g}"


def _loss_label(metric: str) -> str:
    m = metric.lower()
    if "ppl" in m or "perplexity" in m:
        return "perplexity"
    if "bpb" in m or "bits_per_byte" in m:
        return "bits per byte"
    return "loss"


def disagreements_in_words(
    cross: pd.DataFrame, x_name: str = "tokens", top: int | None = None
) -> pd.DataFrame:
    """The cross-run disagreements, strongest first, each as a sentence.

    For each (loss series, capability metric) the *last* matched x shared by enough runs is
    read (where the runs' order matters most); pairs whose Spearman there is negative are
    listed by Spearman, most negative first, with ``sentence`` such as "At 300B tokens, runs
    with lower perplexity (lambada_openai) scored lower on hellaswag (acc, 0-shot): Spearman
    −0.60 over 5 runs; 80% of run pairs disagree."
    """
    cols = [*CROSS_COLUMNS, "sentence"]
    if cross.empty:
        return pd.DataFrame(columns=cols)
    keys = ["loss_task", "loss_metric", "task", "metric", "shots"]
    last = cross.sort_values("x").groupby(keys, sort=False).tail(1)
    neg = last[last["spearman"] < 0].sort_values(
        ["spearman", "discordant_share"], ascending=[True, False]
    )
    if top is not None:
        neg = neg.head(top)
    if neg.empty:
        return pd.DataFrame(columns=cols)

    def sentence(r: Any) -> str:
        xs = _short(r.x) if x_name == "tokens" else f"{int(r.x):,}"
        where = f"At {xs} {'tokens' if x_name == 'tokens' else 'steps'}"
        return (
            f"{where}, runs with lower {_loss_label(r.loss_metric)} ({r.loss_task}) scored lower "
            f"on {r.task} ({r.metric}, {int(r.shots)}-shot): Spearman {r.spearman:+.2f} over "
            f"{int(r.n_runs)} runs; {r.discordant_share:.0%} of run pairs disagree."
        )

    return neg.assign(sentence=[sentence(r) for r in neg.itertuples()])[cols].reset_index(drop=True)


DECISION_COLUMNS = [
    "x",
    "task",
    "metric",
    "shots",
    "target_task",
    "target_metric",
    "target_shots",
    "target_x",
    "n_runs",
    "n_pairs",
    "decision_accuracy",
]


def parse_target(target: str | None) -> tuple[str, str, int | None] | None:
    """``"TASK:METRIC"`` or ``"TASK:METRIC@K"`` (K shots) → (task, metric, shots or None)."""
    if target is None or target == "":
        return None
    body, _, shots = target.partition("@")
    task, sep, metric = body.rpartition(":")
    if not sep or not task or not metric:
        raise ParameterError(f"--target must be TASK:METRIC or TASK:METRIC@SHOTS, not {target!r}")
    k = shots.removesuffix("shot").removesuffix("-")
    if shots and not k.isdigit():
        raise ParameterError(f"--target shots must be a whole number, not {shots!r} in {target!r}")
    return task, metric, int(k) if shots else None


def _oriented(mt: pd.DataFrame, losses: pd.DataFrame) -> pd.DataFrame:
    """Every metric as (run, x, task, metric, shots, score) with higher = better: capability
    metrics as they are, loss-like series (and loss-like benchmark metrics) negated."""
    parts = []
    if not mt.empty:
        sign = np.where(mt["lower_is_better"].astype(bool), -1.0, 1.0)
        parts.append(
            mt[["run", "x", "task", "metric", "shots"]].assign(score=sign * mt["value"].to_numpy())
        )
    if not losses.empty:
        held = losses[losses["loss_task"] == "(held-out)"]
        parts.append(
            pd.DataFrame(
                {
                    "run": held["run"],
                    "x": held["x"],
                    "task": held["loss_task"],
                    "metric": held["loss_metric"],
                    "shots": 0,
                    "score": -held["loss"],
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["run", "x", "task", "metric", "shots", "score"])
    return pd.concat(parts, ignore_index=True).dropna(subset=["score"])


def _target_values(w: pd.DataFrame) -> tuple[pd.Series, float, str]:
    """Per-run target from a run × matched-x table: the column at the last x every run has;
    else each run's last value. Returns (values, target x or NaN, note)."""
    full = [c for c in w.columns if w[c].notna().all()]
    if full:
        xt = max(full)
        return w[xt], float(xt), ""
    last = w.apply(lambda r: r.dropna().iloc[-1] if r.notna().any() else np.nan, axis=1)
    return last, float("nan"), "no x common to all runs: target = each run's last checkpoint"


def decision_accuracy(
    mt: pd.DataFrame,
    losses: pd.DataFrame | None = None,
    target: str | None = None,
    x_tolerance: float = 0.0,
    min_runs: int = 2,
) -> pd.DataFrame:
    """``decision_accuracy.csv``: for each metric at each matched x, the share of run pairs it
    orders as the target does.

    The target (higher = better) is, by default, the same metric at the last x every run has
    (``target_x``); ``target="TASK:METRIC[@K]"`` names one target for every metric. Pairs the
    target ties are left out; a pair the metric ties counts half (``n_pairs`` = pairs counted).
    Loss-like metrics are oriented (−loss) before comparing.
    """
    data = _oriented(mt, losses if losses is not None else pd.DataFrame())
    if data.empty:
        return pd.DataFrame(columns=DECISION_COLUMNS)
    keys = ["task", "metric", "shots"]
    data = _at_matched_x(data, keys, x_tolerance)
    spec = parse_target(target)
    fixed: tuple[pd.Series, float, tuple[str, str, int]] | None = None
    if spec is not None:
        t_task, t_metric, t_shots = spec
        sel = data[(data["task"] == t_task) & (data["metric"] == t_metric)]
        if t_shots is not None:
            sel = sel[sel["shots"] == t_shots]
        if sel.empty:
            have = sorted(set(data["task"] + ":" + data["metric"]))[:20]
            raise ParameterError(f"--target {target!r} matches no metric; metrics: {have}")
        if sel["shots"].nunique() > 1:
            raise ParameterError(
                f"--target {target!r} exists at several shot counts "
                f"{sorted(sel['shots'].unique())}: add @K"
            )
        wt = sel.pivot_table(index="run", columns="xk", values="score", aggfunc="last")
        vals, xt, _ = _target_values(wt)
        fixed = (vals, xt, (t_task, t_metric, int(sel["shots"].iloc[0])))
    rows: list[dict[str, Any]] = []
    for key, g in data.groupby(keys, sort=True):
        w = g.pivot_table(index="run", columns="xk", values="score", aggfunc="last").sort_index(
            axis=1
        )
        if fixed is None:
            tv, xt = _target_values(w)[:2]
            tk = key
        else:
            tv, xt, tk = fixed
        tv = tv.reindex(w.index)
        for xk in w.columns:
            ok = w[xk].notna() & tv.notna()
            n = int(ok.sum())
            if n < min_runs:
                continue
            pc = pair_counts(w.loc[ok, xk].to_numpy(float), tv[ok].to_numpy(float))
            counted = pc.concordant + pc.discordant + pc.ties_a
            acc = (pc.concordant + 0.5 * pc.ties_a) / counted if counted else np.nan
            rows.append(
                dict(
                    x=xk,
                    task=key[0],
                    metric=key[1],
                    shots=key[2],
                    target_task=tk[0],
                    target_metric=tk[1],
                    target_shots=tk[2],
                    target_x=xt,
                    n_runs=n,
                    n_pairs=counted,
                    decision_accuracy=acc,
                )
            )
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)


SIZE_ORDER_COLUMNS = [
    "task",
    "metric",
    "shots",
    "capability",
    "lower_is_better",
    "n_runs",
    "spearman",
    "smallest_run",
    "largest_run",
    "best_run",
    "status",
    "reason",
]


def size_order(mt: pd.DataFrame) -> pd.DataFrame:
    """``size_order.csv``: per benchmark × metric × shots, at each run's final checkpoint (its
    largest x), Spearman of the score with the run's parameters (loss-like metrics negated, so
    +1 always means "bigger is better"). Needs ≥ 3 runs of known, not all equal, size."""
    if mt.empty:
        return pd.DataFrame(columns=SIZE_ORDER_COLUMNS)
    d = mt.sort_values("x", kind="stable").drop_duplicates(
        subset=["task", "metric", "shots", "run"], keep="last"
    )
    rows: list[dict[str, Any]] = []
    for (task, metric, shots), g in d.groupby(["task", "metric", "shots"], sort=True):
        lib = bool(g["lower_is_better"].iloc[0])
        base = dict(
            task=task,
            metric=metric,
            shots=shots,
            capability=g["category"].iloc[0],
            lower_is_better=lib,
        )
        g = g.dropna(subset=["params", "value"])
        score = (-1.0 if lib else 1.0) * g["value"].to_numpy(float)
        params = g["params"].to_numpy(float)
        base["n_runs"] = len(g)
        if len(g) < 3 or np.unique(params).size < 2:
            rows.append(
                {**base, "status": "skipped", "reason": "needs >= 3 runs of known, different size"}
            )
            continue
        order = np.lexsort((g["run"].astype(str).to_numpy(), params))
        runs = g["run"].astype(str).to_numpy()
        rows.append(
            {
                **base,
                "spearman": spearman(params, score),
                "smallest_run": runs[order[0]],
                "largest_run": runs[order[-1]],
                "best_run": runs[int(np.argmax(score))],
                "status": "ok",
                "reason": "",
            }
        )
    return pd.DataFrame(rows, columns=SIZE_ORDER_COLUMNS)
