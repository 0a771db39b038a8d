"""How the pairwise analysis scales: with the rows of a store, and with the models of a pool.

**Rows** (``--rows``): builds synthetic tidy stores of about 100k and 1M rows (runs × checkpoints
× ppl / sc_ppl / k-shot rows, fine-tuning rows with standard errors on each run's final
checkpoint) in memory and times each stage of the pairwise path:

* ``inputs``   — :func:`pairwise_inputs`: rows → per-model table, targets, proxies (row-bound);
* ``signal``   — :func:`ground_truth_signal` over the whole store (row-bound);
* ``evaluate`` — :func:`evaluate_pairwise` on the pool (bound by the number of *models*, not rows:
  pairs grow as models², the comparator as splits × targets × classifiers);
* ``table_all`` — the per-model table of every checkpoint (``pool="all"``), the row-bound worst
  case.

**Models** (``--models``): a synthetic per-model table of n models (6 proxies, 3 targets, as the
Pythia reports have) analysed with the proxies notebook's parameters (20 splits, 200 bootstrap
resamples, xgboost + logreg), with the comparator's training pairs capped (the default) and,
with ``--uncapped``, on every pair; prints the seconds, the CPU seconds and the comparator's
held-out accuracy both ways. ``--store PATH`` does the same on a results store (``pool=targets``,
the notebook's stand-in targets when it holds no fine-tuning rows), e.g. the 16-run × 27-checkpoint
Pythia store that ``benchmarks/reports_speed.py`` builds.

Usage::

    python benchmarks/pairwise_scale.py                       # 100k and 1M rows
    python benchmarks/pairwise_scale.py --rows 100000
    python benchmarks/pairwise_scale.py --rows --models 108 216 432 [--uncapped] [--threads 1]
    python benchmarks/pairwise_scale.py --rows --store pythia16.duckdb --uncapped

On a shared machine the figures are "under load": the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from functools import partial

import numpy as np
import pandas as pd

from ckpt_toolkit.analysis.pairwise import (
    evaluate_pairwise,
    evaluate_store,
    ground_truth_signal,
    model_table_from_store,
    pairwise_inputs,
)

#: the proxies notebook's parameters (notebooks/proxies.ipynb)
NOTEBOOK = dict(classifier="xgboost", n_splits=20, n_boot=200, seed=0, progress=False)

DOMAINS = 10
TASKS = 75
CAPS = ("knowledge", "reading", "commonsense", "math", "code")
ROWS_PER_CHECKPOINT = DOMAINS * 3 + DOMAINS * 2 + TASKS * 3 * 2  # 500


def synthetic_store(n_rows: int, n_runs: int = 20, seed: int = 0) -> pd.DataFrame:
    """A tidy store of about ``n_rows`` rows (columns of the results store that pairwise reads)."""
    rng = np.random.default_rng(seed)
    n_ck = max(2, n_rows // (n_runs * ROWS_PER_CHECKPOINT))
    quality = rng.normal(size=n_runs)
    blocks = []
    for r in range(n_runs):
        for c in range(n_ck):
            step = (c + 1) * 100
            q = quality[r] + np.log1p(step)
            ck = f"run{r}@step{step}"
            dom = [f"dom{d}" for d in range(DOMAINS)]
            ppl = np.exp(3 - 0.2 * q + rng.normal(scale=0.05, size=DOMAINS))
            task = [f"task{t}" for t in range(TASKS)]
            cap = [CAPS[t % len(CAPS)] for t in range(TASKS)]
            acc = 1 / (1 + np.exp(-(0.3 * q - 1 + rng.normal(scale=0.3, size=(2, TASKS)))))
            frame = pd.DataFrame(
                {
                    "probe": ["ppl"] * (3 * DOMAINS) + ["sc_ppl"] * (2 * DOMAINS)
                    + ["kshot"] * (6 * TASKS),
                    "task": dom * 5 + task * 6,
                    "capability": [None] * (5 * DOMAINS) + cap * 6,
                    "metric": ["ppl"] * DOMAINS + ["loss"] * DOMAINS + ["bpb"] * DOMAINS
                    + ["sc_ppl"] * DOMAINS + ["sc_loss"] * DOMAINS
                    + ["acc"] * (2 * TASKS) + ["acc_norm"] * (2 * TASKS)
                    + ["gold_logprob"] * (2 * TASKS),
                    "value": np.concatenate([ppl, np.log(ppl), np.log(ppl) / 3, ppl * 2,
                                             np.log(ppl * 2), acc.ravel(), acc.ravel(),
                                             np.log(acc.ravel())]),
                    "shots": [0] * (5 * DOMAINS) + ([0] * TASKS + [5] * TASKS) * 3,
                }
            )  # fmt: skip
            frame["run"], frame["checkpoint"], frame["step"] = f"run{r}", ck, step
            frame["tokens"], frame["stderr"] = step * 4096, np.nan
            blocks.append(frame)
        final = f"run{r}@step{n_ck * 100}"
        sft = pd.DataFrame(
            {
                "probe": "sft",
                "task": list(CAPS),
                "capability": list(CAPS),
                "metric": "score",
                "value": 1 / (1 + np.exp(-(quality[r] + rng.normal(scale=0.2, size=len(CAPS))))),
                "stderr": 0.02,
                "shots": 0,
                "run": f"run{r}",
                "checkpoint": final,
                "step": n_ck * 100,
                "tokens": n_ck * 100 * 4096,
            }
        )
        blocks.append(sft)
    return pd.concat(blocks, ignore_index=True)


def bench(n_rows: int) -> dict[str, float]:
    """Seconds per stage on a synthetic store of about ``n_rows`` rows."""
    t = time.perf_counter()
    df = synthetic_store(n_rows)
    out = {"rows": float(len(df)), "build_s": time.perf_counter() - t}
    t = time.perf_counter()
    inputs = pairwise_inputs(df)
    out["inputs_s"] = time.perf_counter() - t
    out["models"] = float(len(inputs.table))
    t = time.perf_counter()
    ground_truth_signal(df)
    out["signal_s"] = time.perf_counter() - t
    t = time.perf_counter()
    evaluate_pairwise(inputs.table, inputs.targets, inputs.proxies, signal=inputs.signal,
                      progress=False)  # fmt: skip
    out["evaluate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model_table_from_store(df, pool="all")
    out["table_all_s"] = time.perf_counter() - t
    return out


def model_table(n: int, seed: int = 0) -> tuple[pd.DataFrame, list[str], list[str]]:
    """A per-model table of ``n`` models: 6 noisy, correlated proxies and 3 targets."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=n)
    cols = {"model": [f"m{i}" for i in range(n)]}
    proxies = [f"proxy{k}" for k in range(6)]
    for k, p in enumerate(proxies):
        cols[p] = quality * (1 - 0.15 * k) + rng.normal(scale=0.5, size=n)
    targets = [f"sft:t{k}" for k in range(3)]
    for t in targets:
        cols[t] = quality + rng.normal(scale=0.3, size=n)
    return pd.DataFrame(cols), targets, proxies


def _timed(fn) -> tuple[object, float, float]:
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def _comparator_accuracy(result) -> float:
    comp = result.comparator
    main = comp[(comp["kind"] == "comparator") & (comp["method"] == "comparator:xgboost")]
    return float(main["accuracy_mean"].mean()) if len(main) else float("nan")


def bench_pool(run, label: str, uncapped: bool, threads: str | None) -> None:
    """Time ``run(**options)`` (an evaluate_* call) capped and, optionally, uncapped."""
    for cap in ("default", None) if uncapped else ("default",):
        kw = dict(NOTEBOOK, threads=threads)
        if cap is None:
            kw["max_train_pairs"] = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res, wall, cpu = _timed(lambda kw=kw: run(**kw))
        print(f"{label:>24}  {'every pair' if cap is None else 'capped':>10}  {wall:7.1f}  "
              f"{cpu:7.1f}  {_comparator_accuracy(res):.4f}  {os.getloadavg()[0]:5.2f}")  # fmt: skip


def main() -> None:
    """Print one line per store size, then one line per pool (and cap)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--models", type=int, nargs="*", default=[], help="pool sizes to time")
    ap.add_argument("--store", default=None, help="a results store to time evaluate_store on")
    ap.add_argument("--uncapped", action="store_true", help="also time every training pair")
    ap.add_argument("--threads", default=None, help="comparator worker threads (default: auto)")
    args = ap.parse_args()
    if args.rows:
        print("rows       models  inputs_s  signal_s  evaluate_s  table_all_s")
    for n in args.rows:
        r = bench(n)
        print(f"{int(r['rows']):>9,}  {int(r['models']):>6}  {r['inputs_s']:8.2f}  "
              f"{r['signal_s']:8.2f}  {r['evaluate_s']:10.2f}  {r['table_all_s']:11.2f}")  # fmt: skip
    if not (args.models or args.store):
        return
    import sklearn.linear_model  # noqa: F401 - imports paid once, before any timing
    import xgboost  # noqa: F401

    print(f"{'pool':>24}  {'pairs':>10}  {'wall_s':>7}  {'cpu_s':>7}  {'comp_acc':6}  load1")
    for n in args.models:
        table, targets, proxies = model_table(n)
        run = partial(evaluate_pairwise, table, targets, proxies)
        bench_pool(run, f"{n} models", args.uncapped, args.threads)
    if args.store:
        from ckpt_toolkit.store import ResultsStore

        st = ResultsStore(args.store, read_only=True)
        rows, cks = st.to_pandas(), st.checkpoints()

        def run(**kw):
            fallback = ["arc_easy", "piqa", "sciq"]
            return evaluate_store(rows, cks, pool="targets", fallback_targets=fallback, **kw)[1]

        bench_pool(run, os.path.basename(args.store), args.uncapped, args.threads)


if __name__ == "__main__":
    main()
