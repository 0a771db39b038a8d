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
    ) -> None:
        """Curves, phases, fits, correlations, lead/lag, loss agreement and recommendations."""
        from ..analysis.dynamics import run_dynamics
        from ..analysis.taxonomy import load_taxonomy
        from ..errors import ParameterError
        from ..store import ResultsStore

        if x not in ("tokens", "step"):
            raise ParameterError(f"--x must be 'tokens' or 'step', not {x!r}")
        df = ResultsStore(store, read_only=True).to_pandas(probe=probe or None)
        if df.empty:
            raise ParameterError(f"results store {store} has no rows to analyse")
        tables = run_dynamics(df, out, taxonomy=load_taxonomy(taxonomy), x=x)
        for name, t in tables.items():
            ok = int((t["status"] == "ok").sum()) if "status" in t else len(t)
            typer.echo(f"{out / (name + '.csv')}: {len(t)} rows ({ok} ok)")
