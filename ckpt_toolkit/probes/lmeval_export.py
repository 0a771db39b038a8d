"""Export tasks to lm-evaluation-harness's format: multiple choice with our k-shot prompts, and
held-out documents for its rolling perplexity.

Each exported document carries the full prompt our kshot probe builds (shots included), so
lm-eval runs it at ``num_fewshot: 0`` on exactly the same text: this is how the agreement test
and the benchmark compare the two engines item by item. ``data_files`` are absolute paths
(lm-eval resolves relative ones against the working directory, not the YAML).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..errors import TaskFileError
from ..tasks import TaskItem
from .kshot import build_prompt, eval_items, select_shots
from .registry import higher_is_better


def export_lmeval_task(
    task: str,
    items: list[TaskItem],
    out_dir: str | Path,
    shots: int = 0,
    seed: int = 1234,
    separator: str = "\n\n",
    limit: int | None = None,
    name: str | None = None,
) -> Path:
    """Write ``<out_dir>/<name>.yaml`` and ``<name>.jsonl``; returns the YAML path.

    The lm-eval task name is ``name`` (default ``ckpt_<task>_<shots>shot``).
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or f"ckpt_{task}_{shots}shot"
    chosen = select_shots(task, items, shots, seed)
    evals = [it for it in eval_items(task, items, limit) if it.is_multiple_choice]
    if not evals:
        raise TaskFileError(f"task {task!r} has no multiple-choice items to export")
    data = out_dir / f"{name}.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for it in evals:
            doc = {
                "id": it.id,
                "prompt": build_prompt(chosen, it, separator),
                "choices": list(it.choices),
                "gold": it.gold,
            }
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "prompt",
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": "",  # our choices carry their own leading space
        "num_fewshot": 0,
        "metric_list": [
            {"metric": m, "aggregation": "mean", "higher_is_better": higher_is_better(m)}
            for m in ("acc", "acc_norm")
        ],
        "metadata": {"version": 1.0},
    }
    path = out_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def export_lmeval_rolling_task(
    texts: list[str], out_dir: str | Path, name: str = "ckpt_rolling"
) -> Path:
    """Write ``<out_dir>/<name>.yaml`` and ``<name>.jsonl``: documents for lm-eval's rolling
    perplexity (``output_type: loglikelihood_rolling``, metrics word/byte perplexity and bits
    per byte); returns the YAML path. Our ``--rolling lmeval`` scores the same windows."""
    if not texts:
        raise TaskFileError(f"no documents to export for lm-eval task {name!r}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / f"{name}.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for i, text in enumerate(texts):
            fh.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        "doc_to_target": "{{text}}",
        "metric_list": [
            {"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")
        ],
        "metadata": {"version": 1.0},
    }
    path = out_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path
