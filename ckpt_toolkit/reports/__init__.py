"""Parameterized notebook reports: papermill runner, parameter validation, HTML export, index.

>>> from ckpt_toolkit.reports import run_reports
>>> results = run_reports("all", "demo/results.duckdb", "reports")   # doctest: +SKIP

The report notebooks live in the repository's ``notebooks/`` folder (see
:func:`~ckpt_toolkit.reports.runner.notebooks_dir`). Each declares its parameters in one cell
tagged ``parameters``; the runner validates what it is given against them.
"""

from __future__ import annotations

from .export import external_urls, notebook_to_html
from .index import write_index
from .params import declared_parameters, expand_grid, validate_params
from .runner import (
    DEFAULT_REPORTS,
    KERNEL_NAME,
    ReportError,
    ReportResult,
    available_reports,
    choose_kernel,
    notebooks_dir,
    run_reports,
    summary,
)

__all__ = [
    "DEFAULT_REPORTS",
    "KERNEL_NAME",
    "ReportError",
    "ReportResult",
    "available_reports",
    "choose_kernel",
    "declared_parameters",
    "expand_grid",
    "external_urls",
    "notebook_to_html",
    "notebooks_dir",
    "run_reports",
    "summary",
    "validate_params",
    "write_index",
]
