"""The thread policy (ckpt_toolkit/threads.py) on fake affinity / cgroup / load inputs, with the
expected thread counts worked out by hand from the policy in docs/threads.md."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from ckpt_toolkit import threads as th
from ckpt_toolkit.errors import ParameterError
from ckpt_toolkit.threads import CpuBudget, choose_threads


@pytest.mark.parametrize(
    "affinity, quota, busy, cap, expected",
    [
        (2, None, 0.0, None, 2),  # idle 2-core machine: both cores
        (2, None, 1.0, None, 1),  # one CPU-bound neighbour: 2 - 1 = 1
        (2, None, 2.0, None, 1),  # both cores taken: still 1, never 0
        (2, None, 0.3, None, 2),  # light background load: 1.7 rounds to 2
        (2, None, 0.6, None, 1),  # 1.4 rounds to 1
        (8, 2.5, 0.0, None, 2),  # cgroup quota of 2.5 CPUs: 2 usable cores
        (8, 0.5, 0.0, None, 1),  # a quota below one CPU still gives 1 thread
        (4, None, 0.4, 2, 2),  # 3.6 -> 4, capped by the unit's --num-cpus 2
        (16, None, 3.2, None, 13),  # 12.8 rounds to 13
        (4, 8.0, 0.0, None, 4),  # a quota above the affinity does not add cores
    ],
)
def test_choose_threads(affinity, quota, busy, cap, expected):
    assert choose_threads(CpuBudget(affinity, quota, busy), cap) == expected


def test_budget_usable_and_free():
    b = CpuBudget(affinity=6, quota=3.0, busy_others=1.25)
    assert b.usable == 3 and b.free == 1.75
    assert CpuBudget(2, None, 5.0).free == 0.0


def test_parse_cgroup_files():
    assert th.parse_cpu_max("max 100000\n") is None
    assert th.parse_cpu_max("150000 100000\n") == 1.5
    assert th.parse_cpu_max("200000 50000") == 4.0
    assert th.parse_cfs("-1\n", "100000\n") is None
    assert th.parse_cfs("50000", "100000") == 0.5


def test_cgroup_v2_takes_the_tightest_quota_up_the_tree(tmp_path):
    root = tmp_path / "cg"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "cpu.max").write_text("max 100000\n")  # no limit on the leaf
    (root / "a" / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs on the parent
    (root / "cpu.max").write_text("400000 100000\n")  # 4 CPUs at the root
    self_cg = tmp_path / "self_cgroup"
    self_cg.write_text("0::/a/b\n")
    assert th.cgroup_quota(root, self_cg) == 1.5
    assert CpuBudget(8, th.cgroup_quota(root, self_cg), 0.0).usable == 1


def test_cgroup_v1_cfs_quota(tmp_path):
    root = tmp_path / "cg"
    leaf = root / "cpu,cpuacct" / "docker" / "x"
    leaf.mkdir(parents=True)
    (leaf / "cpu.cfs_quota_us").write_text("300000\n")
    (leaf / "cpu.cfs_period_us").write_text("100000\n")
    self_cg = tmp_path / "self_cgroup"
    self_cg.write_text("12:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n")
    assert th.cgroup_quota(root, self_cg) == 3.0
    # no quota anywhere (-1): None
    (leaf / "cpu.cfs_quota_us").write_text("-1\n")
    assert th.cgroup_quota(root, self_cg) is None


STAT_T0 = """cpu  900 0 300 5000 10 0 0 0 0 0
cpu0 500 0 100 2000 5 0 0 0 0 0
cpu1 400 0 200 3000 5 0 0 0 0 0
cpu2 0 0 0 9000 0 0 0 0 0 0
"""
# one second later (100 jiffies/s): cpu0 fully busy (user +90, system +10), cpu1 60 busy
# (user 40, softirq 10, steal 10) + 40 idle; cpu2 idle but not ours
STAT_T1 = """cpu  1100 0 310 5040 10 0 10 10 0 0
cpu0 590 0 110 2000 5 0 0 0 0 0
cpu1 440 0 200 3040 5 0 10 10 0 0
cpu2 0 0 0 9100 0 0 0 0 0 0
"""

# two seconds after T1: cpu0 idle, cpu1 busy 50 jiffies (all of them ours)
STAT_T2 = """cpu  1150 0 310 5390 10 0 10 10 0 0
cpu0 590 0 110 2200 5 0 0 0 0 0
cpu1 490 0 200 3190 5 0 10 10 0 0
"""


def test_cpu_jiffies_of_the_affinity_cpus():
    assert th.cpu_jiffies(STAT_T0, [0, 1]) == (500 + 100 + 400 + 200, 2605 + 3605)
    busy0, _ = th.cpu_jiffies(STAT_T0, [0, 1])
    busy1, _ = th.cpu_jiffies(STAT_T1, [0, 1])
    assert busy1 - busy0 == 100 + 60


def test_load_monitor_subtracts_own_cpu_time(monkeypatch):
    """cpus 0,1 were busy 160 jiffies = 1.6 CPU-s in 1 s, 0.6 of them ours: others kept 1.0
    CPU busy, so 2 - 1.0 = 1 thread."""
    stats = iter([STAT_T0, STAT_T1, STAT_T1, STAT_T2])
    clock = iter([100.0, 101.0, 101.5, 103.0])
    own = iter([5.0, 5.6, 5.6, 6.1])
    monkeypatch.setattr(th, "_read", lambda path: next(stats))
    fake_time = SimpleNamespace(monotonic=lambda: next(clock), sleep=lambda s: None)
    monkeypatch.setattr(th, "time", fake_time)
    monkeypatch.setattr(th, "_own_cpu_s", lambda: next(own))
    monkeypatch.setattr(th, "_clk_tck", lambda: 100.0)
    monkeypatch.setattr(th, "cgroup_quota", lambda: None)
    mon = th.LoadMonitor(cpus=[0, 1], min_interval=1.0)
    budget = mon.budget()
    assert budget.affinity == 2 and budget.busy_others == pytest.approx(1.0)
    assert choose_threads(budget) == 1
    # half a second later: the same measurement, no new sample
    assert mon.busy_others() == pytest.approx(1.0)
    # two seconds after the first reading: the neighbour stopped, only our 0.5 CPU-s ran
    budget = mon.budget()
    assert budget.busy_others == pytest.approx(0.0) and choose_threads(budget) == 2


def test_busy_others_from():
    assert th.busy_others_from(150, 0.5, 1.0, 100) == pytest.approx(1.0)
    assert th.busy_others_from(10, 0.5, 1.0, 100) == 0.0  # never negative
    assert th.busy_others_from(10, 0.0, 0.0, 100) == 0.0


@pytest.mark.parametrize("value", ["0", "-1", "two", 1.5, True, 0])
def test_parse_threads_rejects(value):
    with pytest.raises(ParameterError, match="--threads must be 'auto' or a positive integer"):
        th.parse_threads(value)


def test_parse_threads_accepts(monkeypatch):
    assert th.parse_threads(None) is None and th.parse_threads("auto") is None
    assert th.parse_threads("AUTO ") is None
    assert th.parse_threads("3") == 3 and th.parse_threads(2) == 2
    assert th.resolve_threads(5) == 5  # explicit: no measurement
    # $CKPT_THREADS fixes what auto means; an explicit value still wins
    monkeypatch.setenv("CKPT_THREADS", "3")
    assert th.resolve_threads(None) == 3 and th.resolve_threads("auto") == 3
    assert th.resolve_threads(2) == 2
    monkeypatch.setenv("CKPT_THREADS", "auto")
    monkeypatch.setattr(th.LoadMonitor, "budget", lambda self: CpuBudget(4, None, 1.0))
    assert th.resolve_threads(None) == 3
    monkeypatch.setenv("CKPT_THREADS", "lots")
    with pytest.raises(ParameterError, match="CKPT_THREADS must be 'auto' or a positive"):
        th.resolve_threads(None)


def test_apply_threads_sets_torch_and_env(monkeypatch):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        th.apply_threads(1)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def test_openmp_waits_passively_unless_the_user_says_otherwise():
    code = "import os, ckpt_toolkit; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ACTIVE"
