"""Executors run a sweep's work units; the sweep code does not know which one runs it.

A :class:`WorkUnit` is one (checkpoint, probe set), (checkpoint, fine-tune task) or zoo variant:
a picklable top-level function and its arguments that returns rows. Workers only return rows;
the driver's ``on_result`` callback writes them, so only the driver touches the store.

Three executors share one set of options (:class:`ExecutorOptions`), each honoured by each:

=============  ==============================  ==================================  ==========================
option         ``local`` (in this process)     ``processes`` (spawned workers)     ``ray`` (Ray tasks)
=============  ==============================  ==================================  ==========================
max_retries    extra attempts per unit         extra attempts per unit             Ray ``max_retries``
timeout        seconds per attempt (SIGALRM)   seconds per attempt (worker killed) seconds per attempt
num_cpus       caps the unit's threads         CPUs per worker (limits workers)    Ray reservation, threads
num_gpus       checked against visible GPUs    GPUs per worker (limits workers)    Ray reservation
memory         checked against RAM             bytes per worker (limits workers)   Ray reservation
address        error: Ray only                 error: Ray only                     cluster to join
threads        torch threads per unit          torch threads per worker            torch threads per task
workers        error: processes only           worker processes                    error: processes only
=============  ==============================  ==================================  ==========================

The one GPU rule is :func:`gpus_for_device`. Options are validated when the executor is built,
which every sweep does before it loads a checkpoint.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from tqdm.auto import tqdm

from .errors import CkptError, ParameterError
from .threads import LoadMonitor, apply_threads, current_threads, parse_threads, resolve_threads

Rows = list[dict[str, Any]]

#: executor names accepted by :func:`ckpt_toolkit.sweep.get_executor` (and ``--executor``)
EXECUTORS = ("local", "processes", "ray")


class UnitTimeoutError(CkptError):
    """A work unit ran longer than ``--timeout`` seconds."""


@dataclass
class WorkUnit:
    """One task of a sweep. ``key`` names it in progress bars and failure reports.

    ``device`` is where the unit computes (``cpu``, ``cuda``, ``cuda:1``, ``auto``, ``mps``); the
    executor turns it into a GPU request with :func:`gpus_for_device`. ``resources`` may propose
    ``num_cpus`` / ``num_gpus`` / ``memory`` explicitly; the user's executor options win.
    ``max_threads``: more torch threads than this do not help the unit (a model too small to
    split, :func:`ckpt_toolkit.threads.useful_threads`); it caps the automatic thread choice,
    never an explicit ``--threads``.
    """

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    max_threads: int | None = None


@dataclass
class SweepReport:
    """What happened: keys that finished, keys that failed (with the last error), keys skipped
    as already done, and rows written by the driver."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    rows_written: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        s = f"{len(self.done)} done, {len(self.failed)} failed"
        for key, err in self.failed.items():
            s += f"\n  FAILED {key}: {err.strip().splitlines()[-1] if err.strip() else err}"
        return s


# -- the GPU rule ------------------------------------------------------------------------------
def gpus_for_device(device: str | None, gpus_available: float | None = None) -> float:
    """How many GPUs a unit computing on ``device`` asks for — the one GPU rule of every sweep.

    ``cuda`` / ``cuda:N``: 1. ``auto`` (a GPU when there is one): 1 when the executor has a GPU
    (``gpus_available`` > 0) or cannot tell (None), else 0 — so the paper preset's
    ``device: auto`` asks Ray for a GPU on a GPU cluster and still runs on a CPU-only one.
    ``cpu``, ``mps`` and anything else: 0.
    """
    dev = (device or "cpu").strip().lower()
    if dev == "cuda" or dev.startswith("cuda:"):
        return 1
    if dev == "auto":
        return 1 if gpus_available is None or gpus_available > 0 else 0
    return 0


def local_gpu_count() -> int:
    """CUDA devices visible to this process (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def total_memory() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def available_memory() -> int | None:
    """Memory available for new work (``MemAvailable`` of /proc/meminfo), else the total."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return total_memory()


# -- options -----------------------------------------------------------------------------------
_MEMORY_UNITS = {
    "": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12, "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20,
    "gi": 2**30, "gib": 2**30, "ti": 2**40, "tib": 2**40,
}  # fmt: skip


def parse_memory(value: int | float | str | None, what: str = "memory") -> int | None:
    """Bytes from ``4000000000``, ``"4GB"``, ``"4 GiB"`` or ``"512MiB"`` (``None`` stays None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ParameterError(f"{what}: expected bytes or a size like '4GiB', got {value!r}")
    if isinstance(value, (int, float)):
        if not value > 0 or math.isinf(value):
            raise ParameterError(f"{what} must be positive, got {value!r}")
        return int(value)
    text = str(value).strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :]
    try:
        amount = float(number)
    except ValueError:
        amount = float("nan")
    if unit not in _MEMORY_UNITS or not amount > 0 or math.isinf(amount):
        raise ParameterError(
            f"{what}: cannot read {value!r} as a size; use bytes or e.g. '4GB', '4GiB', '512MiB'"
        )
    return int(amount * _MEMORY_UNITS[unit])


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _number(name: str, value: Any, *, integer: bool = False, positive: bool = False) -> Any:
    if value is None:
        return None
    kind = "an integer" if integer else "a number"
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if not bad and integer and isinstance(value, float):
        bad = not value.is_integer()
    if not bad:
        bad = math.isnan(value) or math.isinf(value) or value < 0 or (positive and value == 0)
    if bad:
        bound = "> 0" if positive else ">= 0"
        raise ParameterError(f"{_flag(name)} must be {kind} {bound}, got {value!r}")
    return int(value) if integer else value


@dataclass(frozen=True)
class ExecutorOptions:
    """The executor options of every sweep command, validated on construction.

    ``None`` means "not given": each executor then uses its default (``max_retries`` 0 for
    ``local``/``processes`` and 2 for ``ray``; no timeout; ``threads`` chosen by
    :mod:`ckpt_toolkit.threads`). Errors name the command-line flag (``--timeout``, ...).
    """

    max_retries: int | None = None
    timeout: float | None = None
    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | str | None = None
    address: str | None = None
    threads: int | str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "max_retries", _number("max_retries", self.max_retries, integer=True))
        set_(self, "timeout", _number("timeout", self.timeout, positive=True))
        set_(self, "num_cpus", _number("num_cpus", self.num_cpus, positive=True))
        set_(self, "num_gpus", _number("num_gpus", self.num_gpus))
        set_(self, "memory", parse_memory(self.memory, "--memory"))
        set_(self, "workers", _number("workers", self.workers, integer=True, positive=True))
        set_(self, "threads", parse_threads(self.threads))
        if self.address is not None and not str(self.address).strip():
            raise ParameterError("--address must not be empty")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def given(self) -> dict[str, Any]:
        """The options that were given (not None)."""
        return {k: getattr(self, k) for k in self.names() if getattr(self, k) is not None}


#: options each executor rejects because they mean nothing there (an error, never ignored)
NOT_FOR = {
    "local": {"address": "ray", "workers": "processes"},
    "processes": {"address": "ray"},
    "ray": {"workers": "processes"},
}
#: extra keyword arguments of the Ray executor (Python API only)
RAY_EXTRAS = ("init_kwargs", "check_resources")


def validate_executor(
    name: str, options: ExecutorOptions | dict[str, Any] | None = None
) -> ExecutorOptions:
    """Check an executor name and its options without building it; returns the options.

    Sweeps call this first, so ``--timeout -1`` or ``--executor dask`` fail before anything loads.
    """
    if name not in EXECUTORS:
        raise ParameterError(f"--executor: unknown executor {name!r}; choose one of {EXECUTORS}")
    opts = options if isinstance(options, ExecutorOptions) else split_options(options or {})[0]
    wrong = sorted(k for k in NOT_FOR[name] if getattr(opts, k) is not None)
    if wrong:
        flags = ", ".join(_flag(k) for k in wrong)
        where = " / ".join(sorted({NOT_FOR[name][k] for k in wrong}))
        raise ParameterError(f"{flags}: only with --executor {where} (not {name})")
    return opts


def split_options(raw: dict[str, Any]) -> tuple[ExecutorOptions, dict[str, Any]]:
    """Split keyword options into :class:`ExecutorOptions` and the rest (None = not given)."""
    raw = {k: v for k, v in raw.items() if v is not None}
    names = ExecutorOptions.names()
    opts = ExecutorOptions(**{k: v for k, v in raw.items() if k in names})
    return opts, {k: v for k, v in raw.items() if k not in names}


# -- running one unit --------------------------------------------------------------------------
def call_unit(
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict[str, Any],
    timeout: float | None = None,
    key: str = "unit",
) -> Any:
    """Call ``fn`` and raise :class:`UnitTimeoutError` if it runs past ``timeout`` seconds.

    On the main thread a ``SIGALRM`` timer interrupts the unit (between Python bytecodes, so a
    long native call finishes first); elsewhere the unit runs unbounded here and the executor
    enforces the limit (the ``processes`` executor kills the worker, Ray's worker is killed by
    :func:`ckpt_toolkit.ray_executor.execute_unit`'s watchdog).
    """
    if not timeout or threading.current_thread() is not threading.main_thread():
        return fn(*args, **kwargs)
    if not hasattr(signal, "setitimer"):  # pragma: no cover - Windows
        return fn(*args, **kwargs)

    def on_alarm(signum: int, frame: Any) -> None:
        raise UnitTimeoutError(f"{key}: timed out after {timeout:g} s (--timeout)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, float(timeout))
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Executor:
    """The interface: ``run(units, on_result) -> SweepReport``; options in :attr:`options`."""

    name = "executor"
    default_retries = 0

    def __init__(
        self,
        options: ExecutorOptions | None = None,
        progress: bool = True,
        desc: str = "sweep",
    ):
        self.options = validate_executor(self.name, options or ExecutorOptions())
        self.progress = progress
        self.desc = desc
        self._monitor: LoadMonitor | None = None

    @property
    def max_retries(self) -> int:
        r = self.options.max_retries
        return self.default_retries if r is None else r

    @property
    def timeout(self) -> float | None:
        return self.options.timeout

    def gpus_available(self) -> float | None:
        """GPUs this executor can hand out (None: unknown)."""
        return local_gpu_count()

    def request(self, unit: WorkUnit) -> dict[str, Any]:
        """What ``unit`` asks for: the user's options, else the unit's proposal, else defaults
        (1 CPU, the GPU rule of its device, no memory reservation)."""
        res = {k: v for k, v in unit.resources.items() if v is not None}
        o = self.options
        num_cpus = o.num_cpus if o.num_cpus is not None else res.get("num_cpus", 1)
        if o.num_gpus is not None:
            num_gpus = o.num_gpus
        elif "num_gpus" in res:
            num_gpus = res["num_gpus"]
        elif (unit.device or "").strip().lower() == "auto":
            num_gpus = gpus_for_device(unit.device, self.gpus_available())
        else:
            num_gpus = gpus_for_device(unit.device)
        memory = o.memory if o.memory is not None else res.get("memory")
        memory = parse_memory(memory, f"work unit {unit.key!r}: memory")
        return {"num_cpus": num_cpus, "num_gpus": num_gpus, "memory": memory}

    def check_fits(self, units: Sequence[WorkUnit], cores: int | None = None) -> None:
        """Fail before running when one unit asks for more than this machine has."""
        from .threads import usable_cores

        gpus: float | None = None
        ram = total_memory()
        for unit in units:
            req = self.request(unit)
            if req["num_gpus"]:
                gpus = local_gpu_count() if gpus is None else gpus
                if req["num_gpus"] > gpus:
                    raise ParameterError(
                        f"work unit {unit.key!r} (device {unit.device!r}) asks for "
                        f"num_gpus={req['num_gpus']:g} but this machine has {gpus} visible "
                        "GPU(s); use --device cpu, lower --num-gpus or --executor ray"
                    )
            if req["memory"] and ram and req["memory"] > ram:
                raise ParameterError(
                    f"work unit {unit.key!r} asks for --memory {req['memory']} bytes but this "
                    f"machine has {ram} bytes"
                )
            cores = usable_cores() if cores is None else cores
            if req["num_cpus"] > cores:
                raise ParameterError(
                    f"work unit {unit.key!r} asks for {req['num_cpus']:g} CPUs (--num-cpus / "
                    f"--threads) but this process may use {cores} core(s)"
                )

    def unit_threads(self, unit: WorkUnit) -> int:
        """Torch threads for ``unit``: ``--threads`` if given, else the policy (capped by
        ``--num-cpus`` when the user gave it, and by the unit's ``max_threads``; a sweep's own
        CPU proposal is for Ray)."""
        if self.options.threads is None and self._monitor is None:
            self._monitor = LoadMonitor()
        cap = self.options.num_cpus
        if unit.max_threads is not None:
            cap = unit.max_threads if cap is None else min(cap, unit.max_threads)
        return resolve_threads(self.options.threads, cap, self._monitor)

    def run(
        self, units: Sequence[WorkUnit], on_result: Callable[[WorkUnit, Any], None]
    ) -> SweepReport:
        raise NotImplementedError


class LocalExecutor(Executor):
    """Runs units one after another in this process (the default).

    Before each unit torch's thread count is set (``--threads``, else the policy of
    :mod:`ckpt_toolkit.threads`, re-measured per unit so a sweep follows the machine's load) and
    restored afterwards.
    """

    name = "local"

    def __init__(
        self,
        max_retries: int | None = None,
        progress: bool = True,
        desc: str = "sweep",
        options: ExecutorOptions | None = None,
        **kwargs: Any,
    ):
        opts = options or ExecutorOptions(max_retries=max_retries, **kwargs)
        super().__init__(opts, progress, desc)

    def run(
        self, units: Sequence[WorkUnit], on_result: Callable[[WorkUnit, Any], None]
    ) -> SweepReport:
        report = SweepReport()
        units = list(units)
        self.check_fits(units)
        before = current_threads()
        bar = tqdm(total=len(units), desc=self.desc, disable=not self.progress, unit="task")
        try:
            for unit in units:
                bar.set_postfix_str(unit.key[-40:], refresh=False)
                apply_threads(self.unit_threads(unit))
                for attempt in range(self.max_retries + 1):
                    try:
                        result = call_unit(unit.fn, unit.args, unit.kwargs, self.timeout, unit.key)
                    except Exception:
                        if attempt == self.max_retries:
                            report.failed[unit.key] = traceback.format_exc()
                        continue
                    on_result(unit, result)
                    report.done.append(unit.key)
                    break
                bar.update(1)
        finally:
            bar.close()
            now = current_threads()
            if before is not None and now is not None and now != before:
                apply_threads(before)
        return report
