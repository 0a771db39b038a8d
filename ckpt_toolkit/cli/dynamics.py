"""``ckpt dynamics``: capability dynamics tables (paper 2) from the results store."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import STORE_OPTION


def register(app: typer.Typer) -> None:
    """Add ``dynamics`` to ``app``."""

    @app.command("dynamics")
    def dynamics(
        out: Path = typer.Option(..., "--out", "-o", help="Folder for the CSV tables."),
        store: Path = STORE_OPTION,
        taxonomy: Path | None = typer.Option(None, "--taxonomy", help="User taxonomy YAML."),
        x: str = typer.Option("tokens", "--x", help="x axis: tokens or step."),
        probe: list[str] | None = typer.Option(
            None, "--probe", help="Only rows of these probes (repeatable; default: all)."
        ),
        runs: list[str] | None = typer.Option(
            None, "--runs", help="Only runs matching this glob (repeatable, e.g. 'pythia-*')."
        ),
        shots: list[int] | None = typer.Option(
            None, "--shots", help="Only scores at this shot count (repeatable; loss rows kept)."
        ),
        tasks: list[str] | None = typer.Option(
            None,
            "--tasks",
            help="Only tasks matching this glob or group (repeatable, e.g. 'arc_*').",
        ),
        last_n: int = typer.Option(
            5, "--last-n", help="Final checkpoints averaged per run for signal-to-noise (>= 2)."
        ),
        target: str | None = typer.Option(
            None,
            "--target",
            help="Decision-accuracy target TASK:METRIC[@SHOTS] "
            "(default: each metric at the last common x).",
        ),
        x_tolerance: float = typer.Option(
            0.0,
            "--x-tolerance",
            help="Match runs' x across runs within this relative tolerance (0: exact x).",
        ),
    ) -> None:
        """Curves, phases, fits, agreement, signal-to-noise, monitoring advice, cross-run
        agreement, decision accuracy and size order, as CSV tables in --out."""
        from ..analysis.dynamics import parse_target, run_dynamics
        from ..analysis.taxonomy import load_taxonomy
        from ..errors import ParameterError
        from ..store import ResultsStore

        if x not in ("tokens", "step"):
            raise ParameterError(f"--x must be 'tokens' or 'step', not {x!r}")
        if last_n < 2:
            raise ParameterError(
                f"--last-n must be >= 2 (noise needs two checkpoints), not {last_n}"
            )
        if x_tolerance < 0:
            raise ParameterError(f"--x-tolerance must be >= 0, not {x_tolerance}")
        if any(s < 0 for s in shots or ()):
            raise ParameterError(f"--shots must be >= 0, not {shots}")
        parse_target(target)  # a malformed target fails before the store is read
        tax = load_taxonomy(taxonomy)
        df = ResultsStore(store, read_only=True).to_pandas(probe=probe or None)
        if df.empty:
            raise ParameterError(f"results store {store} has no rows to analyse")
        tables = run_dynamics(
            df,
            out,
            taxonomy=tax,
            x=x,
            runs=runs or None,
            shots=shots or None,
            tasks=tasks or None,
            last_n=last_n,
            target=target,
            x_tolerance=x_tolerance,
        )
        for name, t in tables.items():
            ok = int((t["status"] == "ok").sum()) if "status" in t else len(t)
            typer.echo(f"{out / (name + '.csv')}: {len(t)} rows ({ok} ok)")
