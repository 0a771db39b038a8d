"""Import lm-evaluation-harness JSON results (old layout and 0.4.x layout) into the store.

Old layout (e.g. the Pythia evals): ``{"results": {task: {"acc": .., "acc_stderr": ..}},
"versions": {...}, "config": {"model_args": "pretrained=ORG/NAME,revision=stepN",
"num_fewshot": K}}``.
0.4.x layout: metric keys carry a filter (``"acc,none"``, ``"acc_stderr,none"``, stderr may be
``"N/A"``), shots per task in ``"n-shot"``, sample counts in ``"n-samples"``, group aggregates in
``"groups"``, and ``config.model_args`` is a string or a mapping.

Run, step, tokens and size come from the data (``pretrained=``, ``revision=``), never from the
file name unless the data has no revision (then the report says so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..analysis.taxonomy import Taxonomy, load_taxonomy
from ..errors import ImportFormatError
from ..probes.registry import LM_EVAL
from ..specs import spec_hash
from .common import (
    ImportReport,
    as_number,
    checked_int,
    checkpoint_name,
    parse_size,
    parse_step,
)
from .tokens import TokensPerStep, tokens_per_step_for

PROBE = LM_EVAL
_META_KEYS = {"alias", "samples", "name", "sample_len", " "}


def parse_model_args(value: Any, path: Path) -> dict[str, str]:
    """``"pretrained=X,revision=step1"`` (or a mapping) → dict of strings."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise ImportFormatError(f"{path}: config.model_args must be a string or a mapping")
    out = {}
    for part in value.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def load_json(path: Path) -> Any:
    """Parse a JSON results file; every failure is an :class:`ImportFormatError` naming it
    (unreadable, not UTF-8, invalid JSON, nested too deeply, a number too long)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"cannot read {path}: {exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(
            f"{path} is not UTF-8 text (byte {exc.start}: {raw[exc.start : exc.start + 1]!r}); "
            "results files must be UTF-8 JSON"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ImportFormatError(f"{path}: JSON nested too deeply to be a results file") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python's digit limit
        raise ImportFormatError(f"{path} is not valid JSON: {exc}") from None


def _split_metric(key: str) -> tuple[str, str]:
    """``"acc,none"`` → ("acc", "none"); ``"acc"`` → ("acc", "")."""
    name, _, filt = key.partition(",")
    return name, filt


def _mapping(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImportFormatError(
            f"{path}: '{key}' must be a mapping of task names, not {type(value).__name__}"
        )
    return value


def parse_lm_eval(
    data: Any,
    path: Path,
    *,
    taxonomy: Taxonomy | None = None,
    run: str | None = None,
    tokens_per_step: TokensPerStep = None,
    report: ImportReport | None = None,
    source: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (store format) and checkpoint metadata of one parsed lm-eval results document.

    Raises :class:`ImportFormatError` naming ``path`` and the key for malformed input (wrong
    types, shots that are not whole non-negative numbers, numbers beyond 2^63); records skipped
    metrics (non-numeric, NaN, group aggregates), "other" tasks and assumed tokens in ``report``.
    """
    tax = taxonomy or load_taxonomy()
    report = report if report is not None else ImportReport()
    source = source or str(path.absolute())
    if not isinstance(data, dict):
        raise ImportFormatError(
            f"{path}: top level must be a JSON object, not {type(data).__name__}"
        )
    if "results" not in data:
        raise ImportFormatError(f"{path}: missing key 'results' (not an lm-eval results file?)")
    results = data["results"]
    if not isinstance(results, dict):
        raise ImportFormatError(f"{path}: 'results' must map task names to metric mappings")
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise ImportFormatError(f"{path}: 'config' must be a mapping")
    margs = parse_model_args(config.get("model_args"), path)

    # -- which model, which step ------------------------------------------------------------
    model = margs.get("pretrained") or data.get("model_name") or config.get("pretrained")
    if model is not None and not isinstance(model, str):
        raise ImportFormatError(f"{path}: the model name must be text, not {model!r:.60}")
    if not model and not run:
        raise ImportFormatError(
            f"{path}: cannot tell the model: config.model_args has no 'pretrained=' and there is "
            "no 'model_name'; pass run=... (CLI: --run)"
        )
    run_name = run or str(model).rstrip("/").split("/")[-1]
    revision = margs.get("revision") or config.get("model_revision") or data.get("model_revision")
    step = parse_step(revision if isinstance(revision, str) else None)
    step_source = "revision"
    if step is None:
        step = parse_step(path.stem)
        step_source = "file name"
        if step is not None:
            report.skip(
                path,
                "step",
                f"no revision=stepN in config.model_args; step {step} taken from the file name",
            )
    step = checked_int(step, f"{path}: step (from the {step_source})")
    tps, warning = tokens_per_step_for(
        run_name, tokens_per_step, family_name=str(model or run_name)
    )
    tokens = None
    if step is not None and tps:
        if warning:
            report.warn(warning)
        tokens = checked_int(step * tps, f"{path}: tokens = step {step} x {tps} tokens/step")
    # 0.4.x records the real parameter count (config.model_num_parameters); else the size name
    n_params = checked_int(
        config.get("model_num_parameters"), f"{path}: config.model_num_parameters"
    )
    params = n_params if n_params else parse_size(str(model or run_name))
    ckpt = checkpoint_name(run_name, step)
    layout = (
        "0.4"
        if (
            "n-shot" in data
            or "configs" in data
            or any(isinstance(v, dict) and any("," in str(k) for k in v) for v in results.values())
        )
        else "old"
    )

    n_shot = _mapping(data, "n-shot", path)
    n_samples = _mapping(data, "n-samples", path)
    versions = _mapping(data, "versions", path)
    group_subtasks = _mapping(data, "group_subtasks", path)
    default_shots = checked_int(config.get("num_fewshot"), f"{path}: config.num_fewshot") or 0

    rows: list[dict[str, Any]] = []
    for task, metrics in results.items():
        if not isinstance(metrics, dict):
            raise ImportFormatError(f"{path}: results.{task} must be a mapping of metric → value")
        subs = group_subtasks.get(task) or []
        if not isinstance(subs, list):
            raise ImportFormatError(f"{path}: group_subtasks.{task} must be a list of task names")
        if subs and any(isinstance(s, str) and s in results for s in subs):
            # 0.4.x repeats group aggregates (e.g. "mmlu") next to their subtasks; the taxonomy
            # recomputes the group from the subtasks, so storing both would double count.
            report.skip(path, f"{task}", "group aggregate (its subtasks are imported)")
            continue
        info = tax.lookup(task)
        shots = (
            checked_int(n_shot[task], f"{path}: n-shot.{task}")
            if n_shot.get(task) is not None
            else default_shots
        )
        n = None
        ns = n_samples.get(task)
        if isinstance(ns, dict):
            n = checked_int(ns.get("effective", ns.get("original")), f"{path}: n-samples.{task}")
        elif ns is not None:
            raise ImportFormatError(
                f"{path}: n-samples.{task} must be a mapping {{original, effective}}, not {ns!r:.60}"
            )
        version = versions.get(task)
        for key, raw in metrics.items():
            name, filt = _split_metric(str(key))
            if name in _META_KEYS or name.endswith("_stderr"):
                continue
            value = as_number(raw)
            if value is None:
                why = "NaN/inf score" if isinstance(raw, float) else "non-numeric metric"
                report.skip(path, f"{task}/{key}", why)
                continue
            se_key = f"{name}_stderr,{filt}" if filt else f"{name}_stderr"
            stderr = as_number(metrics.get(se_key))
            metric = name if filt in ("", "none") else f"{name},{filt}"
            loss = tax.is_loss_series(task, metric)
            category = "language_modeling" if loss and not info.known else info.category
            if category == "other":
                report.note_other(task, info.known)
            rows.append(
                {
                    "run": run_name,
                    "checkpoint": ckpt,
                    "step": step,
                    "tokens": tokens,
                    "params": params,
                    "probe": PROBE,
                    "task": task,
                    "capability": category,
                    "metric": metric,
                    "value": value,
                    "stderr": stderr,
                    "n": n,
                    "shots": shots,
                    "spec_hash": spec_hash(
                        {"importer": PROBE, "version": version, "limit": config.get("limit")}
                    ),
                    "provenance": json.dumps(
                        {
                            "source": source,
                            "importer": PROBE,
                            "layout": layout,
                            "model": model,
                            "model_args": margs,
                            "step_from": step_source,
                            "tokens_per_step": tps,
                            "tokens_assumed": bool(warning) and tokens is not None,
                            "task_version": version,
                        },
                        sort_keys=True,
                        default=str,
                    ),
                }
            )
    meta = {
        "checkpoint": ckpt,
        "run": run_name,
        "step": step,
        "tokens": tokens,
        "params": params,
        "config": {
            "model": model,
            "lm_eval_model": config.get("model"),
            "imports": [{"source": source, "importer": PROBE, "model_args": margs}],
        },
    }
    return rows, meta
