"""Small tables the overview and explorer notebooks show: what is in a store, headline scores.

Pure pandas over the store's tidy rows (columns of :data:`ckpt_toolkit.store.COLUMNS`).
"""

from __future__ import annotations

import pandas as pd

from ..errors import StoreError
from ..probes.registry import PPL, SFT


def require_rows(df: pd.DataFrame, store_path: str) -> pd.DataFrame:
    """``df`` unchanged, or a :class:`StoreError` naming the store when it holds no rows."""
    if df.empty:
        raise StoreError(f"results store {store_path} holds no measurements yet")
    return df


def run_inventory(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: parameters, checkpoints, step and token range, probes, rows."""
    g = df.groupby("run", dropna=False)
    inv = pd.DataFrame(
        {
            "parameters": g["params"].max(),
            "checkpoints": g["checkpoint"].nunique(),
            "first step": g["step"].min(),
            "last step": g["step"].max(),
            "tokens (last)": g["tokens"].max(),
            "probes": g["probe"].agg(lambda s: ", ".join(sorted(s.dropna().unique()))),
            "rows": g.size(),
        }
    ).reset_index()
    return inv.sort_values(["parameters", "run"], na_position="last").reset_index(drop=True)


def probe_inventory(df: pd.DataFrame) -> pd.DataFrame:
    """One row per probe: tasks, metrics, checkpoints measured, rows."""
    g = df.groupby("probe")
    return pd.DataFrame(
        {
            "tasks": g["task"].nunique(),
            "metrics": g["metric"].agg(lambda s: ", ".join(sorted(s.unique()))),
            "checkpoints": g["checkpoint"].nunique(),
            "rows": g.size(),
        }
    ).reset_index()


def score_rows(df: pd.DataFrame, taxonomy=None) -> pd.DataFrame:  # noqa: ANN001
    """Capability score rows: per task its preferred higher-is-better metric (the taxonomy's
    ``score_metrics`` order), annotated with ``benchmark``/``category``/``chance`` and
    ``normalized`` = (score − chance) / (1 − chance) (0 = chance, 1 = perfect; "The Fine Line",
    arXiv 2404.01204, Sec. 3). Fine-tuning (``sft``) rows and the ``other`` category are left out.
    """
    from ..analysis.taxonomy import annotate, load_taxonomy, normalize_score

    tax = taxonomy or load_taxonomy()
    rows = df[(df["probe"] != SFT) & ~df["metric"].isin(tax.lower_is_better)]
    if rows.empty:
        return rows.assign(benchmark=[], category=[], chance=[], normalized=[])
    order = {m: i for i, m in enumerate(tax.score_metrics)}
    rows = rows[rows["metric"].isin(order)]
    best = rows.assign(_o=rows["metric"].map(order)).groupby("task")["_o"].transform("min")
    rows = rows[rows["metric"].map(order) == best]
    ann = annotate(rows, tax)
    ann = ann[ann["category"] != "other"].copy()
    ann["normalized"] = normalize_score(ann["value"], ann["chance"])
    return ann


def runs_by_size(df: pd.DataFrame) -> list[str]:
    """The runs of ``df`` ordered by size (parameters; unknown last), then name."""
    size = pd.to_numeric(df.groupby("run")["params"].max(), errors="coerce")
    order = size.reset_index().sort_values(["params", "run"], na_position="last")
    return [str(r) for r in order["run"]]


def with_shots_label(scores: pd.DataFrame, column: str) -> pd.Series:
    """``column`` with ``@Kshot`` appended where the same name is measured at several shot
    counts, so that curves and averages never mix shot settings."""
    multi = scores.groupby(column)["shots"].transform("nunique") > 1
    label = scores[column].astype(str) + "@" + scores["shots"].fillna(0).astype(int).astype(str)
    return scores[column].where(~multi, label + "shot")


def category_curves(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean chance-normalised score per (run, checkpoint, category, shots): benchmarks first
    averaged over their tasks (MMLU's 57 subjects count once), then over the category's
    benchmarks at the same shot count (``category`` reads ``knowledge@5shot`` where a category
    is measured at several shot counts)."""
    keys = ["run", "checkpoint", "step", "tokens", "params", "shots"]
    per_bench = scores.groupby(keys + ["category", "benchmark"], dropna=False)["normalized"].mean()
    out = per_bench.groupby(level=list(range(len(keys) + 1)), dropna=False).mean().reset_index()
    out["category"] = with_shots_label(out, "category")
    return out.sort_values(["run", "tokens", "step"]).reset_index(drop=True)


def final_by_size(cats: pd.DataFrame, x: str = "tokens") -> pd.DataFrame:
    """The last checkpoint of each run per category (run × category, chance-normalised), runs
    listed by size, then name."""
    last = cats.loc[cats.groupby(["run", "category"])[x].idxmax()]
    wide = last.pivot_table(index="run", columns="category", values="normalized")
    size = cats.groupby("run")["params"].max()
    wide.insert(0, "parameters", size.reindex(wide.index))
    wide = wide.reset_index().sort_values(["parameters", "run"], na_position="last")
    wide.columns.name = None
    return wide.reset_index(drop=True)


def decision_curves(da: pd.DataFrame, advice: pd.DataFrame) -> pd.DataFrame:
    """Decision-accuracy curves of the metrics the advice ranks (its score and loss metrics),
    with a ``series`` label (``task:metric@Kshot``) and their ``category``, for plotting."""
    keys = ["task", "metric", "shots"]
    cats = advice.drop_duplicates(keys)[keys + ["category"]]
    d = da.merge(cats, on=keys, how="inner")
    return d.assign(
        series=d["task"] + ":" + d["metric"] + "@" + d["shots"].astype(int).astype(str) + "shot"
    )


def loss_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Rows of the best available loss-like series and its axis label: held-out ``loss`` from the
    ``ppl`` probe, else LAMBADA perplexity, else nothing."""
    held = df[(df["probe"] == PPL) & (df["metric"] == "loss")]
    if len(held):
        return held, "held-out loss (nats / token)"
    lam = df[df["task"].str.startswith("lambada") & (df["metric"] == "ppl")]
    if len(lam):
        return lam, "LAMBADA perplexity"
    return df.iloc[0:0], ""
