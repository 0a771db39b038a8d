"""``ckpt import PATH`` (format detected from the content), ``ckpt import lm-eval PATH`` and
``ckpt import csv PATH``: existing results into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from .common import STORE_OPTION

AUTO = "auto"


class _DefaultToAuto(TyperGroup):
    """``ckpt import PATH ...`` runs ``ckpt import auto PATH ...`` (any first word that is not
    a subcommand or --help)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [AUTO, *args]
        return super().parse_args(ctx, args)


import_app = typer.Typer(
    name="import",
    cls=_DefaultToAuto,
    help="Import existing evaluation results into the results store: `ckpt import PATH` "
    "detects the format (lm-eval JSON, columnar JSON, tidy or wide CSV/Parquet).",
    no_args_is_help=True,
)

RUN_OPTION = typer.Option(
    None, "--run", help="Run name (default: from the data, the file name or the mapping)."
)
TPS_OPTION = typer.Option(
    None,
    "--tokens-per-step",
    help="N (every run) or run=N,run2=M. Default: read from the data or the mapping, else a "
    "known family (Pythia 2,097,152; its batch-size variants from their name), with a warning.",
)
TAXONOMY_OPTION = typer.Option(None, "--taxonomy", help="User taxonomy YAML.")
MAPPING_OPTION = typer.Option(
    None, "--mapping", "-m", help="YAML mapping of a wide table's columns (see docs/import.md)."
)


def _run(fmt: str, path: Path, store: Path, **kwargs: Any) -> None:
    from ..analysis.taxonomy import load_taxonomy
    from ..importers import import_results

    taxonomy = kwargs.pop("taxonomy")
    report = import_results(path, store, taxonomy=load_taxonomy(taxonomy), fmt=fmt, **kwargs)
    typer.echo(report.summary())


@import_app.command(AUTO)
def import_auto_cmd(
    path: Path = typer.Argument(..., help="A results file, or a folder (recursive)."),
    store: Path = STORE_OPTION,
    mapping: Path | None = MAPPING_OPTION,
    run: str | None = RUN_OPTION,
    tokens_per_step: str | None = TPS_OPTION,
    taxonomy: Path | None = TAXONOMY_OPTION,
) -> None:
    """Import a file or folder, detecting each file's format (the default: `ckpt import PATH`)."""
    _run(
        "auto",
        path,
        store,
        mapping=mapping,
        run=run,
        tokens_per_step=tokens_per_step,
        taxonomy=taxonomy,
    )


@import_app.command("lm-eval")
def import_lm_eval_cmd(
    path: Path = typer.Argument(..., help="An lm-eval results JSON, or a folder (recursive)."),
    store: Path = STORE_OPTION,
    run: str | None = RUN_OPTION,
    tokens_per_step: str | None = TPS_OPTION,
    taxonomy: Path | None = TAXONOMY_OPTION,
) -> None:
    """Import lm-evaluation-harness results (old and 0.4.x layouts; columnar JSON too)."""
    _run("json", path, store, run=run, tokens_per_step=tokens_per_step, taxonomy=taxonomy)


@import_app.command("csv")
def import_csv_cmd(
    file: Path = typer.Argument(
        ..., help="A tidy CSV/Parquet, a wide one with --mapping, or a folder of them."
    ),
    store: Path = STORE_OPTION,
    mapping: Path | None = MAPPING_OPTION,
    run: str | None = RUN_OPTION,
    tokens_per_step: str | None = TPS_OPTION,
    taxonomy: Path | None = TAXONOMY_OPTION,
) -> None:
    """Import a tidy table (checkpoint x task x metric rows) or a wide table with a mapping."""
    _run(
        "table",
        file,
        store,
        mapping=mapping,
        run=run,
        tokens_per_step=tokens_per_step,
        taxonomy=taxonomy,
    )


def register(app: typer.Typer) -> None:
    """Add the ``import`` sub-app to ``app``."""
    app.add_typer(import_app, name="import")
