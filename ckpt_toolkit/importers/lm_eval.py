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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..analysis.taxonomy import Taxonomy, load_taxonomy
from ..errors import ImportFormatError
from ..specs import spec_hash
from ..store import ResultsStore
from .common import (
    ImportReport,
    as_number,
    checkpoint_name,
    family_tokens_per_step,
    parse_size,
    parse_step,
)

PROBE = "lm-eval"
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


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise ImportFormatError(f"cannot read {path}: {exc}") from None


def _split_metric(key: str) -> tuple[str, str]:
    """``"acc,none"`` → ("acc", "none"); ``"acc"`` → ("acc", "")."""
    name, _, filt = key.partition(",")
    return name, filt


def parse_lm_eval(
    data: Any,
    path: Path,
    *,
    taxonomy: Taxonomy | None = None,
    run: str | None = None,
    tokens_per_step: int | None = None,
    report: ImportReport | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (store format) and checkpoint metadata of one parsed lm-eval results document.

    Raises :class:`ImportFormatError` naming ``path`` and the key for malformed input; records
    skipped metrics (non-numeric, NaN, group aggregates) in ``report``.
    """
    tax = taxonomy or load_taxonomy()
    report = report if report is not None else ImportReport()
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
    if not model and not run:
        raise ImportFormatError(
            f"{path}: cannot tell the model: config.model_args has no 'pretrained=' and there is "
            "no 'model_name'; pass run=... (CLI: --run)"
        )
    run_name = run or str(model).rstrip("/").split("/")[-1]
    revision = margs.get("revision") or config.get("model_revision") or data.get("model_revision")
    step = parse_step(revision)
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
    tps = tokens_per_step or family_tokens_per_step(str(model or run_name))
    tokens = step * tps if (step is not None and tps) else None
    # 0.4.x records the real parameter count (config.model_num_parameters); else the size name
    n_params = as_number(config.get("model_num_parameters"))
    params = int(n_params) if n_params and n_params > 0 else parse_size(str(model or run_name))
    ckpt = checkpoint_name(run_name, step)
    layout = (
        "0.4"
        if (
            "n-shot" in data
            or "configs" in data
            or any(isinstance(v, dict) and any("," in k for k in v) for v in results.values())
        )
        else "old"
    )

    n_shot = data.get("n-shot") or {}
    n_samples = data.get("n-samples") or {}
    versions = data.get("versions") or {}
    group_subtasks = data.get("group_subtasks") or {}

    def shots_of(task: str) -> int:
        raw = n_shot.get(task, config.get("num_fewshot", 0))
        try:
            return int(raw or 0)
        except (TypeError, ValueError):
            raise ImportFormatError(
                f"{path}: n-shot of task {task!r} is {raw!r}, not an integer"
            ) from None

    rows: list[dict[str, Any]] = []
    for task, metrics in results.items():
        if not isinstance(metrics, dict):
            raise ImportFormatError(f"{path}: results.{task} must be a mapping of metric → value")
        subs = group_subtasks.get(task) or []
        if subs and any(s in results for s in subs):
            # 0.4.x repeats group aggregates (e.g. "mmlu") next to their subtasks; the taxonomy
            # recomputes the group from the subtasks, so storing both would double count.
            report.skip(path, f"{task}", "group aggregate (its subtasks are imported)")
            continue
        info = tax.lookup(task)
        shots = shots_of(task)
        n = None
        ns = n_samples.get(task)
        if isinstance(ns, dict):
            n = as_number(ns.get("effective", ns.get("original")))
        for key, raw in metrics.items():
            name, filt = _split_metric(key)
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
            rows.append(
                {
                    "run": run_name,
                    "checkpoint": ckpt,
                    "step": step,
                    "tokens": tokens,
                    "params": params,
                    "probe": PROBE,
                    "task": task,
                    "capability": info.category,
                    "metric": metric,
                    "value": value,
                    "stderr": stderr,
                    "n": None if n is None else int(n),
                    "shots": shots,
                    "spec_hash": spec_hash(
                        {
                            "importer": PROBE,
                            "version": versions.get(task),
                            "limit": config.get("limit"),
                        }
                    ),
                    "provenance": {
                        "source": str(path.resolve()),
                        "importer": PROBE,
                        "layout": layout,
                        "model": model,
                        "model_args": margs,
                        "step_from": step_source,
                        "tokens_per_step": tps,
                        "task_version": versions.get(task),
                    },
                }
            )
    meta = {
        "checkpoint": ckpt,
        "run": run_name,
        "step": step,
        "tokens": tokens,
        "params": params,
        "path": None,
        "config": {
            "source": str(path.resolve()),
            "model": model,
            "model_args": margs,
            "lm_eval_model": config.get("model"),
        },
    }
    return rows, meta


def find_result_files(path: str | Path) -> list[Path]:
    """``path`` itself if a file, else every ``*.json`` below it (recursive, sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(q for q in p.rglob("*.json") if q.is_file())
    raise ImportFormatError(f"lm-eval results not found: {p}")


def import_lm_eval(
    path: str | Path | Iterable[str | Path],
    store: ResultsStore | str | Path,
    *,
    taxonomy: Taxonomy | None = None,
    run: str | None = None,
    tokens_per_step: int | None = None,
    progress: bool = True,
) -> ImportReport:
    """Import an lm-eval results file, or every ``*.json`` under a folder, into ``store``.

    All rows land in one transaction (re-importing replaces them: no duplicates). In a folder,
    JSON files without a ``results`` key are skipped (and reported); a single file must be one.
    """
    tax = taxonomy or load_taxonomy()
    st = store if isinstance(store, ResultsStore) else ResultsStore(store)
    if isinstance(path, (str, Path)):
        files, single = find_result_files(path), Path(path).is_file()
    else:
        files, single = [Path(p) for p in path], False
    report = ImportReport()
    by_key: dict[tuple, dict[str, Any]] = {}
    metas: dict[str, dict[str, Any]] = {}
    for f in tqdm(files, desc="import lm-eval", unit="file", disable=not progress):
        data = _load_json(f)
        if not single and isinstance(data, dict) and "results" not in data:
            report.skip(f, f.name, "no 'results' key (not an lm-eval results file)")
            continue
        rows, meta = parse_lm_eval(
            data, f, taxonomy=tax, run=run, tokens_per_step=tokens_per_step, report=report
        )
        report.files.append(str(f))
        for r in rows:
            k = (r["checkpoint"], r["task"], r["metric"], r["shots"], r["spec_hash"])
            if k in by_key:
                prev = by_key[k]["provenance"]["source"]
                report.skip(f, f"{r['task']}/{r['metric']}", f"duplicate of {prev} (later wins)")
            by_key[k] = r
        metas[meta["checkpoint"]] = meta
        if meta["checkpoint"] not in report.checkpoints:
            report.checkpoints.append(meta["checkpoint"])
        if meta["run"] not in report.runs:
            report.runs.append(meta["run"])
    if not files:
        raise ImportFormatError(f"no *.json files found under {path}")
    report.rows_written = st.upsert(list(by_key.values()), checkpoints=metas.values())
    return report
