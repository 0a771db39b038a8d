"""Does the fine-tuning ground truth separate the variants beyond its own noise?

For every SFT task (the zoo's capability categories) of a results store, takes each run's SFT
``score`` at its final fine-tuned checkpoint and prints

    ratio = var(scores across runs) / mean(stderr^2)

with ``var`` the sample variance (ddof=1) over the runs and ``stderr`` each score's standard
error as stored. If every run had the same true score, the ratio would be about 1 (less when
the runs share test items); a ratio of 4 or more says the variants differ beyond the
scores' own noise. The table is
:func:`ckpt_toolkit.analysis.pairwise.ground_truth_signal` (what the proxies report shows). Per-dataset rows (``<task>/<dataset>``, metric ``acc``) follow
with ``--datasets``.

    .venv/bin/python benchmarks/ground_truth_signal.py [--store demo/results.duckdb] [--datasets]
        [--json out.json]

Exit status 0 always; the verdict is printed (``signal`` / ``within noise``).
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd


def final_checkpoints(df: pd.DataFrame) -> list[str]:
    """Each run's last fine-tuned checkpoint (the pool of the demo's proxies report)."""
    s = df[df["probe"] == "sft"].assign(_step=lambda d: d["step"].fillna(-1))
    last = s.groupby("run")["_step"].transform("max")
    return sorted(s.loc[s["_step"] == last, "checkpoint"].unique())


def signal_table(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`ckpt_toolkit.analysis.pairwise.ground_truth_signal` over the final checkpoints,
    plus the spread and the largest stderr of the scores."""
    from ckpt_toolkit.analysis.pairwise import ground_truth_signal

    pool = final_checkpoints(df)
    table = ground_truth_signal(df, pool)
    rows = df[(df["probe"] == "sft") & df["checkpoint"].isin(pool)]
    g = rows.groupby(["task", "metric"])
    extra = pd.DataFrame(
        {"min": g["value"].min(), "max": g["value"].max(), "max_stderr": g["stderr"].max()}
    ).reset_index()
    return table.merge(extra, on=["task", "metric"], how="left")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default="demo/results.duckdb")
    ap.add_argument("--datasets", action="store_true", help="also the per-dataset accuracies")
    ap.add_argument("--json", default=None, help="write the table(s) as JSON here")
    args = ap.parse_args(argv)

    from ckpt_toolkit.store import ResultsStore

    df = ResultsStore(args.store, read_only=True).to_pandas(probe="sft")
    if df.empty:
        print(f"{args.store}: no SFT rows (run `ckpt finetune` first)", file=sys.stderr)
        return 0
    from ckpt_toolkit.analysis.pairwise import MIN_SIGNAL_RATIO

    table = signal_table(df)
    out = {"score": table[table["metric"] == "score"]}
    if args.datasets:
        out["acc"] = table[table["metric"] == "acc"]
    cols = ["task", "n_models", "min", "mean_score", "max", "max_stderr", "var_between"]
    cols += ["mean_sq_stderr", "ratio", "ground_truth"]
    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
        for metric, t in out.items():
            print(f"\nSFT {metric}: ratio = var(scores across runs) / mean(stderr^2)")
            print(t[cols].to_string(index=False))
    n_sig = int((out["score"]["ratio"] >= MIN_SIGNAL_RATIO).sum())
    print(f"\n{n_sig} of {len(out['score'])} SFT tasks with ratio >= {MIN_SIGNAL_RATIO:g}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({k: v.to_dict(orient="records") for k, v in out.items()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
