"""Capability dynamics over pretraining (paper 2: "The Fine Line", arXiv 2404.01204), with
signal-to-noise (Heineman et al. 2025, arXiv 2508.13144) and decision accuracy (Magnusson et al.
2025, "DataDecide", arXiv 2504.11393) across runs.

Pure functions over the store's tidy table (``ResultsStore.to_pandas()``); nothing here loads a
model. :func:`run_dynamics` runs everything and writes the CSV tables; each step is public so a
notebook can run one alone. Modules (imported in this order; none imports the package itself):

* :mod:`.curves` — row selection, metric / score tables, curves, loss series;
* :mod:`.phases` — phases of each curve; :mod:`.fits` — fitted curves and extrapolation;
* :mod:`.agreement` — within-run agreement (benchmarks, sizes, loss);
* :mod:`.signal` — signal-to-noise and the monitoring advice;
* :mod:`.cross_run` — cross-run agreement, decision accuracy, size order;
* :mod:`.plots` — a matplotlib overlay of curves; :mod:`.pipeline` — :func:`run_dynamics`.

Every analysis returns a table with ``status`` ("ok" / "skipped") and ``reason`` columns where
too few checkpoints or runs cannot support it, instead of raising.
"""

from __future__ import annotations

from .agreement import (
    discordant_share,
    lead_lag,
    loss_agreement,
    sibling_prediction,
    size_agreement,
    trajectory_correlations,
)
from .cross_run import (
    cross_run_agreement,
    decision_accuracy,
    disagreements_in_words,
    match_x,
    parse_target,
    size_order,
)
from .curves import (
    CURVE_KEYS,
    curve_noise,
    curves,
    log_x,
    loss_series,
    loss_table,
    lowess_smooth,
    metric_table,
    run_sizes,
    score_table,
    select_rows,
    sort_by_size,
    training_windows,
)
from .fits import fit_curves
from .pairs import PairCounts, pair_counts
from .phases import phases
from .pipeline import TABLES, run_dynamics
from .plots import plot_curves
from .signal import MIN_SNR, Z_CHANCE, monitoring_advice, run_finals, snr, snr_table

__all__ = [
    "CURVE_KEYS",
    "MIN_SNR",
    "TABLES",
    "Z_CHANCE",
    "PairCounts",
    "cross_run_agreement",
    "curve_noise",
    "curves",
    "decision_accuracy",
    "disagreements_in_words",
    "discordant_share",
    "fit_curves",
    "lead_lag",
    "log_x",
    "loss_agreement",
    "loss_series",
    "loss_table",
    "lowess_smooth",
    "match_x",
    "metric_table",
    "monitoring_advice",
    "pair_counts",
    "parse_target",
    "phases",
    "plot_curves",
    "run_dynamics",
    "run_finals",
    "run_sizes",
    "score_table",
    "select_rows",
    "sibling_prediction",
    "size_agreement",
    "size_order",
    "snr",
    "snr_table",
    "sort_by_size",
    "trajectory_correlations",
    "training_windows",
]
