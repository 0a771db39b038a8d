"""A process-pool executor for zoo variants on one machine.

Small models are overhead-bound and scale badly across threads (and two-thread OpenMP steps
slow down many-fold when another process holds a core), so on a small CPU machine the zoo
runs several single-threaded variants side by side instead. Same interface as
:class:`ckpt_toolkit.executors.LocalExecutor`: units in, ``on_result(unit, rows)`` in the driver.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from tqdm.auto import tqdm

from ..executors import SweepReport, WorkUnit


def _call(fn: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[bool, Any]:
    try:
        return True, fn(*args, **kwargs)
    except Exception:
        return False, traceback.format_exc()


class ProcessExecutor:
    """Runs units in ``workers`` spawned processes; results come back in completion order."""

    name = "processes"

    def __init__(self, workers: int = 2, progress: bool = True, desc: str = "sweep"):
        self.workers, self.progress, self.desc = max(1, workers), progress, desc

    def run(
        self, units: Sequence[WorkUnit], on_result: Callable[[WorkUnit, Any], None]
    ) -> SweepReport:
        report = SweepReport()
        bar = tqdm(total=len(units), desc=self.desc, disable=not self.progress, unit="task")
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            pending = {pool.submit(_call, u.fn, u.args, u.kwargs): u for u in units}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        unit = pending.pop(fut)
                        try:
                            ok, value = fut.result()
                        except Exception:  # the worker process died
                            ok, value = False, traceback.format_exc()
                        if ok:
                            on_result(unit, value)
                            report.done.append(unit.key)
                        else:
                            report.failed[unit.key] = value
                        bar.set_postfix_str(unit.key[-40:], refresh=False)
                        bar.update(1)
            except KeyboardInterrupt:
                for fut in pending:
                    fut.cancel()
                raise
            finally:
                bar.close()
        return report
