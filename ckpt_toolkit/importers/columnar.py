"""Columnar aggregate JSON, as written by the BigScience / Megatron-DeepSpeed "evaluation through
training" scripts: one run per file, one list entry per checkpoint::

    {"tokens": [1.0e9, 2.0e9, ...], "checkpoints": [1000, 2000, ...],
     "results": {"arc_easy": {"acc": [...], "acc_stderr": [...]}, "lambada": {"ppl": [...]}}}

Run = the file name without ``_agg`` / ``-checkpoints`` (``tr3d-1B3-oscar-checkpoints_agg.json``
→ ``tr3d-1B3-oscar``), step = ``checkpoints[i]`` (a number or ``global_stepN``), tokens =
``tokens[i]`` (else step x tokens per step, with a warning when assumed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..analysis.taxonomy import Taxonomy
from ..errors import ImportFormatError
from ..probes.registry import IMPORT
from ..specs import spec_hash
from .common import ImportReport, as_number, checked_int, checkpoint_name, parse_size, parse_step
from .tokens import TokensPerStep, tokens_per_step_for

PROBE = IMPORT
_RUN_SUFFIX_RE = re.compile(r"([_-](agg|aggregated?|checkpoints?|results?))+$", re.IGNORECASE)


def is_columnar(data: Any) -> bool:
    """Whether a parsed JSON document is a columnar aggregate (metric values are lists)."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        return False
    if "checkpoints" in data:
        return True
    return any(
        isinstance(m, dict) and any(isinstance(v, list) for v in m.values())
        for m in data["results"].values()
    )


def run_from_filename(path: Path) -> str:
    """``tr3d-1B3-oscar-checkpoints_agg.json`` → ``tr3d-1B3-oscar``."""
    return _RUN_SUFFIX_RE.sub("", path.stem) or path.stem


def _step_of(value: Any, where: str) -> int:
    if isinstance(value, str) and not value.strip().lstrip("+").isdigit():
        step = parse_step(value.replace("global_step", "step"))
        if step is None:
            raise ImportFormatError(f"{where}: {value!r} names no step (use N or global_stepN)")
        return checked_int(step, where)
    return checked_int(value, where, allow_none=False)


def parse_columnar(
    data: dict[str, Any],
    path: Path,
    tax: Taxonomy,
    report: ImportReport,
    *,
    run: str | None = None,
    tokens_per_step: TokensPerStep = None,
    source: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Store rows and checkpoint metadata of one columnar aggregate document."""
    source = source or str(path.resolve())
    run_name = run or run_from_filename(path)
    cks = data.get("checkpoints")
    if not isinstance(cks, list) or not cks:
        raise ImportFormatError(f"{path}: 'checkpoints' must be a non-empty list of steps")
    steps = [_step_of(c, f"{path}: checkpoints[{i}]") for i, c in enumerate(cks)]
    n = len(steps)
    first: dict[int, int] = {}
    for i, st in enumerate(steps):
        if st in first:
            raise ImportFormatError(
                f"{path}: checkpoints[{i}] repeats step {st} of checkpoints[{first[st]}]; "
                "each list entry must be a different checkpoint"
            )
        first[st] = i
    raw_tokens = data.get("tokens")
    if raw_tokens is None:
        raw_tokens = [None] * n
    if not isinstance(raw_tokens, list) or len(raw_tokens) != n:
        raise ImportFormatError(
            f"{path}: 'tokens' must be a list as long as 'checkpoints' ({n} entries)"
        )
    tokens = [checked_int(t, f"{path}: tokens[{i}]") for i, t in enumerate(raw_tokens)]
    if any(t is None for t in tokens):
        tps, warning = tokens_per_step_for(run_name, tokens_per_step)
        if warning:
            report.warn(warning)
        if tps:
            tokens = [
                t if t is not None or s is None else checked_int(s * tps, f"{path}: tokens")
                for t, s in zip(tokens, steps)
            ]
    shots = checked_int(data.get("num_fewshot", data.get("shots")), f"{path}: num_fewshot") or 0
    params = parse_size(run_name)
    names = [checkpoint_name(run_name, s) for s in steps]
    prov = {"source": source, "importer": PROBE, "format": "columnar"}
    rows: list[dict[str, Any]] = []
    for task, metrics in data["results"].items():
        if not isinstance(metrics, dict):
            raise ImportFormatError(f"{path}: results.{task} must map metric names to lists")
        for metric, values in metrics.items():
            metric = str(metric)
            if metric.endswith("_stderr"):
                continue
            if not isinstance(values, list) or len(values) != n:
                raise ImportFormatError(
                    f"{path}: results.{task}.{metric} must be a list of {n} values (one per "
                    f"checkpoint), not {type(values).__name__}"
                    + (f" of {len(values)}" if isinstance(values, list) else "")
                )
            errs = metrics.get(f"{metric}_stderr")
            if errs is not None and (not isinstance(errs, list) or len(errs) != n):
                raise ImportFormatError(
                    f"{path}: results.{task}.{metric}_stderr must be a list of {n} values"
                )
            loss = tax.is_loss_series(str(task), metric)
            info = tax.lookup(str(task))
            cat = "language_modeling" if loss and not info.known else info.category
            if cat == "other":
                report.note_other(str(task), info.known)
            for i, raw in enumerate(values):
                value = as_number(raw)
                if value is None:
                    report.skip(path, f"{task}/{metric}[{i}]", "null, NaN or non-numeric value")
                    continue
                rows.append(
                    {
                        "run": run_name,
                        "checkpoint": names[i],
                        "step": steps[i],
                        "tokens": tokens[i],
                        "params": params,
                        "probe": PROBE,
                        "task": str(task),
                        "capability": cat,
                        "metric": metric,
                        "value": value,
                        "stderr": as_number(errs[i]) if errs is not None else None,
                        "n": None,
                        "shots": shots,
                        "spec_hash": spec_hash({"importer": PROBE}),
                        "provenance": json.dumps(prov, sort_keys=True),
                    }
                )
    metas = [
        {
            "checkpoint": names[i],
            "run": run_name,
            "step": steps[i],
            "tokens": tokens[i],
            "params": params,
            "config": {"imports": [prov]},
        }
        for i in range(n)
    ]
    return rows, metas
