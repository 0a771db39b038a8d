"""The one plan → run → write loop of every sweep: the zoo, the probes and fine-tuning.

1. **plan**: :func:`plan_executor` builds the executor first — which validates every executor
   option (``--timeout -1``, ``--executor dask``, ...) before anything is loaded — then the
   sweep builds its :class:`~ckpt_toolkit.executors.WorkUnit` list (skipping what is stored);
2. **run**: the executor runs the units (in this process, in worker processes or on Ray);
3. **write**: as each unit completes, :func:`run_sweep` hands its rows to the sweep's ``write``
   callback in the driver (:func:`store_writer` for store-backed sweeps), so a killed sweep loses
   at most the units in flight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .errors import ParameterError
from .executors import (
    RAY_EXTRAS,
    Executor,
    ExecutorOptions,
    LocalExecutor,
    SweepReport,
    WorkUnit,
    split_options,
    validate_executor,
)

R = TypeVar("R", bound=SweepReport)

#: ``write(unit, rows)`` stores a finished unit's rows and returns how many it wrote (or None)
Writer = Callable[[WorkUnit, Any], "int | None"]


def get_executor(name: str = "local", **options: Any) -> Executor:
    """Build the ``local`` (default), ``processes`` or ``ray`` executor.

    Options: every :class:`ExecutorOptions` field (``max_retries``, ``timeout``, ``num_cpus``,
    ``num_gpus``, ``memory``, ``address``, ``threads``, ``workers``), ``progress`` and ``desc``;
    for ``ray`` also ``init_kwargs`` and ``check_resources``. ``None`` counts as not given (CLIs
    pass their flags through unchanged); an option an executor cannot honour is an error.
    """
    progress = options.pop("progress", True)
    desc = options.pop("desc", "sweep")
    opts, rest = split_options(options)
    validate_executor(name, opts)
    extras = RAY_EXTRAS if name == "ray" else ()
    unknown = sorted(k for k in rest if k not in extras)
    if unknown:
        known = sorted(ExecutorOptions.names() + ("progress", "desc") + extras)
        raise ParameterError(f"unknown {name} executor option(s) {unknown}; known: {known}")
    if name == "local":
        return LocalExecutor(progress=progress, desc=desc, options=opts)
    if name == "processes":
        from .process_executor import ProcessExecutor

        return ProcessExecutor(progress=progress, desc=desc, options=opts)
    from .ray_executor import RayExecutor

    return RayExecutor(progress=progress, desc=desc, options=opts, **rest)


def plan_executor(
    executor: str | Executor = "local",
    executor_options: Mapping[str, Any] | ExecutorOptions | None = None,
    *,
    threads: int | str | None = None,
    progress: bool = True,
    desc: str = "sweep",
) -> Executor:
    """The sweep's executor, built (and so validated) before any checkpoint is loaded.

    ``threads`` is the API's ``threads=`` argument (``--threads``); it may also come inside
    ``executor_options``, but not twice with different values.
    """
    if isinstance(executor, Executor):
        return executor
    if isinstance(executor_options, ExecutorOptions):
        opts: dict[str, Any] = executor_options.given()
    else:
        opts = {k: v for k, v in dict(executor_options or {}).items() if v is not None}
    if threads is not None and str(threads).strip().lower() != "auto":
        given = opts.get("threads")
        if given is not None and str(given) != str(threads):
            raise ParameterError(
                f"--threads given twice: threads={threads!r} and executor_options threads={given!r}"
            )
        opts["threads"] = threads
    return get_executor(executor, progress=progress, desc=desc, **opts)


def run_sweep(
    executor: Executor,
    units: Sequence[WorkUnit],
    write: Writer,
    report: R | None = None,
) -> R | SweepReport:
    """Run ``units`` on ``executor`` and ``write`` each unit's rows in the driver as it completes.

    Fills ``report`` (default: a new :class:`SweepReport`): ``done``, ``failed`` and
    ``rows_written`` (the sum of what ``write`` returned). Unit keys must be unique
    (:class:`ParameterError` otherwise, before anything runs).
    """
    out: SweepReport = report if report is not None else SweepReport()
    keys = Counter(u.key for u in units)
    repeated = sorted(k for k, n in keys.items() if n > 1)
    if repeated:  # results are matched to their unit, and reported, by key
        raise ParameterError(f"work unit keys must be unique; repeated: {repeated[:5]}")

    def on_result(unit: WorkUnit, rows: Any) -> None:
        n = write(unit, rows)
        if isinstance(n, int):
            out.rows_written += n

    if units:
        result = executor.run(units, on_result)
        out.done, out.failed = result.done, result.failed
    return out


def store_writer(store: Any, meta: Mapping[str, dict[str, Any]]) -> Writer:
    """A ``write`` that upserts a unit's rows with its checkpoint metadata ``meta[unit.key]``
    (fingerprint, path, variant configuration) in one transaction."""

    def write(unit: WorkUnit, rows: list[dict[str, Any]]) -> int:
        return int(store.upsert(rows, checkpoints=[meta[unit.key]]) or 0)

    return write
