"""Run a sweep's work units as tasks on a Ray cluster (``pip install ckpt_toolkit[ray]``).

One Ray task per :class:`~ckpt_toolkit.executors.WorkUnit` — one (checkpoint, probe set) or
(checkpoint, fine-tune task), DESIGN.md "Scale". Each task asks for the unit's resources (CPUs,
GPUs, memory; ``unit.resources`` overrides the executor's defaults). Workers only compute and
return rows; results are consumed as they complete (``ray.wait``) and ``on_result`` runs here in
the driver, which alone writes the results store — so a sweep is written incrementally and a
killed driver loses at most the units in flight.

Failures are retried a bounded number of times: Ray's ``max_retries`` re-runs a task whose worker
process died (OOM killer, SIGKILL, node loss) and ``retry_exceptions=True`` makes Python exceptions
count against the same budget. A unit that still fails is reported in
:attr:`SweepReport.failed <ckpt_toolkit.executors.SweepReport.failed>` under its key (the
checkpoint name) while the rest of the sweep finishes.

Workers import ``ckpt_toolkit`` and the unit's function by module name. On a local cluster the
editable install (and the driver's ``sys.path``, which Ray forwards) is enough; on a remote
cluster install the package on every node, or pass
``init_kwargs={"runtime_env": {"py_modules": [ckpt_toolkit]}}``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from .errors import ParameterError
from .executors import (
    Executor,
    ExecutorOptions,
    SweepReport,
    WorkUnit,
    call_unit,
    parse_memory,
)
from .threads import apply_threads

__all__ = ["RayExecutor", "RayUnavailableError", "execute_unit", "parse_memory"]

#: seconds a task may overrun ``--timeout`` (its SIGALRM timer fires first) before it is killed
KILL_GRACE_S = 10.0

INSTALL_HINT = "pip install ckpt_toolkit[ray]"

#: resource keys a unit (or the executor) may set, passed to ``ray.remote(...).options``
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources", "accelerator_type")


class RayUnavailableError(ParameterError):
    """Ray is not installed, or the Ray cluster at the given address cannot be reached."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            f"the ray executor needs Ray, which is not installed ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return ray


def _watchdog(timeout: float) -> threading.Event:
    """Kill this worker process if the unit overruns ``timeout`` + grace (a native call that
    never returns to Python, where the SIGALRM timer cannot interrupt it); Ray retries it."""
    done = threading.Event()

    def watch() -> None:
        if not done.wait(timeout + KILL_GRACE_S):
            os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="ckpt-unit-watchdog").start()
    return done


def execute_unit(
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict[str, Any],
    threads: float | None,
    timeout: float | None = None,
    key: str = "unit",
) -> Any:
    """The body of every Ray task: set torch's threads (``--threads``, else the task's CPUs),
    then run the unit within ``timeout`` seconds."""
    apply_threads(max(1, int(threads or 1)))
    done = _watchdog(timeout) if timeout else None
    try:
        return call_unit(fn, args, kwargs, timeout, key)
    finally:
        if done is not None:
            done.set()


def _address_host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; None for ``auto``/``local``."""
    if address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise RayUnavailableError(
            f"Ray address {address!r} is not of the form HOST:PORT (e.g. 10.0.0.1:6379, as printed "
            "by `ray start --head`), ray://HOST:10001 (Ray client) or 'auto'"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


class RayExecutor(Executor):
    """Runs units as Ray tasks and hands their rows to ``on_result`` in the driver.

    Parameters
    ----------
    address:
        Ray cluster to join (``HOST:PORT`` from ``ray start --head``, ``ray://HOST:10001`` or
        ``auto``); default ``$RAY_ADDRESS``, else a Ray session already initialized in this
        process, else a new local cluster on this machine.
    max_retries:
        Extra attempts per unit (default 2), for crashed workers, timeouts and Python exceptions.
    timeout:
        Seconds per attempt; an attempt that runs longer fails (and is retried).
    num_cpus, num_gpus, memory:
        Resources of every task (``memory`` in bytes or like ``"8GiB"``). A value given here is
        what the user asked for and wins; one left at ``None`` comes from the sweep's
        ``unit.resources``, else from the unit's device by the GPU rule
        (:func:`~ckpt_toolkit.executors.gpus_for_device`: ``cuda`` asks for one GPU, ``auto``
        for one when the cluster has any), else Ray's defaults (1 CPU, no memory reservation).
        So ``num_gpus=0.25`` packs four units on a GPU whatever the sweep proposed.
    threads:
        Torch threads in each task (default: the task's ``num_cpus``).
    progress:
        Show a tqdm bar on the driver.
    init_kwargs:
        Extra ``ray.init`` arguments (``runtime_env``, ``include_dashboard``, ``num_cpus`` of a
        new local cluster, ...).
    check_resources:
        Before submitting, fail with :class:`~ckpt_toolkit.errors.ParameterError` when a unit asks
        for more CPUs/GPUs than any node of the cluster has (it would wait forever). Turn off for
        autoscaling clusters.
    """

    name = "ray"
    default_retries = 2

    def __init__(
        self,
        address: str | None = None,
        max_retries: int | None = None,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        memory: int | str | None = None,
        progress: bool = True,
        init_kwargs: Mapping[str, Any] | None = None,
        desc: str = "sweep",
        check_resources: bool = True,
        options: ExecutorOptions | None = None,
        timeout: float | None = None,
        threads: int | str | None = None,
    ):
        _import_ray()  # fail early, with the install hint
        if options is None:
            options = ExecutorOptions(
                max_retries=max_retries,
                timeout=timeout,
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                memory=memory,
                address=address,
                threads=threads,
            )
        super().__init__(options, progress, desc)
        self.address = options.address or os.environ.get("RAY_ADDRESS") or None
        self.init_kwargs = dict(init_kwargs or {})
        self.check_resources = check_resources
        self._started_cluster = False
        self._remote: Any = None

    @property
    def num_cpus(self) -> float | None:
        return self.options.num_cpus

    @property
    def num_gpus(self) -> float | None:
        return self.options.num_gpus

    @property
    def memory(self) -> int | None:
        return self.options.memory  # type: ignore[return-value]

    def gpus_available(self) -> float | None:
        """GPUs of the cluster (None before connecting: unknown)."""
        ray = _import_ray()
        if not ray.is_initialized():
            return None
        return float(ray.cluster_resources().get("GPU", 0))

    # -- connection --------------------------------------------------------------------
    def connect(self) -> None:
        """Join the cluster (or start a local one); a no-op when Ray is already initialized."""
        ray = _import_ray()
        if self.address:
            host_port = _address_host_port(self.address)
            if host_port is not None:
                try:
                    socket.create_connection(host_port, timeout=5).close()
                except OSError as exc:
                    raise RayUnavailableError(
                        f"cannot reach the Ray cluster at {self.address!r} ({exc}); start one with "
                        "`ray start --head` on the head node and pass the address it prints "
                        "(--address / RAY_ADDRESS)"
                    ) from None
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        kwargs.update(self.init_kwargs)
        kwargs.setdefault("ignore_reinit_error", True)
        # Ray gives a new local node a fixed 30 s to come up; on a busy machine it can miss that,
        # so starting a local cluster gets a second try
        tries = 1 if self.address else 2
        for attempt in range(tries):
            try:
                ray.init(address=self.address, **kwargs)
                break
            except Exception as exc:  # ConnectionError, or a plain Exception on startup timeout
                ray.shutdown()  # clean up a half-started local cluster
                if attempt + 1 < tries and "timed out" in str(exc):
                    continue
                where = (
                    f"the Ray cluster at {self.address!r}"
                    if self.address
                    else "a local Ray cluster"
                )
                raise RayUnavailableError(
                    f"cannot start or join {where}: {type(exc).__name__}: {exc}"
                ) from None
        self._started_cluster = not self.address

    def shutdown(self) -> None:
        """Disconnect from Ray (and stop the local cluster if this executor started it)."""
        ray = _import_ray()
        if ray.is_initialized():
            ray.shutdown()
        self._started_cluster = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started_cluster:
            self.shutdown()

    # -- resources ---------------------------------------------------------------------
    def task_options(self, unit: WorkUnit) -> dict[str, Any]:
        """Ray options of ``unit``'s task: the executor's explicit resources, else the unit's,
        else the GPU rule of its device."""
        unknown = set(unit.resources) - set(RESOURCE_KEYS)
        if unknown:
            raise ParameterError(
                f"work unit {unit.key!r}: unknown resource(s) {sorted(unknown)}; "
                f"known: {list(RESOURCE_KEYS)}"
            )
        req = self.request(unit)
        opts: dict[str, Any] = {
            "num_cpus": req["num_cpus"],
            "num_gpus": req["num_gpus"] or 0,
            "max_retries": self.max_retries,
            "retry_exceptions": True,
            "name": unit.key,
        }
        if req["memory"]:
            opts["memory"] = req["memory"]
        for key in ("resources", "accelerator_type"):
            if unit.resources.get(key):
                opts[key] = unit.resources[key]
        return opts

    def _check_fits(self, ray: Any, units: Sequence[WorkUnit], options: list[dict]) -> None:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if not nodes:
            return
        for unit, opts in zip(units, options, strict=True):
            for key, ray_key in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
                need = opts.get(key) or 0
                if need and not any(node.get(ray_key, 0) >= need for node in nodes):
                    biggest = max(node.get(ray_key, 0) for node in nodes)
                    raise ParameterError(
                        f"work unit {unit.key!r} asks for {key}={need} but no node of the Ray "
                        f"cluster has that much {ray_key} (largest node: {biggest:g}); lower "
                        f"--{key.replace('_', '-')} or add nodes (check_resources=False for "
                        "an autoscaling cluster)"
                    )

    # -- the sweep ---------------------------------------------------------------------
    def run(
        self, units: Sequence[WorkUnit], on_result: Callable[[WorkUnit, Any], None]
    ) -> SweepReport:
        """Submit one task per unit, call ``on_result(unit, rows)`` here as each one completes."""
        report = SweepReport()
        units = list(units)
        if not units:
            return report
        [self.task_options(u) for u in units]  # validates before connecting
        ray = _import_ray()
        self.connect()
        options = [self.task_options(u) for u in units]  # the GPU rule, now the cluster is known
        if self.check_resources:
            self._check_fits(ray, units, options)
        if self._remote is None:
            self._remote = ray.remote(execute_unit)

        pending: dict[Any, WorkUnit] = {}
        for unit, opts in zip(units, options, strict=True):
            threads = self.options.threads or opts["num_cpus"]
            ref = self._remote.options(**opts).remote(
                unit.fn, tuple(unit.args), dict(unit.kwargs), threads, self.timeout, unit.key
            )
            pending[ref] = unit

        bar = tqdm(total=len(units), desc=self.desc, disable=not self.progress, unit="task")
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    unit = pending.pop(ref)
                    bar.set_postfix_str(unit.key[-40:], refresh=False)
                    try:
                        rows = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        # after Ray's retries: RayTaskError carries the remote traceback,
                        # WorkerCrashedError / OutOfMemoryError / NodeDiedError a reason
                        report.failed[unit.key] = _describe(exc, self.max_retries + 1)
                    else:
                        on_result(unit, rows)
                        report.done.append(unit.key)
                    bar.update(1)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
        return report


def _describe(exc: BaseException, attempts: int) -> str:
    """The failure as text whose last line names the error (SweepReport.summary prints it)."""
    ray = _import_ray()
    tries = f"(after {attempts} attempt{'s' if attempts != 1 else ''})"
    if isinstance(exc, ray.exceptions.RayTaskError):
        # the remote traceback; its last line is "<ExceptionType>: <message>"
        return f"{tries}\n{str(exc).rstrip()}"
    # the worker process or its node died: WorkerCrashedError, OutOfMemoryError, NodeDiedError
    return f"{type(exc).__name__} {tries}: {str(exc).strip()}"
