"""Import speed: a large tidy CSV into a fresh results store, rows/s and peak memory.

Writes a realistic tidy CSV (runs x checkpoints x tasks x metrics, with stderr, n and shots;
default 1,000,000 rows, ~60 MB) into a temporary folder, then imports it in a *fresh* child
process and reports that process's wall time, rows/s and peak RSS (so the generator's memory is
not counted). Reference point: 1M rows in <= 20 s with <= 1.5 GB peak RSS on 2 cores.

    .venv/bin/python benchmarks/import_speed.py [--rows 1000000] [--format csv|parquet]
        [--reimport] [--wide-files 60] [--json out.json]

The machine may be shared: the 1-minute load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """A tidy table of about ``rows`` rows: 20 runs x N checkpoints x 100 tasks x 5 metrics."""
    rng = np.random.default_rng(seed)
    runs, tasks, metrics = 20, 100, ["acc", "acc_norm", "f1", "ppl", "bpb"]
    per_ck = tasks * len(metrics)
    cks = max(1, -(-rows // (runs * per_ck)))
    run = np.repeat([f"model-{i % 5 + 1}b-v{i}" for i in range(runs)], cks * per_ck)
    step = np.tile(np.repeat(np.arange(1, cks + 1) * 1000, per_ck), runs)
    task = np.tile(np.repeat([f"task_{t:03d}" for t in range(tasks)], len(metrics)), runs * cks)
    metric = np.tile(metrics, runs * cks * tasks)
    n = len(run)
    df = pd.DataFrame(
        {
            "run": run,
            "step": step,
            "tokens": step * 2_097_152,
            "task": task,
            "metric": metric,
            "value": rng.random(n).round(6),
            "stderr": (rng.random(n) / 50).round(6),
            "n": rng.integers(100, 10_000, n),
            "shots": 0,
        }
    )
    return df.iloc[:rows]


WIDE_MAPPING = r"""
files: "*.csv"
filename: '(?P<size>[0-9.]+[MB])-(?P<budget>[0-9]+xC)\.csv'
run: "{size}-{budget}"
step: _step
tokens: throughput/total_tokens
columns:
  - match: 'eval/downstream/(?P<task>.+?)_(?P<shots>\d+)shot(_(?P<metric>len_norm))?'
  - match: 'eval/(?P<task>[^/]+)/CrossEntropyLoss'
    metric: ce_loss
    loss: true
"""


def make_wide_folder(folder: Path, files: int, rows: int = 500, tasks: int = 40) -> Path:
    """``files`` OLMo-ladder-like wide CSVs (``<size>-<budget>.csv``: ``rows`` logged steps,
    2 columns per task, 3 eval-loss columns, one unmapped column) and a pattern mapping for
    the whole folder; returns the mapping's path."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = ["190M", "370M", "600M", "760M", "1B", "3B", "7B", "13B"]
    for k in range(files):
        size, budget = sizes[k % len(sizes)], f"{k // len(sizes) + 1}xC"
        steps = np.arange(1, rows + 1) * 100
        cols = {"_step": steps, "throughput/total_tokens": steps * 4_194_304}
        cols["train/lr"] = rng.random(rows)
        for t in range(tasks):
            cols[f"eval/downstream/task{t}_val_rc_5shot_len_norm"] = rng.random(rows)
            cols[f"eval/downstream/task{t}_val_mc_5shot"] = rng.random(rows)
        for name in ("c4_en", "pile", "wikitext"):
            cols[f"eval/{name}-validation/CrossEntropyLoss"] = rng.random(rows)
        pd.DataFrame(cols).to_csv(folder / f"{size}-{budget}.csv", index=False)
    mapping = folder.parent / "mapping.yaml"
    mapping.write_text(WIDE_MAPPING)
    return mapping


def _child(path: str, store: str, again: bool, mapping: str | None = None) -> None:
    """Run in a fresh process: import ``path`` into ``store`` (twice with ``again``: the second
    import replaces every row); print a JSON line."""
    from ckpt_toolkit.importers import import_results

    t = time.perf_counter()
    report = import_results(path, store, mapping=mapping, progress=False)
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    out = {"rows": report.rows_written, "wall_s": wall, "peak_rss": rss}
    if again:
        t = time.perf_counter()
        import_results(path, store, mapping=mapping, progress=False)
        out["reimport_wall_s"] = time.perf_counter() - t
        out["reimport_peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> dict:
    """Generate, import in a child process, print and return the measurements."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--format", choices=["csv", "parquet"], default="csv")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--reimport", action="store_true", help="also time a second import (replaces all rows)"
    )
    ap.add_argument(
        "--wide-files",
        type=int,
        default=0,
        help="instead: a folder of N wide CSVs (500 rows x 83 mapped columns) with one mapping",
    )
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        mapping = None if args.child[3] == "-" else args.child[3]
        _child(args.child[0], args.child[1], args.child[2] == "1", mapping)
        return {}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        mapping = "-"
        if args.wide_files:
            src = Path(tmp) / "ladder"
            mapping = str(make_wide_folder(src, args.wide_files))
            size_mb = sum(f.stat().st_size for f in src.iterdir()) / 1e6
            args.format = f"{args.wide_files} wide csv files"
        else:
            src = Path(tmp) / f"tidy.{args.format}"
            df = make_table(args.rows)
            if args.format == "csv":
                df.to_csv(src, index=False)
            else:
                df.to_parquet(src, index=False)
            size_mb = src.stat().st_size / 1e6
            del df
        t = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(src),
                str(Path(tmp) / "s.duckdb"),
                "1" if args.reimport else "0",
                mapping,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        total = time.perf_counter() - t
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(
        format=args.format,
        file_mb=round(size_mb, 1),
        rows_per_s=round(res["rows"] / res["wall_s"]),
        process_wall_s=round(total, 2),
        load_before=load0,
        load_after=os.getloadavg()[0],
        cpus=os.cpu_count(),
    )
    print(
        f"{res['rows']:,} rows ({args.format}, {size_mb:.0f} MB): import {res['wall_s']:.1f} s "
        f"({res['rows_per_s']:,} rows/s; {total:.1f} s with interpreter start and imports), "
        f"peak RSS {res['peak_rss'] / 2**30:.2f} GiB; load average {load0:.1f} → "
        f"{res['load_after']:.1f} on {os.cpu_count()} CPUs"
    )
    if "reimport_wall_s" in res:
        print(
            f"re-import of the same rows (replace): {res['reimport_wall_s']:.1f} s, peak RSS "
            f"{res['reimport_peak_rss'] / 2**30:.2f} GiB"
        )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
