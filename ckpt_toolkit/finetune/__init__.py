"""Supervised fine-tuning (SFT): the ground truth that pre-fine-tuning proxies try to predict.

* :func:`run_finetune` — the sweep (checkpoints × SFT tasks) into the results store;
* :func:`load_spec` / :func:`default_spec` — the fixed hyperparameters (``default_spec.yaml``);
* :func:`finetune_model` / :func:`evaluate_items` — fine-tune one model, score items;
  :func:`finetune_and_score` — both, repeated over the spec's seeds.
"""

from .runner import FinetuneReport, SftTask, build_sft_tasks, finetune_unit, run_finetune
from .spec import default_spec, load_spec, sft_spec_hash
from .train import evaluate_items, finetune_and_score, finetune_model

__all__ = [
    "FinetuneReport",
    "SftTask",
    "build_sft_tasks",
    "default_spec",
    "evaluate_items",
    "finetune_and_score",
    "finetune_model",
    "finetune_unit",
    "load_spec",
    "run_finetune",
    "sft_spec_hash",
]
