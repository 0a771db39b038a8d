"""RayExecutor on a local 2-CPU Ray cluster started once per session (toy units).

The unit functions are top-level in this module: Ray forwards the driver's ``sys.path`` to the
workers of a local cluster, so they import it by name like any sweep function.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ckpt_toolkit.errors import ParameterError
from ckpt_toolkit.executors import LocalExecutor, WorkUnit
from ckpt_toolkit.store import ResultsStore
from ckpt_toolkit.sweep import get_executor

ray = pytest.importorskip("ray")

from ckpt_toolkit.ray_executor import (  # noqa: E402
    RayExecutor,
    RayUnavailableError,
    parse_memory,
)


# -- unit functions (run in Ray workers) -----------------------------------------------------
def square_rows(name: str, n: int) -> list[dict]:
    """Rows of a fake probe: mean of squares and a log value, computed for real."""
    xs = [i * i for i in range(n)]
    return [
        {"checkpoint": name, "probe": "toy", "task": "sq", "metric": "mean", "value": sum(xs) / n},
        {"checkpoint": name, "probe": "toy", "task": "sq", "metric": "log", "value": math.log(n)},
    ]


def torch_threads(name: str) -> list[dict]:
    import torch

    return [{"checkpoint": name, "metric": "threads", "value": torch.get_num_threads()}]


def crash_first_attempt(name: str, marker: str) -> list[dict]:
    """SIGKILL this worker process on the first attempt (detected by a marker file)."""
    path = Path(marker)
    with path.open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    if len(path.read_text().split()) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return square_rows(name, 5)


def always_fail(name: str, marker: str) -> list[dict]:
    with Path(marker).open("a") as fh:
        fh.write("attempt\n")
    raise ValueError(f"broken checkpoint {name}")


def wait_for_file(name: str, path: str, timeout: float) -> list[dict]:
    """Wait until the driver wrote another unit's result (proves incremental consumption)."""
    t0 = time.time()
    while not Path(path).exists() and time.time() - t0 < timeout:
        time.sleep(0.05)
    return [{"checkpoint": name, "metric": "saw_file", "value": float(Path(path).exists())}]


def counted(name: str, log: str, fail_marker: str | None = None) -> list[dict]:
    """Log each call; fail while ``fail_marker`` exists (a checkpoint that is broken for now)."""
    with Path(log).open("a") as fh:
        fh.write(name + "\n")
    if fail_marker and Path(fail_marker).exists():
        raise RuntimeError(f"{name} is not readable yet")
    return square_rows(name, len(name))


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ray_cluster():
    """A local 2-CPU Ray cluster shared by all Ray tests (starting one takes 5-20 s)."""
    if not ray.is_initialized():
        # workers get the driver's cwd on sys.path, not tests/: add it so they can import the
        # unit functions of the test modules by name
        tests_dir = str(Path(__file__).resolve().parent)
        for attempt in range(2):  # on a loaded 2-core machine the raylet may miss Ray's 30 s
            try:
                ray.init(
                    num_cpus=2,
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env={"env_vars": {"PYTHONPATH": tests_dir}},
                )
                break
            except Exception:
                ray.shutdown()
                if attempt == 1:
                    raise
    yield ray
    ray.shutdown()


def collect(executor, units):
    got: dict[str, list[dict]] = {}
    report = executor.run(units, lambda unit, rows: got.__setitem__(unit.key, rows))
    return got, report


# -- no cluster needed -----------------------------------------------------------------------
def test_parse_memory():
    assert parse_memory(None) is None
    assert parse_memory(1234) == 1234
    assert parse_memory("4GB") == 4 * 10**9
    assert parse_memory("4 GiB") == 4 * 2**30
    assert parse_memory("512MiB") == 512 * 2**20
    with pytest.raises(ParameterError, match="memory"):
        parse_memory("lots")


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(RayUnavailableError, match=r"pip install ckpt_toolkit\[ray\]"):
        get_executor("ray")


def test_unreachable_address_is_a_clear_error():
    ex = RayExecutor(address="127.0.0.1:1")
    with pytest.raises(RayUnavailableError, match="cannot reach the Ray cluster at '127.0.0.1:1'"):
        ex.connect()
    with pytest.raises(RayUnavailableError, match="HOST:PORT"):
        RayExecutor(address="nonsense").connect()


def test_task_options_user_resources_win_over_the_sweeps():
    unit = WorkUnit("a@step1", square_rows, resources={"num_cpus": 1, "num_gpus": 1})
    # nothing set on the executor: the sweep's proposal
    opts = RayExecutor(max_retries=3).task_options(unit)
    assert opts["num_cpus"] == 1 and opts["num_gpus"] == 1 and "memory" not in opts
    assert opts["max_retries"] == 3 and opts["retry_exceptions"] is True
    assert opts["name"] == "a@step1"
    # what the user typed (--num-gpus 0.25 --num-cpus 2 --memory 1GiB) wins
    opts = RayExecutor(num_cpus=2, num_gpus=0.25, memory="1GiB").task_options(unit)
    assert opts["num_cpus"] == 2 and opts["num_gpus"] == 0.25 and opts["memory"] == 2**30
    # Ray's defaults when neither says anything
    opts = RayExecutor().task_options(WorkUnit("b", square_rows))
    assert opts["num_cpus"] == 1 and opts["num_gpus"] == 0
    with pytest.raises(ParameterError, match="unknown resource"):
        RayExecutor().task_options(WorkUnit("b", square_rows, resources={"gpus": 1}))


# -- on the local cluster --------------------------------------------------------------------
def test_rows_identical_to_local_and_threads_follow_cpus(ray_cluster):
    units = [WorkUnit(f"run@step{n}", square_rows, (f"run@step{n}", n)) for n in (3, 7, 11, 20)]
    local, lrep = collect(LocalExecutor(progress=False), units)
    remote, rrep = collect(get_executor("ray", max_retries=0, progress=False), units)
    assert rrep.ok and lrep.ok
    assert sorted(rrep.done) == sorted(u.key for u in units)
    assert remote == local
    # independent golden value: mean of 0²..6² = 91 / 7 = 13
    assert remote["run@step7"][0]["value"] == 13.0

    # torch in the worker uses as many threads as the task has CPUs
    threads = [
        WorkUnit("one", torch_threads, ("one",), resources={"num_cpus": 1}),
        WorkUnit("two", torch_threads, ("two",), resources={"num_cpus": 2}),
        WorkUnit("one-again", torch_threads, ("one-again",), resources={"num_cpus": 1}),
    ]
    got, rep = collect(RayExecutor(progress=False), threads)
    assert rep.ok  # fresh workers (torch imported by the unit) and reused ones alike
    assert {k: v[0]["value"] for k, v in got.items()} == {"one": 1, "two": 2, "one-again": 1}


def test_killed_worker_is_retried(ray_cluster, tmp_path):
    marker = tmp_path / "attempts"
    units = [
        WorkUnit("crashy@step1", crash_first_attempt, ("crashy@step1", str(marker))),
        WorkUnit("fine@step1", square_rows, ("fine@step1", 4)),
    ]
    got, rep = collect(RayExecutor(max_retries=1, progress=False), units)
    assert rep.ok, rep.summary()
    pids = marker.read_text().split()
    assert len(pids) == 2 and pids[0] != pids[1]  # a second worker process re-ran it
    assert got["crashy@step1"] == square_rows("crashy@step1", 5)

    # without retries the crash is reported under the unit's key; the rest finishes
    marker2 = tmp_path / "attempts2"
    units[0] = WorkUnit("crashy@step1", crash_first_attempt, ("crashy@step1", str(marker2)))
    got, rep = collect(RayExecutor(max_retries=0, progress=False), units)
    assert list(rep.failed) == ["crashy@step1"] and rep.done == ["fine@step1"]
    assert "FAILED crashy@step1: WorkerCrashedError (after 1 attempt)" in rep.summary()


def test_always_failing_unit_reported_others_finish(ray_cluster, tmp_path):
    marker = tmp_path / "fail_attempts"
    units = [WorkUnit(f"ok@step{n}", square_rows, (f"ok@step{n}", n)) for n in (2, 3)]
    units.insert(1, WorkUnit("bad@step9", always_fail, ("bad@step9", str(marker))))
    got, rep = collect(RayExecutor(max_retries=2, progress=False), units)
    assert sorted(rep.done) == ["ok@step2", "ok@step3"]
    assert list(rep.failed) == ["bad@step9"]
    assert "after 3 attempts" in rep.failed["bad@step9"]
    assert rep.summary().endswith("FAILED bad@step9: ValueError: broken checkpoint bad@step9")
    assert "broken checkpoint bad@step9" in rep.failed["bad@step9"]
    assert len(marker.read_text().split()) == 3  # 1 attempt + 2 retries
    assert set(got) == {"ok@step2", "ok@step3"}


def test_results_consumed_as_they_complete(ray_cluster, tmp_path):
    flag = tmp_path / "fast_written"
    units = [
        WorkUnit("slow", wait_for_file, ("slow", str(flag), 30.0)),
        WorkUnit("fast", square_rows, ("fast", 3)),
    ]
    order: list[str] = []

    def on_result(unit, rows):
        order.append(unit.key)
        if unit.key == "fast":
            flag.write_text("written")

    rep = RayExecutor(max_retries=0, progress=False).run(units, on_result)
    assert rep.ok and order == ["fast", "slow"]


def _sweep(store: ResultsStore, names: list[str], log: Path, fail_marker: Path) -> list[str]:
    """A minimal sweep driver: skip checkpoints already in the store, write rows as they come."""
    have = set(store.to_pandas(probe="toy")["checkpoint"]) if store.path.exists() else set()
    todo = [
        WorkUnit(n, counted, (n, str(log), str(fail_marker) if n == "b@step2" else None))
        for n in names
        if n not in have
    ]
    report = RayExecutor(max_retries=0, progress=False).run(
        todo, lambda unit, rows: store.upsert(rows)
    )
    return sorted(report.failed)


def test_resume_skips_finished_units(ray_cluster, tmp_path):
    store = ResultsStore(tmp_path / "results.duckdb")
    names = ["a@step1", "b@step2", "c@step3"]
    log, fail_marker = tmp_path / "calls.log", tmp_path / "broken"
    fail_marker.write_text("x")
    assert _sweep(store, names, log, fail_marker) == ["b@step2"]
    assert set(store.to_pandas(probe="toy")["checkpoint"]) == {"a@step1", "c@step3"}

    fail_marker.unlink()  # the checkpoint is fixed; the rerun only does what is missing
    assert _sweep(store, names, log, fail_marker) == []
    calls = log.read_text().split()
    assert sorted(calls[:3]) == names and calls[3:] == ["b@step2"]
    df = store.to_pandas(probe="toy")
    assert len(df) == 6
    # golden: mean of 0²..6² for the 7-letter name
    assert df.set_index(["checkpoint", "metric"]).loc[("b@step2", "mean"), "value"] == 13.0


def test_unschedulable_request_fails_fast(ray_cluster):
    units = [WorkUnit("big", square_rows, ("big", 3), resources={"num_gpus": 1})]
    with pytest.raises(ParameterError, match="no node of the Ray cluster"):
        RayExecutor(progress=False).run(units, lambda u, r: None)


def test_driver_error_in_on_result_propagates(ray_cluster):
    """A store that cannot be written stops the sweep (the rest is cancelled), not silently."""
    from ckpt_toolkit.errors import StoreError

    units = [WorkUnit(f"u{n}", square_rows, (f"u{n}", n)) for n in (2, 3, 4)]

    def on_result(unit, rows):
        raise StoreError(f"cannot write {unit.key}")

    with pytest.raises(StoreError, match="cannot write u"):
        RayExecutor(progress=False).run(units, on_result)


def sleepy(name: str, seconds: float) -> list[dict]:
    time.sleep(seconds)
    return [{"checkpoint": name, "metric": "slept", "value": seconds}]


def test_timeout_fails_the_task_and_names_it(ray_cluster):
    units = [WorkUnit("slow", sleepy, ("slow", 60)), WorkUnit("fast", square_rows, ("fast", 3))]
    t0 = time.monotonic()
    # one retry: a worker force-killed by an earlier test's cancel must not fail "fast"
    got, rep = collect(RayExecutor(max_retries=1, timeout=2, progress=False), units)
    assert time.monotonic() - t0 < 60
    assert rep.done == ["fast"] and list(rep.failed) == ["slow"], rep.failed
    assert "slow: timed out after 2 s (--timeout)" in rep.summary()
    assert "after 2 attempts" in rep.failed["slow"]


def test_device_auto_asks_the_cluster_for_a_gpu_only_if_it_has_one(ray_cluster):
    """The local test cluster has no GPU: a device-auto unit runs on its CPUs (the GPU rule)."""
    unit = WorkUnit("auto@step1", square_rows, ("auto@step1", 4), device="auto")
    ex = RayExecutor(progress=False)
    assert ex.gpus_available() == 0 and ex.task_options(unit)["num_gpus"] == 0
    got, rep = collect(ex, [unit])
    assert rep.ok and got["auto@step1"] == square_rows("auto@step1", 4)
    cuda = WorkUnit("cuda@step1", square_rows, ("cuda@step1", 4), device="cuda")
    with pytest.raises(ParameterError, match="no node of the Ray cluster"):
        ex.run([cuda], lambda u, r: None)
