"""How many torch / OpenMP intra-op threads to use: the cores this process may really use.

The policy (docs/threads.md):

1. *usable cores* = the CPUs in this process's affinity mask (``os.sched_getaffinity``), capped
   by the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``; a
   quota of 1.5 CPUs gives 1 usable core, never less than 1);
2. *busy cores* = how many of those CPUs other processes kept busy, measured from
   ``/proc/stat`` over a short interval minus this process's own CPU time (fallback: the 1-minute
   load average);
3. *threads* = usable − busy, rounded to the nearest integer and clipped to ``[1, usable]``
   (and to ``cap``, e.g. a unit's ``--num-cpus``).

So on an idle 2-core machine a sweep uses 2 threads, beside one CPU-bound process 1, beside two
still 1. Threads never spin-wait against another process: ``OMP_WAIT_POLICY=PASSIVE`` is set
(unless the user set it) before torch loads its OpenMP runtime — libgomp, which torch's wheels
bundle, reads it once, when it loads. Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ParameterError

#: environment variables that size the OpenMP / MKL thread pools of a process torch not yet loaded
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: environment variable that fixes what ``--threads auto`` means (``N`` or ``auto``)
ENV_VAR = "CKPT_THREADS"
#: the default sampling interval of :func:`busy_cores` (seconds)
SAMPLE_S = 0.25


@dataclass(frozen=True)
class CpuBudget:
    """The inputs of the policy: what the process may use and what others keep busy."""

    affinity: int  #: CPUs in the affinity mask
    quota: float | None  #: cgroup CPU quota in CPUs (None: no quota)
    busy_others: float  #: CPUs kept busy by other processes

    @property
    def usable(self) -> int:
        """Cores this process may use at all: affinity, capped by the quota (at least 1)."""
        cores = max(1, int(self.affinity))
        if self.quota is not None:
            cores = min(cores, max(1, math.floor(self.quota + 1e-9)))
        return cores

    @property
    def free(self) -> float:
        """Usable cores not kept busy by other processes (may be 0)."""
        return max(0.0, self.usable - max(0.0, self.busy_others))


def choose_threads(budget: CpuBudget, cap: int | float | None = None) -> int:
    """The policy: free cores rounded to the nearest integer, within ``[1, usable]`` and ``cap``."""
    n = int(math.floor(budget.free + 0.5))
    n = min(max(1, n), budget.usable)
    if cap is not None:
        n = min(n, max(1, int(cap)))
    return n


# -- reading the machine -----------------------------------------------------------------------
def affinity_cpus() -> list[int]:
    """The CPU ids this process may run on (all CPUs where affinity is not supported)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"max 100000"`` → None, ``"150000 100000"``
    → 1.5)."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    period = float(parts[1]) if len(parts) > 1 else 100000.0
    return float(parts[0]) / period if period > 0 else None


def parse_cfs(quota_us: str, period_us: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: none)."""
    quota, period = float(quota_us.strip()), float(period_us.strip())
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def cgroup_quota(
    root: str | Path = "/sys/fs/cgroup", self_cgroup: str | Path = "/proc/self/cgroup"
) -> float | None:
    """The tightest CPU quota (in CPUs) of this process's cgroup and its parents, v2 or v1."""
    root = Path(root)
    quotas: list[float] = []
    lines = (_read(Path(self_cgroup)) or "").splitlines()
    # v2: "0::/some/path"; the files live at root/some/path/cpu.max (and in each parent)
    v2_paths = [line.split("::", 1)[1] for line in lines if line.startswith("0::")]
    for rel in v2_paths or ["/"]:
        here = root / rel.strip("/")
        for folder in [here, *here.parents]:
            text = _read(folder / "cpu.max")
            if text is not None:
                q = parse_cpu_max(text)
                if q is not None:
                    quotas.append(q)
            if folder == root:
                break
    # v1: "N:cpu,cpuacct:/path" — the files live under root/cpu (or cpu,cpuacct)
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) == 3 and "cpu" in fields[1].split(","):
            for ctrl in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                base = root / ctrl
                for folder in (base / fields[2].strip("/"), base):
                    q_text = _read(folder / "cpu.cfs_quota_us")
                    p_text = _read(folder / "cpu.cfs_period_us")
                    if q_text and p_text:
                        q = parse_cfs(q_text, p_text)
                        if q is not None:
                            quotas.append(q)
    return min(quotas) if quotas else None


def cpu_jiffies(stat_text: str, cpus: Iterable[int]) -> tuple[int, int]:
    """(busy, total) jiffies of the given CPUs from a ``/proc/stat`` text.

    Busy = user + nice + system + irq + softirq + steal (stolen time is unavailable to us too);
    idle and iowait are not busy.
    """
    want = {f"cpu{c}" for c in cpus}
    busy = total = 0
    for line in stat_text.splitlines():
        fields = line.split()
        if not fields or fields[0] not in want:
            continue
        vals = [int(v) for v in fields[1:9]] + [0] * (8 - len(fields[1:9]))
        user, nice, system, idle, iowait, irq, softirq, steal = vals[:8]
        busy += user + nice + system + irq + softirq + steal
        total += user + nice + system + idle + iowait + irq + softirq + steal
    return busy, total


def busy_others_from(
    busy_jiffies: float, own_cpu_s: float, wall_s: float, clk_tck: float = 100.0
) -> float:
    """CPUs kept busy by others over an interval: the CPUs' busy time minus our own, per second."""
    if wall_s <= 0:
        return 0.0
    return max(0.0, (busy_jiffies / clk_tck - own_cpu_s) / wall_s)


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _clk_tck() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100.0


class LoadMonitor:
    """Measures how many of this process's CPUs other processes keep busy.

    Each call compares ``/proc/stat`` with the previous call's reading (minus this process's own
    CPU time over the same interval), so a sweep that asks between units pays nothing; only the
    first call samples ``sample_s`` seconds, and a call less than ``min_interval`` seconds after
    the last measurement returns that measurement. Where ``/proc/stat`` is missing the 1-minute
    load average stands in.
    """

    def __init__(
        self,
        cpus: Iterable[int] | None = None,
        sample_s: float = SAMPLE_S,
        min_interval: float = 1.0,
    ):
        self.cpus = list(cpus) if cpus is not None else affinity_cpus()
        self.sample_s, self.min_interval = sample_s, min_interval
        self.quota = cgroup_quota()
        self._last: tuple[float, int, float] | None = None
        self._value = 0.0

    def _take(self) -> tuple[float, int, float] | None:
        text = _read(Path("/proc/stat"))
        if text is None:
            return None
        return time.monotonic(), cpu_jiffies(text, self.cpus)[0], _own_cpu_s()

    def busy_others(self) -> float:
        """CPUs kept busy by other processes since the last call (or over ``sample_s``)."""
        now = self._take()
        if now is None:
            try:
                return float(os.getloadavg()[0])
            except (OSError, AttributeError):
                return 0.0
        base = self._last
        if base is not None and now[0] - base[0] < self.min_interval:
            return self._value  # measured moments ago
        if base is None:
            base = now
            time.sleep(self.sample_s)
            now = self._take() or base
        self._last = now
        self._value = busy_others_from(
            now[1] - base[1], now[2] - base[2], now[0] - base[0], _clk_tck()
        )
        return self._value

    def budget(self) -> CpuBudget:
        """The :class:`CpuBudget` now."""
        return CpuBudget(len(self.cpus), self.quota, self.busy_others())


def busy_cores(sample_s: float = SAMPLE_S, cpus: Iterable[int] | None = None) -> float:
    """How many of ``cpus`` (default: the affinity mask) other processes keep busy right now
    (a ``sample_s``-second measurement; see :class:`LoadMonitor`)."""
    return LoadMonitor(cpus, sample_s).busy_others()


def cpu_budget(sample_s: float = SAMPLE_S) -> CpuBudget:
    """Measure this process's :class:`CpuBudget` now (takes ``sample_s`` seconds)."""
    return LoadMonitor(sample_s=sample_s).budget()


def usable_cores() -> int:
    """Cores this process may use at all (affinity and cgroup quota; load not counted)."""
    return CpuBudget(len(affinity_cpus()), cgroup_quota(), 0.0).usable


# -- the option ------------------------------------------------------------------------------
#: below this many parameters one thread is faster than two on the project's 2-core machine
#: (BENCHMARKS.md, probing on a busy machine: a 0.94M-parameter model, 15.6 s on 1 thread,
#: 21.8 s on 2): the work of a forward pass is too small to split
SMALL_MODEL_PARAMS = 2_000_000


def useful_threads(params: int | None) -> int | None:
    """At most how many threads a model of ``params`` parameters can use well: 1 below
    :data:`SMALL_MODEL_PARAMS`, no limit (``None``) above it or when the size is unknown."""
    return 1 if params is not None and 0 < params < SMALL_MODEL_PARAMS else None


def parse_threads(value: int | str | None, option: str = "--threads") -> int | None:
    """``None``/``"auto"`` → None (the policy decides); a positive integer → itself."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, bool):
        raise ParameterError(f"{option} must be 'auto' or a positive integer, got {value!r}")
    try:
        n = int(str(value).strip()) if isinstance(value, str) else value
    except ValueError:
        n = None
    if not isinstance(n, int) or n < 1 or (isinstance(value, float) and value != n):
        raise ParameterError(f"{option} must be 'auto' or a positive integer, got {value!r}")
    return n


def resolve_threads(
    threads: int | str | None = None,
    cap: int | float | None = None,
    monitor: LoadMonitor | None = None,
) -> int:
    """The thread count to use now: ``threads`` if given, else ``$CKPT_THREADS`` if set (``N``
    or ``auto``), else the policy (see module doc); pass a :class:`LoadMonitor` kept across
    calls to avoid a fresh sample each time."""
    n = parse_threads(threads)
    if n is None:
        n = parse_threads(os.environ.get(ENV_VAR), ENV_VAR)
    if n is not None:
        return n
    return choose_threads((monitor or LoadMonitor()).budget(), cap)


def passive_wait() -> None:
    """Make OpenMP threads sleep rather than spin when idle (unless the user chose otherwise).

    Effective only before torch loads (libgomp reads the variable once); harmless after.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def apply_threads(n: int) -> int:
    """Use ``n`` intra-op threads: torch if it is loaded, else the variables it reads on load."""
    passive_wait()
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    return n


def current_threads() -> int | None:
    """torch's current intra-op thread count, or None when torch is not loaded."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None
