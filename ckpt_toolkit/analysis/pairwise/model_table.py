"""The per-model table of the pairwise analysis, built from the results store's tidy rows.

Column naming (every proxy oriented so that higher = better):

============================  =================================================================
column                        meaning
============================  =================================================================
``inv_ppl:<domain>``          1 / perplexity on a held-out domain (probe ``ppl``, metric ``ppl``)
``inv_ppl``                   1 / geometric-mean perplexity over domains = exp(−mean log PPL)
``neg_bpb:<domain>``          −bits per byte (probe ``ppl``, metric ``bpb``); ``neg_bpb`` = mean
``inv_sc_ppl:<domain>``       1 / span-corruption perplexity (probe ``sc_ppl``); ``inv_sc_ppl``
                              = 1 / geometric mean over domains
``kshot_acc:<task>``          k-shot accuracy (``acc``; ``exact_match`` for generation tasks)
``kshot_acc_norm:<task>``     k-shot length-normalised accuracy (``acc_norm``)
``kshot_logprob:<task>``      k-shot mean log-probability of the gold answer (``gold_logprob``)
``cap_kshot_acc:<cap>``       mean of ``kshot_acc:<task>`` over the tasks of capability ``<cap>``
``cap_kshot_logprob:<cap>``   the same for ``kshot_logprob``
``kshot_acc``                 mean of ``kshot_acc:<task>`` over all tasks (same for logprob)
``ext_<metric>:<task>``       imported results (probe ``lm-eval`` / ``import``); metrics declared
                              lower-is-better (:mod:`.direction`) enter as ``ext_inv_<m>`` =
                              1/value when a perplexity, else as ``ext_neg_<m>`` = −value
``sft:<task>``                target: post-fine-tuning score (probe ``sft``, metric ``score``)
``sft:<task>/<dataset>``      target: post-fine-tuning accuracy on one dataset of the task
============================  =================================================================

When one key holds several rows (different ``spec_hash``), the most recently created row wins.
k-shot proxies use the largest shot count measured per task unless ``shots`` is given.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ...errors import ParameterError
from ...probes.registry import IMPORTED_PROBES, KSHOT, PPL, SC_PPL, SFT
from .direction import is_lower_better, is_perplexity

POOLS = ("final", "all")


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    if "created_at" in df.columns:
        df = df.sort_values("created_at", kind="stable")
    return df.drop_duplicates(["checkpoint", "probe", "task", "metric", "shots"], keep="last")


def _pivot(df: pd.DataFrame, name_fn, value_fn=lambda v: v) -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame()
    task = df["task"].astype(str)
    names = {t: name_fn(t) for t in pd.unique(task)}  # Python work per task, not per row
    d = df.assign(col=task.map(names), val=value_fn(df["value"].astype(float)))
    return d.pivot_table(index="checkpoint", columns="col", values="val", aggfunc="mean")


def model_table_from_store(
    df: pd.DataFrame,
    checkpoints: pd.DataFrame | None = None,
    pool: str = "final",
    shots: int | None = None,
) -> pd.DataFrame:
    """One row per model (checkpoint) with proxy and target columns (naming: module docstring).

    Args:
        df: the store's tidy rows (``ResultsStore.to_pandas()``).
        checkpoints: optional ``ResultsStore.checkpoints()``; its variant ``config`` keys are
            added as ``config:<key>`` columns (metadata, never proxies).
        pool: ``final`` — one model per run, its last checkpoint (by tokens, then step);
            ``all`` — every checkpoint is a model.
        shots: k-shot count to use for ``kshot_*`` proxies (default: the largest per task).
    """
    if pool not in POOLS:
        raise ParameterError(f"pool must be one of {POOLS}, not {pool!r}")
    need = {"checkpoint", "probe", "task", "metric", "value"}
    missing = need - set(df.columns)
    if missing:
        raise ParameterError(f"store rows lack column(s) {sorted(missing)}")
    if df.empty:
        raise ParameterError("the results store holds no rows")
    # only the columns read here (a store's provenance JSON would be copied by every filter)
    keep = ["checkpoint", "probe", "task", "metric", "value", "shots", "capability",
            "created_at", "run", "step", "tokens", "params"]  # fmt: skip
    df = df[[c for c in keep if c in df.columns]].copy()
    if "shots" not in df.columns:
        df["shots"] = 0
    df["shots"] = df["shots"].fillna(0).astype(int)
    df = _latest(df)

    meta_cols = [c for c in ("run", "step", "tokens", "params") if c in df.columns]
    meta = df.groupby("checkpoint", sort=False)[meta_cols].first() if meta_cols else None

    parts: list[pd.DataFrame] = []
    # perplexity probes -> 1/PPL (and geometric-mean aggregates)
    for probe, metric, prefix in ((PPL, "ppl", "inv_ppl"), (SC_PPL, "sc_ppl", "inv_sc_ppl")):
        sub = df[(df["probe"] == probe) & (df["metric"] == metric)]
        sub = sub[sub["value"] > 0]
        if sub.empty:
            continue
        parts.append(_pivot(sub, lambda t, p=prefix: f"{p}:{t}", lambda v: 1.0 / v))
        agg = sub.assign(lv=np.log(sub["value"].astype(float))).groupby("checkpoint")["lv"].mean()
        parts.append(np.exp(-agg).rename(prefix).to_frame())
    sub = df[(df["probe"] == PPL) & (df["metric"] == "bpb")]
    if not sub.empty:
        parts.append(_pivot(sub, lambda t: f"neg_bpb:{t}", lambda v: -v))
        parts.append((-sub.groupby("checkpoint")["value"].mean()).rename("neg_bpb").to_frame())

    # k-shot probes
    ks = df[df["probe"] == KSHOT]
    if not ks.empty:
        if shots is None:
            top = ks.groupby("task")["shots"].transform("max")
            ks = ks[ks["shots"] == top]
        else:
            ks = ks[ks["shots"] == shots]
            if ks.empty:
                raise ParameterError(f"no k-shot rows with shots={shots} in the store")
        acc = ks[ks["metric"] == "acc"]
        em = ks[(ks["metric"] == "exact_match") & ~ks["task"].isin(set(acc["task"]))]
        for metric_rows, prefix in (
            (pd.concat([acc, em]), "kshot_acc"),
            (ks[ks["metric"] == "acc_norm"], "kshot_acc_norm"),
            (ks[ks["metric"] == "gold_logprob"], "kshot_logprob"),
        ):
            if metric_rows.empty:
                continue
            parts.append(_pivot(metric_rows, lambda t, p=prefix: f"{p}:{t}"))
            if prefix == "kshot_acc_norm":
                continue
            per_task = metric_rows.groupby(["checkpoint", "task"])["value"].mean()
            parts.append(per_task.groupby("checkpoint").mean().rename(prefix).to_frame())
            if "capability" in metric_rows.columns and metric_rows["capability"].notna().any():
                cap = (
                    metric_rows.dropna(subset=["capability"])
                    .groupby(["checkpoint", "capability", "task"])["value"]
                    .mean()
                    .groupby(["checkpoint", "capability"])
                    .mean()
                    .unstack("capability")
                )
                cap.columns = [f"cap_{prefix}:{c}" for c in cap.columns]
                parts.append(cap)

    # imported results
    ext = df[df["probe"].isin(list(IMPORTED_PROBES))]
    for metric, rows in ext.groupby("metric"):
        if is_perplexity(metric):
            rows = rows[rows["value"] > 0]
            parts.append(_pivot(rows, lambda t, m=metric: f"ext_inv_{m}:{t}", lambda v: 1.0 / v))
        elif is_lower_better(metric):
            parts.append(_pivot(rows, lambda t, m=metric: f"ext_neg_{m}:{t}", lambda v: -v))
        else:
            parts.append(_pivot(rows, lambda t, m=metric: f"ext_{m}:{t}"))

    # targets
    sft = df[df["probe"] == SFT]
    score = sft[sft["metric"] == "score"]
    if not score.empty:
        parts.append(_pivot(score, lambda t: f"sft:{t}"))
    dacc = sft[(sft["metric"] == "acc") & sft["task"].str.contains("/")]
    if not dacc.empty:
        parts.append(_pivot(dacc, lambda t: f"sft:{t}"))

    parts = [p for p in parts if not p.empty]
    if not parts:
        raise ParameterError("no proxy or target rows (ppl, sc_ppl, kshot, sft, imports) found")
    wide = pd.concat(parts, axis=1)
    wide.columns = [str(c) for c in wide.columns]
    wide = wide.loc[:, ~wide.columns.duplicated()]
    if meta is not None:
        wide = meta.join(wide, how="right")
    wide.index.name = "checkpoint"
    wide = wide.reset_index()

    if pool == "final":
        if "run" not in wide.columns:
            raise ParameterError("pool='final' needs a 'run' column in the store rows")
        order = [c for c in ("tokens", "step") if c in wide.columns]
        wide = wide.sort_values(order, kind="stable", na_position="first") if order else wide
        wide = wide.groupby("run", sort=False, dropna=False).tail(1)

    if checkpoints is not None and len(checkpoints) and "config" in checkpoints.columns:
        cfg = {}
        for ck, c in zip(checkpoints["checkpoint"], checkpoints["config"]):
            if isinstance(c, str):
                c = json.loads(c) if c else {}
            cfg[ck] = {
                f"config:{k}": v for k, v in (c or {}).items() if not isinstance(v, (dict, list))
            }
        cfg_df = pd.DataFrame.from_dict(cfg, orient="index")
        if not cfg_df.empty:
            wide = wide.merge(cfg_df, left_on="checkpoint", right_index=True, how="left")

    wide.insert(0, "model", wide["checkpoint"])
    lead = ["model", "checkpoint"] + [c for c in ("run", "step", "tokens", "params") if c in wide]
    cfg_cols = sorted(c for c in wide.columns if c.startswith("config:"))
    target_cols = sorted(c for c in wide.columns if c.startswith("sft:"))
    proxy_cols = [c for c in wide.columns if c not in set(lead + cfg_cols + target_cols)]
    return wide[lead + cfg_cols + proxy_cols + target_cols].reset_index(drop=True)


def summary_proxies(table: pd.DataFrame) -> list[str]:
    """The aggregate proxies of a store-built table (no per-domain / per-task columns):
    ``inv_ppl``, ``neg_bpb``, ``inv_sc_ppl``, ``kshot_acc``, ``kshot_logprob`` and the
    ``cap_kshot_*`` columns. The default proxy set of ``ckpt pairwise --store``."""
    names = ("inv_ppl", "neg_bpb", "inv_sc_ppl", "kshot_acc", "kshot_logprob")
    return [c for c in table.columns if c in names or c.startswith("cap_kshot_")]


def task_targets(table: pd.DataFrame) -> list[str]:
    """The task-level targets ``sft:<task>`` (not the per-dataset ``sft:<task>/<dataset>``)."""
    return [c for c in table.columns if c.startswith("sft:") and "/" not in c]
