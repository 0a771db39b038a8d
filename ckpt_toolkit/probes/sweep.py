"""The probe sweep: every checkpoint of a source, every probe, rows into the results store.

Each checkpoint is one :class:`~ckpt_toolkit.executors.WorkUnit`: the worker loads it once, runs
every pending probe spec and returns rows; the driver writes all of that checkpoint's rows (and its
metadata) in one upsert transaction. A ``(fingerprint, spec_hash)`` pair already in the store is
never recomputed, and a killed sweep loses at most the checkpoint in flight.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..checkpoints import CheckpointRef, fingerprint, load_checkpoint, resolve_source, unload
from ..errors import ParameterError
from ..executors import SweepReport, WorkUnit
from ..store import ResultsStore
from ..sweep import plan_executor, run_sweep, store_writer
from ..tasks import TaskItem
from ..threads import useful_threads
from .data import content_hash, items_hash, load_heldout, load_probe_tasks
from .item_log import item_log_dir, item_log_path, takes_item_log, write_item_log
from .registry import (
    PROBE_ORDER,
    all_probes,
    get_probe,
    validate_probe_params,
    validate_sweep_options,
)
from .specs import ProbeSpec


@dataclass
class ProbeSweepReport(SweepReport):
    """A :class:`SweepReport` plus what was skipped as already measured and rows written."""

    skipped: list[str] = field(default_factory=list)
    rows_written: int = 0


@dataclass
class ProbeData:
    """The inputs of a sweep for one checkpoint (picklable: shipped to remote workers)."""

    tasks: dict[str, list[TaskItem]] = field(default_factory=dict)
    heldout: dict[str, list[str]] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # task/domain -> file or folder


def _parse_probes(probes: Sequence[str] | str) -> list[str]:
    if isinstance(probes, str):
        probes = [p.strip() for p in probes.split(",") if p.strip()]
    known = all_probes()
    bad = [p for p in probes if p not in known]
    if bad or not probes:
        raise ParameterError(
            f"--probes: unknown probe(s) {bad or probes}; choose from {', '.join(known)}"
        )
    return list(dict.fromkeys(probes))


def _parse_shots(shots: Sequence[int] | int | str) -> list[int]:
    if isinstance(shots, int):
        shots = [shots]
    if isinstance(shots, str):
        shots = [s for s in shots.split(",") if s.strip()]
    try:
        out = [int(s) for s in shots]
    except (TypeError, ValueError):
        raise ParameterError(f"--shots must be integers, got {shots!r}") from None
    if not out or any(k < 0 for k in out):
        raise ParameterError(f"--shots must be non-negative integers, got {shots!r}")
    return list(dict.fromkeys(out))


def build_specs(
    probes: Sequence[str],
    data: ProbeData,
    shots: Sequence[int],
    limit: int | None,
    dtype: str,
    params: dict[str, dict[str, Any]] | None = None,
) -> list[ProbeSpec]:
    """The probe specs for a checkpoint given its data (one per probe × domain/task × shots).

    A (task, k) that cannot run — fewer than k train items, or nothing to evaluate — is left out
    with a warning naming it, so one small task does not fail every checkpoint of a sweep.
    """
    params = params or {}
    specs: list[ProbeSpec] = []
    skipped: list[str] = []
    for probe in probes:
        p = get_probe(probe).validate(params.get(probe))
        if get_probe(probe).needs == "heldout":
            for domain, texts in sorted(data.heldout.items()):
                specs.append(
                    ProbeSpec(probe, domain, 0, content_hash(texts), limit, dtype, dict(p))
                )
        else:
            for task, items in sorted(data.tasks.items()):
                n_train = sum(it.split == "train" for it in items)
                n_eval = sum(it.split in ("test", "validation") for it in items)
                for k in shots:
                    if not n_eval:
                        skipped.append(f"{probe} {task} skipped: no test or validation items")
                        continue
                    if n_train < k:
                        skipped.append(
                            f"{probe} {task} at {k} shots skipped: only {n_train} train items"
                        )
                        continue
                    specs.append(
                        ProbeSpec(probe, task, k, items_hash(items), limit, dtype, dict(p))
                    )
    for msg in skipped:
        warnings.warn(msg, stacklevel=3)
    return specs


def probe_checkpoint(
    ref: CheckpointRef,
    specs: list[ProbeSpec],
    data: ProbeData,
    fp: str,
    batch_size: int = 64,
    dtype: str = "float32",
    device: str = "cpu",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    log_items: str | None = None,
) -> list[dict[str, Any]]:
    """Load ``ref`` once, run every spec, return store rows (the Ray/local work-unit function).

    ``log_items``: a folder for per-item records (:mod:`ckpt_toolkit.probes.item_log`)."""
    loaded = load_checkpoint(
        ref,
        dtype=dtype,
        device=device,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    )
    model, tok = loaded.model, loaded.tokenizer
    del loaded
    rows: list[dict[str, Any]] = []
    try:
        for spec in specs:
            t0 = time.perf_counter()
            probe = get_probe(spec.probe)
            inputs = (data.heldout if probe.needs == "heldout" else data.tasks)[spec.task]
            logged: list[dict[str, Any]] | None = [] if log_items else None
            if logged is not None and takes_item_log(probe.run):
                part = probe.run(model, tok, spec, inputs, batch_size, item_log=logged)
            else:
                part = probe.run(model, tok, spec, inputs, batch_size)
            capability = probe.capability_of(inputs)
            seconds = time.perf_counter() - t0
            if log_items and logged:
                head = {"run": ref.run, "checkpoint": ref.name, "step": ref.step}
                head |= {"tokens": ref.tokens, "fingerprint": fp, "probe": spec.probe}
                head |= {"task": spec.task, "shots": spec.shots, "spec_hash": spec.hash}
                write_item_log(
                    item_log_path(log_items, ref.name, spec), [{**head, **r} for r in logged]
                )
            for r in part:
                prov = {
                    **r.pop("provenance", {}),
                    "spec": spec.to_dict(),
                    "source": data.origin.get(spec.task),
                    "checkpoint_path": ref.path,
                    "revision": ref.revision,
                    "device": device,
                    "seconds": round(seconds, 3),
                }
                rows.append(
                    {
                        **ref.store_fields(),
                        "probe": spec.probe,
                        "task": spec.task,
                        "capability": capability,
                        "shots": spec.shots,
                        "spec_hash": spec.hash,
                        "fingerprint": fp,
                        "toolkit_version": __version__,
                        **r,
                        "provenance": prov,
                    }
                )
    finally:
        unload(model)
    return rows


def _load_data(
    ref: CheckpointRef,
    tasks: Any,
    heldout: Any,
    need_tasks: bool,
    need_heldout: bool,
    cache: dict[Any, ProbeData],
) -> ProbeData:
    world = Path(ref.world) if ref.world else None
    t_src = tasks if tasks is not None else (world / "tasks" if world and need_tasks else None)
    h_src = (
        heldout if heldout is not None else (world / "heldout" if world and need_heldout else None)
    )
    key = (str(t_src) if need_tasks else None, str(h_src) if need_heldout else None)
    if key not in cache:
        data = ProbeData()
        if need_tasks and t_src is not None:
            data.tasks = load_probe_tasks(t_src, data.origin)
        if need_heldout and h_src is not None:
            data.heldout = load_heldout(h_src)
            data.origin.update({d: str(h_src) for d in data.heldout if d not in data.origin})
        cache[key] = data
    return cache[key]


def run_probes(
    source: Any,
    store: str | Path | ResultsStore,
    probes: Sequence[str] | str = PROBE_ORDER,
    tasks: Any = None,
    heldout: Any = None,
    shots: Sequence[int] | int | str = (0,),
    batch_size: int = 64,
    limit: int | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    executor: str = "local",
    executor_options: dict[str, Any] | None = None,
    progress: bool = True,
    probe_params: dict[str, dict[str, Any]] | None = None,
    threads: int | str | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    log_items: bool = False,
) -> ProbeSweepReport:
    """Probe every checkpoint of ``source`` and write the rows to ``store``.

    ``source``: anything :func:`ckpt_toolkit.checkpoints.resolve_source` takes, or a list of
    :class:`CheckpointRef`. ``tasks``: task JSONL file(s)/folder(s); ``heldout``: held-out text
    file(s)/folder(s) (``<domain>.jsonl`` with ``{"text": ...}`` lines, or ``.txt``). For a zoo
    source both default to its world's ``tasks/`` and ``heldout/`` folders. ``probe_params``
    overrides probe parameters (e.g. ``{"ppl": {"window": 64, "stride": 32}}``).
    ``threads``: torch threads per checkpoint (``None``/``"auto"``: chosen from the free cores,
    docs/threads.md); ``executor`` / ``executor_options``: see :mod:`ckpt_toolkit.executors`
    (validated before any checkpoint is loaded).
    ``allow_pickle`` / ``trust_remote_code`` go to
    :func:`~ckpt_toolkit.checkpoints.load_checkpoint` (both off: safe by default).
    Probes lacking data (no held-out text for ppl, no tasks for kshot) are skipped with a warning.
    ``log_items``: also write per-item scores as Parquet beside the store
    (:mod:`ckpt_toolkit.probes.item_log`).
    """
    # every option is checked here, before a store is opened or a checkpoint loaded
    probes = _parse_probes(probes)
    shot_list = _parse_shots(shots)
    validate_sweep_options(dtype=dtype, device=device, batch_size=batch_size, limit=limit)
    validate_probe_params(probes, probe_params)
    runner = plan_executor(
        executor, executor_options, threads=threads, progress=progress, desc="probe"
    )
    if not isinstance(store, ResultsStore):
        store = ResultsStore(store)
    refs = resolve_source(source)  # a list of CheckpointRef passes through unchanged
    needs = {get_probe(p).needs for p in probes}
    need_tasks, need_heldout = "tasks" in needs, "heldout" in needs
    done = store.done()
    cache: dict[Any, ProbeData] = {}
    units: list[WorkUnit] = []
    meta: dict[str, dict[str, Any]] = {}
    report = ProbeSweepReport()
    warned: set[str] = set()
    for ref in refs:
        data = _load_data(ref, tasks, heldout, need_tasks, need_heldout, cache)
        for probe in probes:
            tasks_probe = get_probe(probe).needs == "tasks"
            ok = data.tasks if tasks_probe else data.heldout
            if not ok and probe not in warned:
                warned.add(probe)
                what = "tasks (--tasks)" if tasks_probe else "held-out text (--heldout)"
                warnings.warn(f"probe {probe} skipped for {ref.name}: no {what}", stacklevel=2)
        specs = build_specs(probes, data, shot_list, limit, dtype, probe_params)
        if not specs:
            continue
        fp = fingerprint(ref)
        pending = [s for s in specs if (fp, s.hash) not in done]
        report.skipped.extend(f"{ref.name}:{s.key}" for s in specs if s not in pending)
        if not pending:
            continue
        meta[ref.name] = {
            **ref.store_fields(),
            "fingerprint": fp,
            "path": ref.path,
            "config": ref.config,
        }
        units.append(
            WorkUnit(
                key=ref.name,
                fn=probe_checkpoint,
                args=(ref, pending, data, fp),
                kwargs={
                    "batch_size": batch_size,
                    "dtype": dtype,
                    "device": device,
                    "allow_pickle": allow_pickle,
                    "trust_remote_code": trust_remote_code,
                    "log_items": str(item_log_dir(store.path)) if log_items else None,
                },
                resources={"num_cpus": 1},
                device=device,  # the GPU rule: executors.gpus_for_device
                max_threads=useful_threads(ref.params),
            )
        )
    if not units and not report.skipped:
        raise ParameterError(
            "nothing to probe: give --tasks for kshot and/or --heldout for ppl/sc_ppl "
            "(a zoo source provides both)"
        )
    run_sweep(runner, units, store_writer(store, meta), report)
    return report
