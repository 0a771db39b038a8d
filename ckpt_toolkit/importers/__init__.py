"""Importers: existing evaluation results into the results store.

- :func:`import_lm_eval` — lm-evaluation-harness JSON (old and 0.4.x layouts), file or folder;
- :func:`import_csv` — a tidy CSV, or a wide CSV with a YAML mapping.

Each returns an :class:`ImportReport` (rows written, checkpoints, skipped items with reasons).
"""

from .common import ImportReport, parse_size, parse_step
from .csv_import import import_csv, load_mapping
from .lm_eval import import_lm_eval, parse_lm_eval

__all__ = [
    "ImportReport",
    "import_csv",
    "import_lm_eval",
    "load_mapping",
    "parse_lm_eval",
    "parse_size",
    "parse_step",
]
