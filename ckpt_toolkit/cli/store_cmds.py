"""``ckpt export``: write the results store's tidy table to CSV or Parquet."""

from __future__ import annotations

from pathlib import Path

import typer

from ..store import ResultsStore
from .common import STORE_OPTION


def register(app: typer.Typer) -> None:
    """Add ``export`` to ``app``."""

    @app.command("export")
    def export(
        out: Path = typer.Option(..., "--out", "-o", help="Output file."),
        format: str = typer.Option(
            None, "--format", "-f", help="csv or parquet (default: from the file suffix)."
        ),
        store: Path = STORE_OPTION,
    ) -> None:
        """Write the tidy measurements table to CSV or Parquet."""
        st = ResultsStore(store, read_only=True)
        path = st.export(out, format)
        typer.echo(f"wrote {len(st)} rows to {path}")
