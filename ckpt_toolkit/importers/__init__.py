"""Importers: existing evaluation results into the results store.

- :func:`import_results` — a file or folder in any supported format, detected from the content:
  lm-evaluation-harness JSON (old and 0.4.x), columnar aggregate JSON (BigScience), tidy tables
  (CSV, TSV, Parquet) and wide tables with a YAML mapping;
- :func:`import_lm_eval`, :func:`import_csv` — the same, restricted to JSON or to tables.

Each returns an :class:`ImportReport` (rows written, checkpoints, skipped items with reasons,
tasks in "other", warnings such as tokens assumed rather than read).
"""

from .auto import import_results
from .common import ImportReport, parse_size, parse_step
from .explicit import import_csv, import_lm_eval
from .lm_eval import parse_lm_eval
from .tokens import family_tokens_per_step, parse_tokens_per_step
from .wide import load_mapping

__all__ = [
    "ImportReport",
    "family_tokens_per_step",
    "import_csv",
    "import_lm_eval",
    "import_results",
    "load_mapping",
    "parse_lm_eval",
    "parse_size",
    "parse_step",
    "parse_tokens_per_step",
]
