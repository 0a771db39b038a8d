"""Report speed: `ckpt report all` on real Pythia evaluations, cold, re-rendered and unchanged.

Stores (built in a work folder, never inside the repository):

* ``pythia4`` — the four Pythia sizes x 27 checkpoints of lm-eval JSON, rebuilt from the
  committed subset in ``tests/data/pythia_evals.parquet``; imported with ``ckpt import``.
* ``pythia16`` — 16 runs x 27 checkpoints: each size relabelled into four runs (``-s0`` ...
  ``-s3``) whose values are jittered (seeded; accuracies stay in [0, 1]).
* ``demo`` — ``--demo-store PATH`` (e.g. ``demo/results.duckdb`` after ``make demo``), if given.

For each store, three runs of the command a user types, each in a fresh process:

1. ``cold`` — no analysis cache, no earlier reports;
2. ``rerender`` — the reports deleted, the analysis cache kept (what a notebook edit costs);
3. ``unchanged`` — the same command again with no new rows (every report is skipped).

and, for the cold run, the stages of each notebook read from the executed notebooks and
``index.json``: kernel start, the analysis cell (imports, store read, analysis or cache read),
the figure and table cells, kernel shutdown and HTML export.

    .venv/bin/python benchmarks/reports_speed.py [--stores pythia4,pythia16] [--demo-store P]
        [--work DIR] [--jobs N] [--json out.json]

Reference points (2 idle cores): demo <= 20 s, pythia4 <= 30 s, pythia16 <= 60 s, a second run
with no new rows <= 10 s. The machine, the date, the load average before and after, and every
command are printed: on a shared machine the figures are "under load".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"demo": 20.0, "pythia4": 30.0, "pythia16": 60.0, "unchanged": 10.0}


# -- stores ---------------------------------------------------------------------------------------
def rebuild_pythia_json(root: Path) -> Path:
    """lm-eval JSON files ``pythia-<size>/zero-shot/<size>_step<N>.json`` rebuilt from the
    committed subset by the test suite's own function (one rebuild, in tests/conftest.py)."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import write_pythia_evals

    return write_pythia_evals(root)


def pythia4_store(work: Path) -> tuple[Path, str]:
    store = work / "pythia4.duckdb"
    src = rebuild_pythia_json(work / "pythia-json")
    if not store.exists():
        cmd = [str(REPO / ".venv/bin/ckpt"), "import", str(src), "--store", str(store)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    return store, f"ckpt import {src} --store {store}"


def pythia16_store(work: Path, pythia4: Path, seed: int = 0) -> Path:
    """Each run of ``pythia4`` relabelled into four jittered runs."""
    from ckpt_toolkit.store import COLUMNS, ResultsStore

    store = work / "pythia16.duckdb"
    if store.exists():
        return store
    src = ResultsStore(pythia4, read_only=True)
    rows, cks = src.to_pandas(), src.checkpoints()
    rng = np.random.default_rng(seed)
    out_rows, out_cks = [], []
    for k in range(4):
        r = rows.copy()
        r["run"] = r["run"] + f"-s{k}"
        r["checkpoint"] = r["run"] + "@step" + r["step"].astype(str)
        bounded = r["metric"].isin(["acc", "acc_norm", "pct_stereotype"])
        jitter = rng.normal(0.0, 0.01, len(r)) if k else np.zeros(len(r))
        v = r["value"] + np.where(bounded, jitter, r["value"].abs() * jitter)
        r["value"] = np.where(bounded, v.clip(0.0, 1.0), v)
        out_rows.append(r[[c for c in COLUMNS if c != "created_at"]])
        c = cks.copy()
        c["run"] = c["run"] + f"-s{k}"
        c["checkpoint"] = c["run"] + "@step" + c["step"].astype(str)
        out_cks.extend(c.drop(columns=["updated_at"]).to_dict("records"))
    ResultsStore(store).upsert(pd.concat(out_rows, ignore_index=True), checkpoints=out_cks)
    return store


# -- runs -----------------------------------------------------------------------------------------
def report_cmd(store: Path, out: Path, jobs: int | None) -> list[str]:
    cmd = [str(REPO / ".venv/bin/ckpt"), "report", "all", "--store", str(store), "--out", str(out)]
    return cmd + (["--jobs", str(jobs)] if jobs else [])


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (the command and every process it waited for: workers,
    kernels) and stderr of one command. On a loaded machine, CPU / cores bounds the idle wall
    time from below."""
    t0, c0 = time.monotonic(), _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.monotonic() - t0, _children_cpu() - c0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return wall, cpu, proc.stderr


def _t(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def stages(out: Path) -> pd.DataFrame:
    """Per notebook: kernel start, the analysis cell, figures, shutdown, HTML export (s)."""
    import nbformat

    rows = []
    for e in json.loads((out / "index.json").read_text()):
        nb = nbformat.read(e["notebook"], as_version=4)
        pm = nb.metadata.get("papermill", {})
        cells = [
            c.metadata.get("papermill", {})
            for c in nb.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
            and "parameters" not in c.metadata.get("tags", [])
        ]  # fmt: skip
        cells = [c for c in cells if c.get("start_time") and c.get("duration") is not None]
        kernel = _t(cells[0]["start_time"]) - _t(pm["start_time"]) if cells else float("nan")
        analysis = cells[0]["duration"] if cells else float("nan")
        figures = sum(c["duration"] for c in cells[1:])
        execute = e.get("execute_s") or float("nan")
        rows.append(
            {
                "notebook": e["name"],
                "total_s": e["seconds"],
                "kernel_start_s": kernel,
                "analysis_cell_s": analysis,
                "figures_s": figures,
                "shutdown_other_s": execute - kernel - analysis - figures,
                "html_export_s": e.get("export_s"),
            }
        )
    return pd.DataFrame(rows).round(2)


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from ckpt_toolkit.threads import usable_cores

    return {
        "date_utc": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "host": platform.node(),
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
    }


def bench_store(name: str, store: Path, work: Path, jobs: int | None) -> dict:
    out = work / f"reports-{name}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(store.with_name(store.name + ".cache"), ignore_errors=True)
    cmd = report_cmd(store, out, jobs)
    load0 = os.getloadavg()[0]
    cold, cold_cpu, _ = timed(cmd)
    cold_stages = stages(out)
    shutil.rmtree(out)  # the analysis cache stays
    rerender, rerender_cpu, _ = timed(cmd)
    unchanged, unchanged_cpu, err = timed(cmd)
    if "unchanged" not in err:  # the code or the store changed meanwhile (a shared checkout)
        print(f"note: {name}: the second run re-executed reports:\n{err[-1500:]}")
    load1 = os.getloadavg()[0]
    return {
        "store": name,
        "rows": _rows(store),
        "command": " ".join(cmd),
        "cold_s": round(cold, 1),
        "rerender_cached_s": round(rerender, 1),
        "unchanged_s": round(unchanged, 1),
        "cold_cpu_s": round(cold_cpu, 1),
        "rerender_cached_cpu_s": round(rerender_cpu, 1),
        "unchanged_cpu_s": round(unchanged_cpu, 1),
        "target_s": TARGETS.get(name),
        "load_1min_before": round(load0, 2),
        "load_1min_after": round(load1, 2),
        "stages": cold_stages.to_dict("records"),
    }


def _rows(store: Path) -> int:
    from ckpt_toolkit.store import ResultsStore

    return len(ResultsStore(store, read_only=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", default="pythia4,pythia16")
    ap.add_argument("--demo-store", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--jobs", type=int, default=None, help="ckpt report --jobs (default: auto)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="reports-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(json.dumps(info))
    print(f"load average (1, 5, 15 min) at start: {os.getloadavg()}")
    stores: dict[str, Path] = {}
    wanted = [s.strip() for s in args.stores.split(",") if s.strip()]
    if "pythia4" in wanted or "pythia16" in wanted:
        p4, how = pythia4_store(work)
        print(f"pythia4 store: {how}")
        if "pythia4" in wanted:
            stores["pythia4"] = p4
        if "pythia16" in wanted:
            stores["pythia16"] = pythia16_store(work, p4)
    if args.demo_store is not None:
        stores["demo"] = args.demo_store
    results = []
    for name, store in stores.items():
        r = bench_store(name, store, work, args.jobs)
        results.append(r)
        print(
            f"\n{name}: {r['rows']:,} rows  cold {r['cold_s']} s (target {r['target_s']} s)  "
            f"re-render with cached analyses {r['rerender_cached_s']} s  "
            f"unchanged {r['unchanged_s']} s (target {TARGETS['unchanged']} s)  "
            f"load {r['load_1min_before']} -> {r['load_1min_after']}"
        )
        print(
            f"  CPU seconds (all processes): cold {r['cold_cpu_s']}, re-render "
            f"{r['rerender_cached_cpu_s']}, unchanged {r['unchanged_cpu_s']}"
        )
        print(f"  command: {r['command']}")
        print(pd.DataFrame(r["stages"]).to_string(index=False))
    print(f"\nload average (1, 5, 15 min) at end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
