"""Executors run a sweep's work units; the sweep code does not know which one runs it.

A :class:`WorkUnit` is one (checkpoint, probe set) or (checkpoint, fine-tune task): a picklable
top-level function and its arguments that returns rows (a list of dicts). Workers only return
rows; the driver's ``on_result`` callback writes the store, so only the driver touches it.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

Rows = list[dict[str, Any]]


@dataclass
class WorkUnit:
    """One task of a sweep. ``key`` names it in progress bars and failure reports."""

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: resources a distributed executor asks for: {"num_cpus": 1, "num_gpus": 0, "memory": bytes}
    resources: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepReport:
    """What happened: keys that finished and keys that failed (with the last error)."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        s = f"{len(self.done)} done, {len(self.failed)} failed"
        for key, err in self.failed.items():
            s += f"\n  FAILED {key}: {err.strip().splitlines()[-1] if err.strip() else err}"
        return s


class LocalExecutor:
    """Runs units one after another in this process (the default)."""

    name = "local"

    def __init__(self, max_retries: int = 0, progress: bool = True, desc: str = "sweep"):
        self.max_retries = max_retries
        self.progress = progress
        self.desc = desc

    def run(
        self, units: Sequence[WorkUnit], on_result: Callable[[WorkUnit, Any], None]
    ) -> SweepReport:
        report = SweepReport()
        bar = tqdm(total=len(units), desc=self.desc, disable=not self.progress, unit="task")
        for unit in units:
            bar.set_postfix_str(unit.key[-40:], refresh=False)
            for attempt in range(self.max_retries + 1):
                try:
                    result = unit.fn(*unit.args, **unit.kwargs)
                except KeyboardInterrupt:
                    bar.close()
                    raise
                except Exception:
                    if attempt == self.max_retries:
                        report.failed[unit.key] = traceback.format_exc()
                    continue
                on_result(unit, result)
                report.done.append(unit.key)
                break
            bar.update(1)
        bar.close()
        return report


#: options only the Ray executor understands (see ckpt_toolkit.ray_executor.RayExecutor)
RAY_ONLY_OPTIONS = ("address", "num_cpus", "num_gpus", "memory", "init_kwargs", "check_resources")
LOCAL_OPTIONS = ("max_retries", "progress", "desc")


def get_executor(name: str = "local", **options: Any) -> Any:
    """``local`` (default) or ``ray`` (``pip install ckpt_toolkit[ray]``).

    Options: ``max_retries``, ``progress``, ``desc`` for both; ``address``, ``num_cpus``,
    ``num_gpus``, ``memory``, ``init_kwargs``, ``check_resources`` for ``ray`` only. Options that
    are ``None`` count as not given (CLIs can pass their flags through unchanged); a Ray-only
    option given to the local executor is an error rather than silently ignored.
    """
    from .errors import ParameterError

    options = {k: v for k, v in options.items() if v is not None}
    if name == "local":
        ray_only = sorted(k for k in options if k in RAY_ONLY_OPTIONS)
        if ray_only:
            flags = ", ".join("--" + k.replace("_", "-") for k in ray_only)
            raise ParameterError(
                f"{flags}: only with --executor ray (the local executor runs here)"
            )
        unknown = sorted(set(options) - set(LOCAL_OPTIONS))
        if unknown:
            raise ParameterError(f"unknown executor option(s) {unknown}; known: {LOCAL_OPTIONS}")
        return LocalExecutor(**options)
    if name == "ray":
        from .ray_executor import RayExecutor

        known = set(LOCAL_OPTIONS) | set(RAY_ONLY_OPTIONS)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ParameterError(
                f"unknown ray executor option(s) {unknown}; known: {sorted(known)}"
            )
        return RayExecutor(**options)
    raise ParameterError(f"unknown executor {name!r}; choose 'local' or 'ray'")
