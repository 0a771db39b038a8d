"""Import a table (CSV, TSV or Parquet): tidy, or wide with a mapping (see :mod:`.tidy` and
:mod:`.wide` for the layouts). Kept for ``ckpt import csv``; ``ckpt import PATH`` detects the
format itself; ``ckpt import lm-eval`` for JSON."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..analysis.taxonomy import Taxonomy
from ..store import ResultsStore
from .auto import import_results
from .common import ImportReport
from .tokens import TokensPerStep


def import_csv(
    path: str | Path,
    store: ResultsStore | str | Path,
    *,
    mapping: str | Path | dict[str, Any] | None = None,
    taxonomy: Taxonomy | None = None,
    run: str | None = None,
    tokens_per_step: TokensPerStep | str = None,
) -> ImportReport:
    """Import a tidy table, or a wide table with a ``mapping`` (YAML path or dict), from a file
    or a folder into ``store``.

    Rows get probe ``"import"`` (tidy rows may name their own ``probe``), the taxonomy category
    as capability, and provenance naming the source file. Re-import replaces rows.
    """
    return import_results(
        path,
        store,
        mapping=mapping,
        taxonomy=taxonomy,
        run=run,
        tokens_per_step=tokens_per_step,
        fmt="table",
        progress=False,
    )


def import_lm_eval(
    path: str | Path | Iterable[str | Path],
    store: ResultsStore | str | Path,
    *,
    taxonomy: Taxonomy | None = None,
    run: str | None = None,
    tokens_per_step: TokensPerStep | str = None,
    progress: bool = True,
) -> ImportReport:
    """Import an lm-eval results file, or every ``*.json`` under a folder, into ``store``.

    All rows land in one transaction (re-importing replaces them: no duplicates). In a folder,
    JSON files without a ``results`` key are skipped (and reported); a single file must be one.
    Columnar aggregate JSON (BigScience) is recognised too.
    """
    return import_results(
        path,
        store,
        taxonomy=taxonomy,
        run=run,
        tokens_per_step=tokens_per_step,
        fmt="json",
        progress=progress,
    )
