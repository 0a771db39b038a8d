"""Which checkpoint will fine-tune better? Proxies and a learned comparator, evaluated pairwise.

The method of "Can Pre-training Indicators Reliably Predict Fine-tuning Outcomes of LLMs?"
(arXiv 2504.12491); definitions and outputs in ``docs/pairwise.md``.

Public API:

* inputs — :func:`pairwise_inputs` (store rows → models, targets, proxies, ground-truth signal;
  used by ``ckpt pairwise --store``, ``ckpt demo`` and the proxies notebook),
  :func:`model_table_from_store`, :func:`table_inputs`, :func:`parse_combine`;
* analysis — :func:`evaluate_pairwise` (a per-model table → :class:`PairwiseResult`),
  :func:`evaluate_store` (inputs + evaluation in one call), :func:`write_outputs`;
* the ground truth's own signal — :func:`ground_truth_signal`, :data:`MIN_SIGNAL_RATIO`;
* building blocks — :mod:`.steps` (one function per analysis, each returning one table),
  :mod:`.core` (pair credit, bootstrap), :mod:`.compare` (the comparator, model splits),
  :mod:`.direction` (metric direction, read from the project's declared table).

Modules import one way: core → compare / direction → model_table / signal → inputs → steps →
evaluate → this package.
"""

from __future__ import annotations

from .compare import MIN_TEST_MODELS, MIN_TRAIN_MODELS, PairwiseComparator
from .evaluate import OUTPUT_FILES, PairwiseResult, evaluate_pairwise, evaluate_store, write_outputs
from .inputs import (
    FALLBACK_TARGETS,
    PairwiseInputs,
    PairwiseWarning,
    pairwise_inputs,
    parse_combine,
    table_inputs,
)
from .model_table import model_table_from_store, summary_proxies, task_targets
from .signal import MIN_SIGNAL_RATIO, ground_truth_signal

__all__ = [
    "FALLBACK_TARGETS",
    "MIN_SIGNAL_RATIO",
    "MIN_TEST_MODELS",
    "MIN_TRAIN_MODELS",
    "OUTPUT_FILES",
    "PairwiseComparator",
    "PairwiseInputs",
    "PairwiseResult",
    "PairwiseWarning",
    "evaluate_pairwise",
    "evaluate_store",
    "ground_truth_signal",
    "model_table_from_store",
    "pairwise_inputs",
    "parse_combine",
    "summary_proxies",
    "table_inputs",
    "task_targets",
    "write_outputs",
]
