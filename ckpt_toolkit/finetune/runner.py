"""The SFT sweep: fine-tune every selected checkpoint on every SFT task, score, store.

An SFT task is, by default, a capability category whose *datasets* are the task files of that
capability (the paper's task score is the mean over its datasets, arXiv 2504.12491 §3.1); with
``group_by="task"`` each task file is an SFT task and its ``dataset`` field splits it.

Each (checkpoint, SFT task) is one :class:`~ckpt_toolkit.executors.WorkUnit` running the top-level
:func:`finetune_unit` (picklable for Ray); the driver writes its rows in one transaction. A unit
whose (checkpoint fingerprint, spec_hash) is already stored is skipped, so a killed sweep resumes.
``spec_hash`` = hash of (effective spec, task name, its datasets' content hashes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import ParameterError
from ..executors import SweepReport, WorkUnit
from ..probes.registry import SFT
from ..specs import spec_hash
from ..store import ResultsStore
from ..sweep import plan_executor, run_sweep, store_writer
from ..tasks import TaskItem
from ..threads import useful_threads
from .spec import load_spec, sft_spec_hash

GROUP_BY = ("capability", "task")


@dataclass
class SftTask:
    """One fine-tuning task: its datasets (name -> items of every split) and capability."""

    name: str
    capability: str
    datasets: dict[str, list[TaskItem]]
    origin: str = ""

    def data_hash(self) -> str:
        return spec_hash(
            {d: [it.to_json() for it in items] for d, items in sorted(self.datasets.items())}
        )


@dataclass
class FinetuneReport(SweepReport):
    """A :class:`SweepReport` plus units skipped as already stored and rows written."""

    skipped: list[str] = field(default_factory=list)
    rows_written: int = 0


def build_sft_tasks(
    tasks: dict[str, list[TaskItem]], group_by: str = "capability", origin: str = ""
) -> dict[str, SftTask]:
    """Group task items into SFT tasks (see the module docstring)."""
    if group_by not in GROUP_BY:
        raise ParameterError(f"group_by must be one of {GROUP_BY}, not {group_by!r}")
    out: dict[str, SftTask] = {}
    for task, items in sorted(tasks.items()):
        for it in items:
            name = it.capability if group_by == "capability" else task
            dataset = task if group_by == "capability" else it.dataset
            sft = out.setdefault(name, SftTask(name, it.capability, {}, origin))
            sft.datasets.setdefault(dataset, []).append(it)
    return out


def _split_items(items: list[TaskItem], split: str, limit: int | None) -> list[TaskItem]:
    chosen = [it for it in items if it.split == split]
    return chosen[:limit] if limit else chosen


def finetune_unit(
    ref: Any,
    task: SftTask,
    spec: dict[str, Any],
    fp: str,
    unit_hash: str,
    device: str = "cpu",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> list[dict[str, Any]]:
    """Load ``ref``, fine-tune it on ``task``'s train splits, score each dataset's test split
    and return store rows (the work-unit function; top level, so it pickles for Ray)."""
    from ..checkpoints import load_checkpoint, unload
    from .train import finetune_and_score

    t0 = time.perf_counter()
    train: list[TaskItem] = []
    tests: dict[str, list[TaskItem]] = {}
    for d, items in sorted(task.datasets.items()):
        train += _split_items(items, "train", spec["max_train_items"])
        test = _split_items(items, "test", spec["max_test_items"]) or _split_items(
            items, "validation", spec["max_test_items"]
        )
        if test:
            tests[d] = test
    if not train:
        raise ParameterError(f"SFT task {task.name!r} has no 'train' items ({task.origin})")
    if not tests:
        raise ParameterError(f"SFT task {task.name!r} has no 'test'/'validation' items")
    loaded = load_checkpoint(
        ref,
        dtype=spec["dtype"],
        device=device,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    )
    model, tok = loaded.model, loaded.tokenizer
    del loaded
    try:
        # repeated over spec["seeds"] seeds; per dataset (accuracy, stderr, n)
        stats, per = finetune_and_score(model, tok, train, tests, spec)
    finally:
        unload(model)
    seconds = round(time.perf_counter() - t0, 3)
    base = {
        **ref.store_fields(),
        "probe": SFT,
        "capability": task.capability,
        "shots": 0,
        "spec_hash": unit_hash,
        "fingerprint": fp,
        "toolkit_version": __version__,
    }
    prov = {
        "spec": spec,
        "sft_spec_hash": sft_spec_hash(spec),
        "task": task.name,
        "datasets": sorted(tests),
        "data_hash": task.data_hash(),
        "source": task.origin,
        "checkpoint_path": ref.path,
        "revision": ref.revision,
        "device": device,
        "seconds": seconds,
        "scorer": "ckpt_toolkit.probes.engine (mc: log-likelihood argmax; gen: exact match)",
        **stats,
    }
    rows = []
    accs = [a for a, _, _ in per.values()]
    ses = [s for _, s, _ in per.values()]
    score = sum(accs) / len(accs)
    # stderr of a mean of independent dataset accuracies: sqrt(Σ se_d²) / D
    score_se = (
        math.sqrt(sum(s * s for s in ses)) / len(ses) if all(s is not None for s in ses) else None
    )
    rows.append(
        {
            **base,
            "task": task.name,
            "metric": "score",
            "value": score,
            "stderr": score_se,
            "n": sum(n for _, _, n in per.values()),
            "provenance": prov,
        }
    )
    rows.append(
        {
            **base,
            "task": task.name,
            "metric": "train_loss",
            "value": stats["final_loss"],
            "n": stats["steps"],
            "provenance": prov,
        }
    )
    for d, (acc, se, n) in per.items():
        rows.append(
            {
                **base,
                "task": f"{task.name}/{d}",
                "metric": "acc",
                "value": acc,
                "stderr": se,
                "n": n,
                "provenance": prov,
            }
        )
    return rows


def select_checkpoints(refs: list[Any], checkpoints: str = "final") -> list[Any]:
    """``final`` (the last checkpoint of each run), ``all``, or ``last:N`` (last N per run)."""
    if checkpoints == "all":
        return list(refs)
    if checkpoints == "final":
        n = 1
    elif checkpoints.startswith("last:"):
        try:
            n = int(checkpoints.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ParameterError(
                f"checkpoints {checkpoints!r}: N in last:N must be a positive integer"
            )
    else:
        raise ParameterError(f"checkpoints must be 'final', 'all' or 'last:N', not {checkpoints!r}")
    by_run: dict[str, list[Any]] = {}
    for r in refs:
        by_run.setdefault(r.run, []).append(r)
    out = []
    for run_refs in by_run.values():
        run_refs = sorted(
            run_refs, key=lambda r: (r.step if r.step is not None else math.inf, r.tokens or 0)
        )
        out += run_refs[-n:]
    return out


def _task_source(ref: Any, tasks: Any) -> Any:
    if tasks is not None:
        return tasks
    if ref.world and (Path(ref.world) / "tasks").is_dir():
        return Path(ref.world) / "tasks"
    raise ParameterError(
        f"no tasks for {ref.name}: give tasks= (--tasks PATH); only zoo sources ship their own"
    )


def run_finetune(
    source: Any,
    store: str | Path | ResultsStore,
    tasks: Any = None,
    spec: str | Path | dict[str, Any] | None = None,
    checkpoints: str = "final",
    executor: str = "local",
    executor_options: dict[str, Any] | None = None,
    progress: bool = True,
    *,
    only: Sequence[str] | None = None,
    group_by: str = "capability",
    device: str = "cpu",
    threads: int | str | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> FinetuneReport:
    """Fine-tune the selected checkpoints of ``source`` on every SFT task and store the scores.

    Args:
        source: anything :func:`ckpt_toolkit.checkpoints.resolve_source` takes, or a list of
            :class:`~ckpt_toolkit.checkpoints.CheckpointRef`.
        store: the results store (path or :class:`ResultsStore`).
        tasks: task JSONL file(s)/folder(s); default: a zoo source's ``world/tasks``.
        spec: a YAML file or dict overriding ``default_spec.yaml``.
        checkpoints: ``final`` | ``all`` | ``last:N`` (per run).
        executor / executor_options: ``local`` or ``ray`` and its options.
        only: restrict to these SFT task names.
        group_by: ``capability`` (default) or ``task`` (see :func:`build_sft_tasks`).
        device: ``cpu`` or ``cuda``.
        threads: torch threads per unit (``None``/``"auto"``: chosen from the free cores,
            docs/threads.md). Executor options are validated before any checkpoint loads.
        allow_pickle / trust_remote_code: passed to
            :func:`~ckpt_toolkit.checkpoints.load_checkpoint` (both off: safe by default).

    Rows: probe ``sft``; task ``<task>`` metric ``score`` (mean accuracy over its datasets) and
    ``train_loss``; task ``<task>/<dataset>`` metric ``acc``.
    """
    from ..checkpoints import fingerprint, resolve_source
    from ..probes.data import load_probe_tasks

    eff = load_spec(spec)
    runner = plan_executor(
        executor, executor_options, threads=threads, progress=progress, desc="finetune"
    )
    if not isinstance(store, ResultsStore):
        store = ResultsStore(store)
    refs = resolve_source(source)  # a list of CheckpointRef passes through unchanged
    refs = select_checkpoints(refs, checkpoints)
    if not refs:
        raise ParameterError(f"no checkpoints selected from {source} ({checkpoints})")
    done = store.done()
    cache: dict[str, dict[str, SftTask]] = {}
    units: list[WorkUnit] = []
    meta: dict[str, dict[str, Any]] = {}
    report = FinetuneReport()
    for ref in refs:
        src = _task_source(ref, tasks)
        key = str(src)
        if key not in cache:
            cache[key] = build_sft_tasks(load_probe_tasks(src), group_by, origin=key)
            if only:
                missing = sorted(set(only) - set(cache[key]))
                if missing:
                    raise ParameterError(
                        f"SFT task(s) {missing} not in {key}; available: {sorted(cache[key])}"
                    )
        sft_tasks = {n: t for n, t in cache[key].items() if not only or n in only}
        fp = fingerprint(ref)
        for name, task in sorted(sft_tasks.items()):
            unit_hash = spec_hash(
                {"sft_spec": eff, "task": name, "data": task.data_hash(), "group_by": group_by}
            )
            ukey = f"{ref.name}:{name}"
            if (fp, unit_hash) in done:
                report.skipped.append(ukey)
                continue
            meta[ukey] = {
                **ref.store_fields(),
                "fingerprint": fp,
                "path": ref.path,
                "config": ref.config,
            }
            units.append(
                WorkUnit(
                    key=ukey,
                    fn=finetune_unit,
                    args=(ref, task, eff, fp, unit_hash),
                    kwargs={
                        "device": device,
                        "allow_pickle": allow_pickle,
                        "trust_remote_code": trust_remote_code,
                    },
                    resources={"num_cpus": 1},
                    device=device,  # the GPU rule: executors.gpus_for_device
                    max_threads=useful_threads(ref.params),
                )
            )
    run_sweep(runner, units, store_writer(store, meta), report)
    return report
