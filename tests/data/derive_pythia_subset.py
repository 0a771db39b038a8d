"""Derive tests/data/pythia_evals.parquet from a copy of EleutherAI's Pythia eval files.

Usage: python tests/data/derive_pythia_subset.py PATH/TO/pythia-evals [OUT.parquet]

PATH holds ``pythia-<size>/zero-shot/<size>_step<N>.json`` (lm-eval-harness output, as published in
github.com/EleutherAI/pythia, ``evals/pythia-v1/``). Every task is kept except the crows_pairs
subsets beyond two (the tests use them only as an example of category "other"); every value is kept
exactly (float64). ``tests/conftest.py`` rebuilds the JSON files from this table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

KEEP_CROWS = {"crows_pairs_english", "crows_pairs_french"}


def derive(src: Path) -> pd.DataFrame:
    """One row per (model, step, task, metric) with the file's config and task version."""
    rows = []
    for path in sorted(src.glob("pythia-*/zero-shot/*_step*.json")):
        doc = json.loads(path.read_text())
        size = path.parent.parent.name.removeprefix("pythia-")
        step = int(path.stem.rsplit("_step", 1)[1])
        for task, metrics in doc["results"].items():
            if task.startswith("crows_pairs") and task not in KEEP_CROWS:
                continue
            for metric, value in metrics.items():
                rows.append(
                    {
                        "size": size,
                        "step": step,
                        "task": task,
                        "metric": metric,
                        "value": float(value),
                        "version": doc.get("versions", {}).get(task),
                        "config": json.dumps(doc["config"], sort_keys=True),
                    }
                )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    src = Path(sys.argv[1])
    out = (
        Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("pythia_evals.parquet")
    )
    df = derive(src)
    for col in ("size", "task", "metric", "config"):
        df[col] = df[col].astype("category")
    df.to_parquet(out, compression="zstd", index=False)
    print(f"{len(df)} rows -> {out} ({out.stat().st_size / 1e3:.0f} kB)")
