"""``ckpt demo``: the whole flow on the built-in world — train the zoo, probe every checkpoint,
fine-tune the final checkpoints, run the dynamics and pairwise analyses, render the reports.

Every stage resumes: finished zoo variants, probe results and fine-tunes are not redone.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import typer

#: k-shot probe items per task and checkpoint in the demo (docs/zoo.md, "Task sizes")
DEMO_PROBE_ITEMS = 256


def _side_by_side(threads: int | str | None) -> dict:
    """Executor arguments of the demo's probe and fine-tuning sweeps. The quick zoo's models
    are so small that one thread per checkpoint beats two (BENCHMARKS.md, probing on a busy
    machine), so by default the checkpoints run side by side in worker processes of one thread
    each, as many as the free cores allow (docs/threads.md); an explicit ``--threads N`` runs
    them one after another in this process with N threads."""
    if threads is None or str(threads).strip().lower() == "auto":
        return {"executor": "processes", "threads": 1}
    return {"threads": threads}


def _proxies_report_defaults() -> dict:
    """The proxies notebook's declared defaults of the pairwise analysis (one source: the
    notebook), so the demo's analysis and the report share one cache entry."""
    from ..reports import declared_parameters, notebooks_dir

    declared = declared_parameters(notebooks_dir() / "proxies.ipynb")
    names = ("pool", "targets", "proxies", "fallback_targets", "classifier", "n_splits", "n_boot")
    return {n: declared[n].default for n in (*names, "seed")}


def run_demo(
    preset: str,
    zoo: Path,
    store: Path,
    reports: Path,
    seed: int = 0,
    work: Path | None = None,
    threads: int | str | None = None,
) -> dict[str, float]:
    """Run every stage; returns the wall time of each stage in seconds. ``threads``: torch
    threads of the zoo, probe and fine-tune stages (None/"auto": docs/threads.md)."""
    from ..analysis import pairwise
    from ..finetune import run_finetune
    from ..probes import run_probes
    from ..reports import run_reports
    from ..reports.cache import dynamics_tables, pairwise_tables
    from ..zoo import train_zoo

    work = work or store.parent
    times: dict[str, float] = {}

    def stage(name: str):
        typer.secho(f"== {name}", bold=True)
        return time.perf_counter()

    t = stage(f"zoo: pretraining the '{preset}' preset into {zoo}")
    manifest = train_zoo(preset, out=zoo, seed=seed, threads=threads)
    times["zoo"] = time.perf_counter() - t

    t = stage(f"probes: ppl, sc_ppl, kshot on every checkpoint → {store}")
    # the world's test splits are sized for fine-tuning (640 items per generated task); the
    # k-shot probes score the first DEMO_PROBE_ITEMS of them at every checkpoint
    report = run_probes(manifest, store, limit=DEMO_PROBE_ITEMS, **_side_by_side(threads))
    times["probes"] = time.perf_counter() - t
    if not report.ok:
        typer.secho(report.summary(), fg="yellow", err=True)

    t = stage("fine-tuning: final checkpoint of every run on every capability task")
    report = run_finetune(manifest, store, **_side_by_side(threads))
    times["finetune"] = time.perf_counter() - t
    if not report.ok:
        typer.secho(report.summary(), fg="yellow", err=True)

    t = stage("analyses: capability dynamics and pairwise proxy evaluation")
    # through the report cache, with the report notebooks' default parameters, so the reports
    # below read these tables instead of computing them again (docs/reports.md)
    out = work / "dynamics"
    out.mkdir(parents=True, exist_ok=True)
    for name, table in dynamics_tables(store, x="tokens").items():
        table.to_csv(out / f"{name}.csv", index=False)
    # the same inputs and defaults as `ckpt pairwise --store` and the proxies report
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pairwise.PairwiseWarning)
        _, result = pairwise_tables(store, **_proxies_report_defaults(), progress=False)
    for w in caught:  # printed like `ckpt pairwise` prints them, not as Python warnings
        if issubclass(w.category, pairwise.PairwiseWarning):
            typer.secho(f"pairwise warning: {w.message}", fg="yellow", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    pairwise.write_outputs(result, work / "pairwise")
    times["analyses"] = time.perf_counter() - t

    t = stage(f"reports → {reports}/index.html")
    results = run_reports("all", store, reports)
    times["reports"] = time.perf_counter() - t
    failed = [r for r in results if not r.ok]  # "unchanged" (not re-run) is ok too
    if failed:
        typer.secho(f"{len(failed)} report(s) failed; see {reports}/index.html", fg="red", err=True)
    return times


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""

    @app.command("demo")
    def demo(
        preset: str = typer.Option("quick", help="Zoo preset: smoke, quick or paper."),
        zoo: Path = typer.Option(Path("demo/zoo"), help="Where the zoo is trained."),
        store: Path = typer.Option(
            Path("demo/results.duckdb"), "--store", "-s", help="Results store."
        ),
        reports: Path = typer.Option(Path("reports"), help="Where the HTML reports go."),
        seed: int = typer.Option(0, help="Seed of the world and the zoo."),
        threads: str = typer.Option(
            "auto", "--threads", help="torch threads per task: auto (docs/threads.md) or N."
        ),
    ) -> None:
        """Train the zoo, probe, fine-tune, analyse and write REPORTS/index.html."""
        from ..threads import parse_threads

        n_threads = parse_threads(threads)  # a bad value fails before anything runs
        try:
            from .. import zoo as _zoo  # noqa: F401
        except ImportError:
            typer.echo("zoo not built yet: the built-in world and zoo are not part of this build.")
            raise typer.Exit(0) from None
        start = time.perf_counter()
        times = run_demo(preset, zoo, store, reports, seed, threads=n_threads)
        total = time.perf_counter() - start
        typer.secho("\n".join(f"  {k:<9} {v:7.1f} s" for k, v in times.items()), fg="green")
        typer.secho(f"done in {total:.0f} s — open {reports / 'index.html'}", fg="green", bold=True)
