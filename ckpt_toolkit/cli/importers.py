"""``ckpt import lm-eval PATH`` and ``ckpt import csv FILE``: existing results into the store."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import STORE_OPTION

import_app = typer.Typer(
    name="import",
    help="Import existing evaluation results (lm-eval JSON, CSV) into the results store.",
    no_args_is_help=True,
)


def _echo_report(report) -> None:  # noqa: ANN001 - ImportReport, imported lazily
    typer.echo(report.summary())


@import_app.command("lm-eval")
def import_lm_eval_cmd(
    path: Path = typer.Argument(..., help="An lm-eval results JSON, or a folder (recursive)."),
    store: Path = STORE_OPTION,
    run: str | None = typer.Option(
        None, "--run", help="Run name (default: the model name in config.model_args)."
    ),
    tokens_per_step: int | None = typer.Option(
        None, "--tokens-per-step", help="Tokens per step (default: known families, e.g. Pythia)."
    ),
    taxonomy: Path | None = typer.Option(None, "--taxonomy", help="User taxonomy YAML."),
) -> None:
    """Import lm-evaluation-harness results (old and 0.4.x JSON layouts)."""
    from ..analysis.taxonomy import load_taxonomy
    from ..importers import import_lm_eval

    report = import_lm_eval(
        path, store, taxonomy=load_taxonomy(taxonomy), run=run, tokens_per_step=tokens_per_step
    )
    _echo_report(report)


@import_app.command("csv")
def import_csv_cmd(
    file: Path = typer.Argument(..., help="A tidy CSV, or a wide CSV with --mapping."),
    store: Path = STORE_OPTION,
    mapping: Path | None = typer.Option(
        None, "--mapping", "-m", help="YAML mapping of a wide CSV's columns to task/metric."
    ),
    taxonomy: Path | None = typer.Option(None, "--taxonomy", help="User taxonomy YAML."),
) -> None:
    """Import a tidy CSV (checkpoint x task x metric rows) or a wide CSV with a mapping."""
    from ..analysis.taxonomy import load_taxonomy
    from ..importers import import_csv

    report = import_csv(file, store, mapping=mapping, taxonomy=load_taxonomy(taxonomy))
    _echo_report(report)


def register(app: typer.Typer) -> None:
    """Add the ``import`` sub-app to ``app``."""
    app.add_typer(import_app, name="import")
