"""Scores and curves: the tables every other dynamics analysis starts from.

Pure, vectorised pandas over the store's tidy table (``ResultsStore.to_pandas()``):

1. :func:`select_rows` — the ``--runs`` / ``--shots`` / ``--tasks`` filters.
2. :func:`metric_table` — every metric of every benchmark per (run, checkpoint, shots): group
   members averaged (57 MMLU subjects → ``mmlu``), category, chance and direction attached.
3. :func:`score_table` — one chance-normalised score per (run, checkpoint, benchmark, shots):
   ``norm = (s − chance) / (1 − chance)``, ``norm_stderr = stderr / (1 − chance)``.
4. :func:`curves` — benchmark and category curves with LOWESS smoothing on log-x; a category
   curve averages its benchmarks *at one shot setting* (shot settings are never mixed).
5. :func:`loss_series` / :func:`loss_table` — the loss-like series (lower is better).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ParameterError
from ...probes.registry import HELDOUT_PROBES, SFT, metric_info
from ..taxonomy import Taxonomy, _provenance_chance, annotate, load_taxonomy, normalize_score

CURVE_KEYS = ["run", "level", "category", "benchmark"]
EXCLUDED_CATEGORIES = ("other",)
#: Fine-tuning outcomes are ground truth for paper 1, not pretraining capability curves.
EXCLUDED_PROBES = (SFT,)
#: Keys of one benchmark measurement series.
METRIC_KEYS = ["task", "metric", "shots"]


def x_column(x: str) -> str:
    """``x`` when it names an x axis ("tokens" or "step"); else a :class:`ParameterError`."""
    if x not in ("tokens", "step"):
        raise ParameterError(f"x must be 'tokens' or 'step', not {x!r}")
    return x


def log_x(x: Any) -> np.ndarray:
    """log10 of the x axis with x = 0 (the initialisation) placed one decade left of the first
    positive checkpoint, so step 0 stays on a log axis (no log of zero is ever taken)."""
    arr = np.asarray(x, dtype=float)
    pos = arr[arr > 0]
    floor = (pos.min() / 10.0) if pos.size else 1.0
    return np.log10(np.where(arr > 0, arr, floor))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, str):
        return [v for v in value.split(",") if v.strip()] if "," in value else [value]
    return list(value)


def _glob_mask(values: pd.Series, patterns: Sequence[str]) -> pd.Series:
    """Rows whose value matches any glob (evaluated once per distinct value)."""
    uniq = pd.unique(values.astype(str))
    keep = {v for v in uniq if any(fnmatch.fnmatchcase(v, p) for p in patterns)}
    return values.astype(str).isin(keep)


def select_rows(
    df: pd.DataFrame,
    runs: str | Iterable[str] | None = None,
    shots: int | Iterable[int] | None = None,
    tasks: str | Iterable[str] | None = None,
    taxonomy: Taxonomy | None = None,
) -> pd.DataFrame:
    """The rows of ``df`` selected by run globs, shot counts and task globs.

    ``runs`` and ``tasks`` are shell globs (``pythia-*``, ``arc_*``); a task glob also matches a
    benchmark group name (``mmlu`` selects the 57 ``hendrycksTest-*`` subjects). Loss-like rows
    (the taxonomy's lower-is-better metrics) are kept whatever ``tasks`` and ``shots`` say: the
    loss-vs-capability analyses need them. A filter that keeps nothing raises
    :class:`ParameterError` naming the option and the values the store has.
    """
    out = df
    run_pats = [str(r) for r in _as_list(runs)]
    if run_pats:
        out = out[_glob_mask(out["run"], run_pats)]
        if out.empty:
            have = sorted(df["run"].astype(str).unique())[:20]
            raise ParameterError(f"--runs {run_pats} matches no run; runs in the store: {have}")
    tax = taxonomy or load_taxonomy()
    loss = (
        out["metric"]
        .astype(str)
        .map({m: tax.is_loss_metric(m) for m in out["metric"].astype(str).unique()})
    )
    shot_list = [int(s) for s in _as_list(shots)]
    if shot_list:
        keep = out["shots"].isin(shot_list) | loss
        if not (keep & ~loss).any():
            have = sorted(int(s) for s in df["shots"].dropna().unique())
            raise ParameterError(f"--shots {shot_list} matches no score row; shots present: {have}")
        out, loss = out[keep], loss[keep]
    task_pats = [str(t) for t in _as_list(tasks)]
    if task_pats:
        names = pd.Series(pd.unique(out["task"].astype(str)))
        groups = {t: tax.lookup(t).benchmark for t in names}
        keep_tasks = {
            t
            for t in names
            if any(
                fnmatch.fnmatchcase(t, p) or fnmatch.fnmatchcase(groups[t], p) for p in task_pats
            )
        }
        keep = out["task"].astype(str).isin(keep_tasks)
        if not (keep & ~loss).any():
            have = sorted(names)[:20]
            raise ParameterError(f"--tasks {task_pats} matches no task; tasks in the store: {have}")
        out = out[keep | loss]
    return out


def _annotated(df: pd.DataFrame, tax: Taxonomy) -> pd.DataFrame:
    """:func:`~ckpt_toolkit.analysis.taxonomy.annotate`, evaluated once per distinct
    (task, capability, probe, metric) and once per distinct provenance, then joined back: the
    cost is linear in rows with no Python work per row."""
    keys = ["task", "capability", "probe", "metric"]
    d = df.copy()
    if "capability" not in d:
        d["capability"] = None
    uniq = d[keys].drop_duplicates()
    ann = annotate(uniq.assign(provenance=None), tax)[
        keys + ["benchmark", "category", "chance", "lower_is_better"]
    ]
    d = d.merge(ann, on=keys, how="left")
    if "provenance" in d:
        codes, uniq = pd.factorize(d["provenance"])  # one JSON parse per distinct provenance
        per = np.array([_provenance_chance(p) for p in uniq] + [None], dtype=float)
        pch = per[np.where(codes < 0, len(uniq), codes)]
        d["chance"] = np.where(np.isfinite(pch), pch, d["chance"].to_numpy(float))
    return d


METRIC_COLUMNS = [
    "run",
    "params",
    "checkpoint",
    "step",
    "tokens",
    "x",
    "category",
    "benchmark",
    "task",
    "metric",
    "shots",
    "lower_is_better",
    "value",
    "stderr",
    "chance",
    "n_tasks",
]


def metric_table(
    df: pd.DataFrame,
    taxonomy: Taxonomy | None = None,
    x: str = "tokens",
    include_other: bool = False,
) -> pd.DataFrame:
    """Every metric of every benchmark, one row per (run, checkpoint, benchmark, metric, shots).

    Columns :data:`METRIC_COLUMNS`. ``task`` is the benchmark name (a group such as ``mmlu``
    averages its members: ``value`` the mean, ``stderr`` = sqrt(Σ se²) / k, ``n_tasks`` = k);
    ``lower_is_better`` marks loss-like metrics. ``sft`` rows, rows without an x value and (unless
    ``include_other``) category ``other`` are left out.
    """
    xcol = x_column(x)
    tax = taxonomy or load_taxonomy()
    if df.empty:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    d = df[~df["probe"].isin(EXCLUDED_PROBES) & df[xcol].notna()]
    if d.empty:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    a = _annotated(d, tax)
    if not include_other:
        a = a[~a["category"].isin(EXCLUDED_CATEGORIES)]
    if a.empty:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    a = a.assign(
        x=a[xcol].astype(float),
        shots=a["shots"].fillna(0).astype(int),
        value=a["value"].astype(float),
        stderr=a["stderr"].astype(float),
    )
    a["se2"] = a["stderr"] ** 2
    keys = ["run", "checkpoint", "category", "benchmark", "metric", "shots"]
    agg = (
        a.groupby(keys, sort=False, dropna=False)
        .agg(
            params=("params", "first"),
            step=("step", "first"),
            tokens=("tokens", "first"),
            x=("x", "first"),
            lower_is_better=("lower_is_better", "first"),
            value=("value", "mean"),
            chance=("chance", "mean"),
            se2=("se2", "sum"),
            se_count=("stderr", "count"),
            n_tasks=("task", "nunique"),
        )
        .reset_index()
    )
    k = agg["n_tasks"].astype(float)
    agg["stderr"] = np.where(agg["se_count"] > 0, np.sqrt(agg["se2"]) / k, np.nan)
    agg["task"] = agg["benchmark"]
    return agg[METRIC_COLUMNS].reset_index(drop=True)


SCORE_COLUMNS = [
    "run",
    "params",
    "checkpoint",
    "step",
    "tokens",
    "x",
    "category",
    "benchmark",
    "task",
    "shots",
    "metric",
    "value",
    "stderr",
    "chance",
    "norm",
    "norm_stderr",
    "n_tasks",
]


def score_metric_of(mt: pd.DataFrame, taxonomy: Taxonomy | None = None) -> pd.DataFrame:
    """The score metric of each benchmark in a :func:`metric_table`: the taxonomy's ``metric``
    for it, else the first of ``score_metrics`` present. Columns: task, metric."""
    tax = taxonomy or load_taxonomy()
    hib = mt[~mt["lower_is_better"].astype(bool)]
    present = hib.groupby("task")["metric"].unique()
    rows = []
    for task, metrics in present.items():
        ms = set(metrics)
        pref = tax.lookup(str(task)).metric
        m = pref if pref in ms else next((s for s in tax.score_metrics if s in ms), None)
        if m is not None:
            rows.append((task, m))
    return pd.DataFrame(rows, columns=["task", "metric"])


def score_table(
    df: pd.DataFrame,
    taxonomy: Taxonomy | None = None,
    x: str = "tokens",
    include_other: bool = False,
    metrics: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One chance-normalised score per (run, checkpoint, benchmark, shots).

    Columns :data:`SCORE_COLUMNS`. ``benchmark`` is the curve label: the benchmark name, with
    ``@Kshot`` appended when the store holds it at several shot counts (``task`` and ``shots``
    keep the parts). Loss-like metrics are left out (see :func:`loss_table`). Scores whose
    benchmark has no known chance level are normalised with chance 0. ``metrics`` is a
    precomputed :func:`metric_table` of ``df`` (saves recomputing it).
    """
    tax = taxonomy or load_taxonomy()
    mt = metrics if metrics is not None else metric_table(df, tax, x, include_other)
    if mt.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    chosen = score_metric_of(mt, tax)
    a = mt.merge(chosen, on=["task", "metric"], how="inner")
    if a.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    nshots = a.groupby("task")["shots"].transform("nunique")
    a["benchmark"] = np.where(
        nshots > 1, a["task"] + "@" + a["shots"].astype(str) + "shot", a["task"]
    )
    a["chance"] = a["chance"].fillna(0.0)
    a["norm"] = normalize_score(a["value"], a["chance"])
    a["norm_stderr"] = a["stderr"] / (1.0 - a["chance"])
    return a[SCORE_COLUMNS].sort_values(["run", "benchmark", "x"]).reset_index(drop=True)


def lowess_smooth(x: Any, y: Any, frac: float | None = None) -> np.ndarray:
    """LOWESS (statsmodels) of ``y`` on log10 ``x``; fewer than 4 points are returned as is.

    ``frac`` defaults to max(0.3, 4/n): at least four neighbours per local fit.
    """
    xs, ys = log_x(x), np.asarray(y, dtype=float)
    ok = np.isfinite(ys)
    out = ys.copy()
    if ok.sum() < 4:
        return out
    from statsmodels.nonparametric.smoothers_lowess import lowess

    n = int(ok.sum())
    f = frac if frac is not None else min(1.0, max(0.3, 4.0 / n))
    out[ok] = lowess(ys[ok], xs[ok], frac=f, it=1, return_sorted=False)
    return out


CURVE_COLUMNS = [
    "run",
    "params",
    "level",
    "category",
    "benchmark",
    "shots",
    "checkpoint",
    "step",
    "tokens",
    "x",
    "log10_x",
    "metric",
    "value",
    "stderr",
    "chance",
    "norm",
    "norm_stderr",
    "smooth",
    "n_tasks",
]


def curves(
    df: pd.DataFrame,
    taxonomy: Taxonomy | None = None,
    x: str = "tokens",
    frac: float | None = None,
    scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Benchmark and category curves vs ``x`` ("tokens" or "step"), one row per point.

    Columns :data:`CURVE_COLUMNS`: level ("benchmark" | "category"); on category rows
    ``benchmark`` is the category name (``category@Kshot`` when the category is measured at
    several shot counts: a category curve averages benchmarks at one shot count only), ``value``
    = ``norm`` = the mean of its benchmarks' normalised scores and ``n_tasks`` how many; ``smooth``
    is the LOWESS of ``norm`` on log-x. Cross-size overlays: filter one benchmark and colour by
    ``params``. ``scores`` is a precomputed :func:`score_table` of ``df``.
    """
    s = scores if scores is not None else score_table(df, taxonomy, x)
    if s.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    s = s.assign(level="benchmark")
    cat = (
        s.assign(se2=s["norm_stderr"] ** 2)
        .groupby(["run", "checkpoint", "category", "shots"], sort=False)
        .agg(
            params=("params", "first"),
            step=("step", "first"),
            tokens=("tokens", "first"),
            x=("x", "first"),
            norm=("norm", "mean"),
            se2=("se2", "sum"),
            se_count=("norm_stderr", "count"),
            n_tasks=("benchmark", "nunique"),
        )
        .reset_index()
    )
    cat["norm_stderr"] = np.where(
        cat["se_count"] == cat["n_tasks"], np.sqrt(cat["se2"]) / cat["n_tasks"], np.nan
    )
    multi = cat.groupby("category")["shots"].transform("nunique") > 1
    label = np.where(
        multi, cat["category"] + "@" + cat["shots"].astype(str) + "shot", cat["category"]
    )
    cat = cat.assign(
        level="category",
        benchmark=label,
        metric="norm_mean",
        value=cat["norm"],
        stderr=cat["norm_stderr"],
        chance=0.0,
    )
    cols = [c for c in CURVE_COLUMNS if c not in ("log10_x", "smooth")]
    out = pd.concat([s[cols], cat[cols]], ignore_index=True)
    out["log10_x"] = log_x(out["x"])
    out = out.sort_values(CURVE_KEYS + ["x"]).reset_index(drop=True)
    smooth = np.full(len(out), np.nan)
    xs, ys = out["x"].to_numpy(float), out["norm"].to_numpy(float)
    for idx in out.groupby(CURVE_KEYS, sort=False).indices.values():
        smooth[idx] = lowess_smooth(xs[idx], ys[idx], frac)
    out["smooth"] = smooth
    return out[CURVE_COLUMNS]


def curve_noise(g: pd.DataFrame) -> float:
    """Noise level of one curve: the median stderr of its points (normalised units), or, where
    stderrs are missing, the standard deviation of the residuals around the LOWESS curve."""
    se = g["norm_stderr"].dropna()
    if len(se):
        return float(se.median())
    resid = (g["norm"] - g["smooth"]).dropna()
    return float(resid.std(ddof=1)) if len(resid) > 2 else float("nan")


def curve_noises(cv: pd.DataFrame) -> pd.Series:
    """:func:`curve_noise` of every curve at once, indexed by :data:`CURVE_KEYS`."""
    g = cv.groupby(CURVE_KEYS, sort=False)
    med = g["norm_stderr"].median()
    resid = (cv["norm"] - cv["smooth"]).rename("resid")
    rstd = resid.groupby([cv[k] for k in CURVE_KEYS], sort=False).std(ddof=1)
    rcount = resid.groupby([cv[k] for k in CURVE_KEYS], sort=False).count()
    rstd = rstd.where(rcount > 2)
    return med.fillna(rstd)


def _is_perplexity(metric: pd.Series) -> pd.Series:
    # the registry's kind (ckpt_toolkit/probes/registry.py METRICS): exp of a loss
    m = metric.astype(str)
    kinds = {name: _metric_kind(name) for name in m.unique()}
    return m.map(kinds) == "perplexity"


def _metric_kind(metric: str) -> str | None:
    info = metric_info(metric)
    return None if info is None else info.kind


LOSS_COLUMNS = ["run", "params", "checkpoint", "x", "loss_task", "loss_metric", "loss"]


def loss_series(
    df: pd.DataFrame, taxonomy: Taxonomy | None = None, x: str = "tokens"
) -> pd.DataFrame:
    """Every loss-like series (the taxonomy's lower-is-better metrics: perplexity,
    cross-entropy, bits per byte, ...), one row per (run, checkpoint, loss_task, loss_metric).

    Perplexities become losses (``loss = ln ppl``, nats) so sources compare; a held-out
    ``ppl``-probe metric is averaged over its domains into ``loss_task = "(held-out)"``.
    ``sft`` rows and the ``other`` category (bias measures such as crows_pairs) are left out.
    """
    xcol = x_column(x)
    tax = taxonomy or load_taxonomy()
    if df.empty:
        return pd.DataFrame(columns=LOSS_COLUMNS)
    metrics = df["metric"].astype(str)
    is_loss = metrics.map({m: tax.is_loss_metric(m) for m in metrics.unique()}).astype(bool)
    d = df[is_loss & ~df["probe"].isin(EXCLUDED_PROBES) & df[xcol].notna()]
    if d.empty:
        return pd.DataFrame(columns=LOSS_COLUMNS)
    a = _annotated(d, tax)
    a = a[~a["category"].isin(EXCLUDED_CATEGORIES)]
    if a.empty:
        return pd.DataFrame(columns=LOSS_COLUMNS)
    value = a["value"].astype(float)
    ppl = _is_perplexity(a["metric"])
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.where(ppl, np.log(value.where(value > 0)), value)
    held = a["probe"].isin(HELDOUT_PROBES)
    a = a.assign(
        x=a[xcol].astype(float),
        loss=loss,
        loss_task=np.where(held, "(held-out)", a["benchmark"]),
        loss_metric=a["metric"].astype(str),
    )
    out = (
        a.groupby(["run", "checkpoint", "loss_task", "loss_metric"], sort=False)
        .agg(params=("params", "first"), x=("x", "first"), loss=("loss", "mean"))
        .reset_index()
    )
    return out[LOSS_COLUMNS].dropna(subset=["loss"]).reset_index(drop=True)


def loss_table(
    df: pd.DataFrame, taxonomy: Taxonomy | None = None, x: str = "tokens"
) -> pd.DataFrame:
    """The one preferred loss-like series of every run: (run, checkpoint, x, loss, loss_source).

    Uses the first of the taxonomy's ``loss_metrics`` a run has (the zoo's ``ppl`` probe
    ``loss``, averaged over held-out domains; for Pythia, ``ln`` lambada_openai ``ppl``).
    """
    xcol = x_column(x)
    tax = taxonomy or load_taxonomy()
    cols = ["run", "checkpoint", "x", "loss", "loss_source"]
    d = df[df[xcol].notna()]
    if d.empty or not tax.loss_metrics:
        return pd.DataFrame(columns=cols)
    parts, ranks = [], []
    for rank, spec in enumerate(tax.loss_metrics):
        sel = d["metric"] == spec["metric"]
        if "probe" in spec:
            sel &= d["probe"] == spec["probe"]
        if "task" in spec:
            sel &= d["task"] == spec["task"]
        h = d[sel]
        if h.empty:
            continue
        src = "/".join(f"{k}={v}" for k, v in spec.items())
        v = h["value"].astype(float)
        if _metric_kind(spec["metric"]) == "perplexity":
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.log(v.where(v > 0))
        parts.append(h.assign(value=v, loss_source=src, _rank=rank))
        ranks.append(rank)
    if not parts:
        return pd.DataFrame(columns=cols)
    a = pd.concat(parts, ignore_index=True)
    best = a.groupby("run")["_rank"].transform("min")
    a = a[a["_rank"] == best]
    out = (
        a.groupby(["run", "checkpoint"], sort=True)
        .agg(x=(xcol, "first"), loss=("value", "mean"), loss_source=("loss_source", "first"))
        .reset_index()
    )
    return out[cols]


def training_windows(xs: Any) -> list[tuple[str, float, float]]:
    """Split positive x values into early / mid / late thirds of the log-x range:
    ``[(name, x_from, x_to), ...]`` (empty when no x is positive)."""
    pos = np.asarray(xs, float)
    pos = pos[pos > 0]
    if pos.size == 0:
        return []
    lo, hi = np.log10(pos.min()), np.log10(pos.max())
    edges = np.linspace(lo, hi, 4)
    return [
        (name, float(10 ** edges[i]), float(10 ** edges[i + 1]))
        for i, name in enumerate(("early", "mid", "late"))
    ]


def window_of(x: pd.Series, windows: list[tuple[str, float, float]]) -> pd.Series:
    """The training window name of each x (NaN outside every window, e.g. x = 0)."""
    out = pd.Series(np.nan, index=x.index, dtype=object)
    for name, lo, hi in reversed(windows):  # a boundary point belongs to the earlier window
        inside = (x >= lo * (1 - 1e-9)) & (x <= hi * (1 + 1e-9))
        out = out.mask(inside, name)
    return out


def run_sizes(df: pd.DataFrame) -> pd.Series:
    """Parameters of each run (max over its rows; NaN where unknown), indexed by run."""
    if df.empty or "params" not in df:
        return pd.Series(dtype=float)
    return pd.to_numeric(df.groupby("run")["params"].max(), errors="coerce")


def sort_by_size(table: pd.DataFrame, sizes: pd.Series, then: Sequence[str] = ()) -> pd.DataFrame:
    """``table`` with its rows ordered by run size, then run name, then ``then`` columns (runs
    of unknown size last). Tables without a ``run`` column come back unchanged."""
    if table.empty or "run" not in table:
        return table
    size = table["run"].map(sizes).astype(float)
    keys = ["__size", "run", *[c for c in then if c in table]]
    out = table.assign(__size=size).sort_values(keys, na_position="last", kind="stable")
    return out.drop(columns="__size").reset_index(drop=True)
