"""The ``processes`` executor: work units in spawned worker processes on this machine.

Small models are overhead-bound and scale badly across threads (and multi-thread OpenMP steps
slow down many-fold when another process holds a core), so on a small CPU machine the zoo trains
several single-threaded variants side by side. Worker count × threads per worker never exceeds
the cores this process may use (:mod:`ckpt_toolkit.threads`), nor do workers × ``--num-gpus``
the visible GPUs, nor workers × ``--memory`` the available memory.

Each worker is a long-lived spawned process that runs one unit at a time. A unit that raises is
retried up to ``--max-retries`` times; one that runs past ``--timeout`` seconds, or whose worker
dies (SIGKILL, OOM killer), counts as a failed attempt too: its worker is killed and replaced.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from tqdm.auto import tqdm

from .executors import (
    Executor,
    ExecutorOptions,
    SweepReport,
    WorkUnit,
    available_memory,
    call_unit,
    local_gpu_count,
)
from .threads import LoadMonitor, apply_threads, choose_threads, passive_wait

#: seconds a worker may overrun ``--timeout`` (its own timer fires first) before it is killed
KILL_GRACE_S = 10.0


def _worker_main(conn: Connection, env: dict[str, str]) -> None:
    """A worker: receive (fn, args, kwargs, threads, timeout, key), send (ok, value) back."""
    os.environ.update(env)
    passive_wait()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, args, kwargs, threads, timeout, key = msg
        try:
            apply_threads(threads)
            out: tuple[bool, Any] = (True, call_unit(fn, args, kwargs, timeout, key))
        except Exception:
            out = (False, traceback.format_exc())
        try:
            conn.send(out)
        except Exception:  # an unpicklable result
            conn.send((False, traceback.format_exc()))


def plan_workers(
    n_units: int,
    cores: int,
    threads: int,
    workers: int | None = None,
    num_gpus: float = 0,
    gpus: int = 0,
    memory: int | None = None,
    available: int | None = None,
) -> int:
    """How many worker processes: ``workers`` (default: as many as fit), never more than units,
    ``cores // threads``, ``gpus / num_gpus`` or ``available // memory``; at least 1."""
    limits = [max(1, n_units), max(1, cores // max(1, threads))]
    if workers:
        limits.append(workers)
    if num_gpus and gpus:
        limits.append(max(1, int(gpus / num_gpus + 1e-9)))
    if memory and available:
        limits.append(max(1, available // memory))
    return max(1, min(limits))


@dataclass
class _Slot:
    index: int
    proc: Any
    conn: Connection
    unit: WorkUnit | None = None
    attempt: int = 0
    deadline: float | None = None


class ProcessExecutor(Executor):
    """Runs units in spawned worker processes; results come back in completion order."""

    name = "processes"

    def __init__(
        self,
        workers: int | None = None,
        progress: bool = True,
        desc: str = "sweep",
        options: ExecutorOptions | None = None,
        **kwargs: Any,
    ):
        opts = options or ExecutorOptions(workers=workers, **kwargs)
        super().__init__(opts, progress, desc)
        self._ctx = mp.get_context("spawn")

    # -- planning ------------------------------------------------------------------------
    def plan(self, units: Sequence[WorkUnit]) -> tuple[int, int]:
        """(workers, threads per worker) for ``units`` on this machine now."""
        if not units:
            return 1, 1
        req = self.request(units[0])
        budget = LoadMonitor().budget()
        cores = choose_threads(budget)  # free cores now (at least 1)
        per = self.options.threads or max(1, int(req["num_cpus"]))
        gpus = local_gpu_count() if req["num_gpus"] else 0
        n = plan_workers(
            len(units),
            max(cores, per),
            per,
            self.options.workers,
            req["num_gpus"],
            gpus,
            req["memory"],
            available_memory() if req["memory"] else None,
        )
        return n, per

    def _spawn(self, index: int, threads: int, gpu_env: str | None) -> _Slot:
        parent, child = self._ctx.Pipe()
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        if gpu_env is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu_env
        proc = self._ctx.Process(target=_worker_main, args=(child, env), daemon=True)
        proc.start()
        child.close()
        return _Slot(index, proc, parent)

    @staticmethod
    def _kill(slot: _Slot) -> None:
        if slot.proc.is_alive():
            slot.proc.kill()
        slot.proc.join(timeout=10)
        slot.conn.close()

    # -- the sweep -----------------------------------------------------------------------
    def run(
        self, units: Sequence[WorkUnit], on_result: Callable[[WorkUnit, Any], None]
    ) -> SweepReport:
        report = SweepReport()
        units = list(units)
        if not units:
            return report
        self.check_fits(units)
        n_workers, threads = self.plan(units)
        req = self.request(units[0])
        gpus = local_gpu_count() if req["num_gpus"] else 0

        def gpu_env(i: int) -> str | None:
            if not (req["num_gpus"] and gpus):
                return None
            return str(int(i * req["num_gpus"]) % gpus)

        queue: deque[tuple[WorkUnit, int]] = deque((u, 0) for u in units)
        slots = [self._spawn(i, threads, gpu_env(i)) for i in range(n_workers)]
        bar = tqdm(total=len(units), desc=self.desc, disable=not self.progress, unit="task")
        busy = 0

        def finish(slot: _Slot, ok: bool, value: Any) -> None:
            nonlocal busy
            unit, attempt = slot.unit, slot.attempt
            assert unit is not None
            slot.unit, slot.deadline = None, None
            busy -= 1
            if ok:
                on_result(unit, value)
                report.done.append(unit.key)
            elif attempt < self.max_retries:
                queue.appendleft((unit, attempt + 1))
                return
            else:
                report.failed[unit.key] = value
            bar.set_postfix_str(unit.key[-40:], refresh=False)
            bar.update(1)

        def replace(i: int) -> _Slot:
            """Kill slot i's worker and start a fresh one that takes over its unit."""
            old = slots[i]
            self._kill(old)
            new = slots[i] = self._spawn(i, threads, gpu_env(i))
            new.unit, new.attempt, new.deadline = old.unit, old.attempt, old.deadline
            return new

        try:
            while queue or busy:
                for i, slot in enumerate(slots):
                    if slot.unit is None and queue:
                        if not slot.proc.is_alive():
                            self._kill(slot)
                            slot = slots[i] = self._spawn(i, threads, gpu_env(i))
                        unit, attempt = queue.popleft()
                        slot.unit, slot.attempt = unit, attempt
                        if self.timeout:
                            slot.deadline = time.monotonic() + self.timeout + KILL_GRACE_S
                        slot.conn.send(
                            (unit.fn, unit.args, unit.kwargs, threads, self.timeout, unit.key)
                        )
                        busy += 1
                active = [s for s in slots if s.unit is not None]
                deadlines = [s.deadline for s in active if s.deadline is not None]
                wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                ready = wait([s.conn for s in active] + [s.proc.sentinel for s in active], wait_s)
                for i, slot in enumerate(slots):
                    if slot.unit is None:
                        continue
                    if slot.conn in ready:
                        try:
                            ok, value = slot.conn.recv()
                        except (EOFError, OSError):
                            ok, value = False, self._died(slot)
                            slot = replace(i)
                        finish(slot, ok, value)
                    elif slot.proc.sentinel in ready:
                        value = self._died(slot)
                        finish(replace(i), False, value)
                    elif slot.deadline is not None and time.monotonic() >= slot.deadline:
                        value = (
                            f"UnitTimeoutError: {slot.unit.key}: timed out after "
                            f"{self.timeout:g} s (--timeout); worker killed"
                        )
                        finish(replace(i), False, value)
        finally:
            bar.close()
            for slot in slots:
                if slot.unit is None and slot.proc.is_alive():
                    try:
                        slot.conn.send(None)
                    except OSError:
                        pass
                    slot.proc.join(timeout=5)
                self._kill(slot)
        return report

    @staticmethod
    def _died(slot: _Slot) -> str:
        slot.proc.join(timeout=5)
        code = slot.proc.exitcode
        assert slot.unit is not None
        return f"WorkerDiedError: the worker running {slot.unit.key} died (exit code {code})"
