"""get_executor and the LocalExecutor's retry/report semantics (shared with the Ray executor)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckpt_toolkit.errors import ParameterError
from ckpt_toolkit.executors import LocalExecutor, SweepReport, WorkUnit
from ckpt_toolkit.sweep import get_executor


def _flaky(path: str, fail_times: int) -> list[dict]:
    p = Path(path)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < fail_times:
        raise RuntimeError(f"attempt {n + 1} failed")
    return [{"attempts": n + 1}]


def test_get_executor_local_drops_none_and_rejects_ray_only_options():
    ex = get_executor("local", max_retries=None, address=None, num_gpus=None, progress=False)
    assert isinstance(ex, LocalExecutor) and ex.max_retries == 0
    with pytest.raises(ParameterError, match="--address: only with --executor ray"):
        get_executor("local", address="10.0.0.1:6379", num_gpus=1)
    with pytest.raises(ParameterError, match="--workers: only with --executor processes"):
        get_executor("local", workers=3)
    with pytest.raises(ParameterError, match="unknown local executor option"):
        get_executor("local", gpus=3)
    with pytest.raises(ParameterError, match="unknown executor 'dask'"):
        get_executor("dask")


def test_get_executor_ray_validates_options():
    pytest.importorskip("ray")
    from ckpt_toolkit.ray_executor import RayExecutor

    ex = get_executor("ray", address=None, num_cpus=2, num_gpus=None, memory="2GiB")
    assert isinstance(ex, RayExecutor) and ex.num_cpus == 2 and ex.memory == 2 * 2**30
    with pytest.raises(ParameterError, match="unknown ray executor option"):
        get_executor("ray", gpus=1)
    with pytest.raises(ParameterError, match="--max-retries must be an integer >= 0"):
        get_executor("ray", max_retries=-1)


def test_local_executor_retries_then_reports(tmp_path):
    units = [
        WorkUnit("flaky@step1", _flaky, (str(tmp_path / "a"), 1)),
        WorkUnit("broken@step2", _flaky, (str(tmp_path / "b"), 99)),
    ]
    got: dict[str, list] = {}
    report = LocalExecutor(max_retries=1, progress=False).run(
        units, lambda u, rows: got.__setitem__(u.key, rows)
    )
    assert got == {"flaky@step1": [{"attempts": 2}]}
    assert report.done == ["flaky@step1"] and list(report.failed) == ["broken@step2"]
    assert (tmp_path / "b").read_text() == "2"  # 1 attempt + 1 retry
    assert report.summary().endswith("FAILED broken@step2: RuntimeError: attempt 2 failed")
    assert not report.ok and SweepReport().ok


# -- unit functions for the worker-process tests (top level: spawned workers import them) ------
def _sleepy(seconds: float) -> list[dict]:
    import time

    time.sleep(seconds)
    return [{"slept": seconds}]


def _deaf_sleeper(seconds: float) -> list[dict]:
    """Ignores SIGALRM, so only the driver's hard deadline can stop it."""
    import signal
    import time

    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(seconds)
    return [{"slept": seconds}]


def _die_first_time(path: str) -> list[dict]:
    import os
    import signal

    p = Path(path)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return [{"attempts": n + 1, "pid": os.getpid()}]


def _threads_seen(tag: str) -> list[dict]:
    import os

    return [{"tag": tag, "omp": os.environ.get("OMP_NUM_THREADS")}]


# -- options ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option, value, flag",
    [
        ("timeout", -1, "--timeout must be a number > 0"),
        ("timeout", 0, "--timeout must be a number > 0"),
        ("max_retries", -1, "--max-retries must be an integer >= 0"),
        ("max_retries", 1.5, "--max-retries must be an integer >= 0"),
        ("num_cpus", -2, "--num-cpus must be a number > 0"),
        ("num_gpus", -0.5, "--num-gpus must be a number >= 0"),
        ("memory", "lots", "--memory: cannot read 'lots'"),
        ("memory", -5, "--memory must be positive"),
        ("workers", 0, "--workers must be an integer > 0"),
        ("threads", "many", "--threads must be 'auto' or a positive integer"),
    ],
)
def test_executor_options_name_the_bad_flag(option, value, flag):
    from ckpt_toolkit.executors import ExecutorOptions

    with pytest.raises(ParameterError, match=flag.replace("(", r"\(")):
        ExecutorOptions(**{option: value})
    for name in ("local", "processes"):
        with pytest.raises(ParameterError, match=flag.replace("(", r"\(")):
            get_executor(name, **{option: value})


def test_every_executor_takes_every_option():
    from ckpt_toolkit.executors import ExecutorOptions
    from ckpt_toolkit.process_executor import ProcessExecutor

    common = dict(max_retries=2, timeout=30, num_cpus=1, num_gpus=0, memory="1GiB", threads=1)
    ex = get_executor("local", **common)
    assert isinstance(ex, LocalExecutor) and ex.max_retries == 2 and ex.timeout == 30
    ex = get_executor("processes", workers=2, **common)
    assert isinstance(ex, ProcessExecutor) and ex.options.workers == 2
    assert ex.options.memory == 2**30
    assert ExecutorOptions(memory="2GB").memory == 2 * 10**9


def test_gpu_rule():
    from ckpt_toolkit.executors import gpus_for_device

    assert gpus_for_device("cuda") == 1 and gpus_for_device("cuda:1") == 1
    assert gpus_for_device("CUDA", gpus_available=0) == 1  # asked for explicitly
    assert gpus_for_device("auto", gpus_available=4) == 1
    assert gpus_for_device("auto", gpus_available=None) == 1  # cluster not known yet
    assert gpus_for_device("auto", gpus_available=0) == 0  # CPU-only: runs on CPU
    assert gpus_for_device("cpu") == 0 and gpus_for_device("mps") == 0
    assert gpus_for_device(None) == 0


def test_paper_preset_asks_for_a_gpu_and_user_value_wins(tmp_path):
    """Every paper-preset variant (device: auto) asks a GPU cluster for one GPU; on a CPU-only
    machine it asks for none; --num-gpus 0.5 overrides both."""
    from ckpt_toolkit.executors import Executor, ExecutorOptions
    from ckpt_toolkit.zoo import resolve_preset, resolve_variants
    from ckpt_toolkit.zoo.driver import variant_unit

    class FakeCluster(Executor):
        name = "local"

        def __init__(self, gpus, **opts):
            super().__init__(ExecutorOptions(**opts), progress=False)
            self._gpus = gpus

        def gpus_available(self):
            return self._gpus

    specs = resolve_variants(resolve_preset("paper"))
    assert {s["device"] for s in specs} == {"auto"}
    units = [variant_unit(s, tmp_path) for s in specs]
    assert {FakeCluster(8).request(u)["num_gpus"] for u in units} == {1}
    assert {FakeCluster(0).request(u)["num_gpus"] for u in units} == {0}
    assert {FakeCluster(8, num_gpus=0.5).request(u)["num_gpus"] for u in units} == {0.5}
    assert {FakeCluster(8).request(u)["num_cpus"] for u in units} == {1}  # the preset's threads

    ray = pytest.importorskip("ray")
    from ckpt_toolkit.ray_executor import RayExecutor

    if not ray.is_initialized():  # before connecting the cluster is unknown: ask for the GPU
        assert RayExecutor(progress=False).task_options(units[0])["num_gpus"] == 1


def test_local_executor_refuses_a_gpu_it_does_not_have(monkeypatch):
    import ckpt_toolkit.executors as ex_mod

    monkeypatch.setattr(ex_mod, "local_gpu_count", lambda: 0)
    unit = WorkUnit("a@step1", _sleepy, (0,), device="cuda")
    with pytest.raises(ParameterError, match="asks for num_gpus=1 but this machine has 0"):
        LocalExecutor(progress=False).run([unit], lambda u, r: None)
    # device auto on a CPU-only machine runs on the CPU
    unit = WorkUnit("a@step1", _sleepy, (0,), device="auto")
    rep = LocalExecutor(progress=False).run([unit], lambda u, r: None)
    assert rep.ok
    # nor more CPUs than this process may use (it would oversubscribe them)
    unit = WorkUnit("big@step1", _sleepy, (0,), resources={"num_cpus": 10_000})
    with pytest.raises(ParameterError, match=r"asks for 10000 CPUs \(--num-cpus / --threads\)"):
        LocalExecutor(progress=False).run([unit], lambda u, r: None)


# -- timeouts and retries ---------------------------------------------------------------------
def test_local_timeout_fails_the_attempt_and_retries(tmp_path):
    import time

    t0 = time.monotonic()
    rep = get_executor("local", timeout=0.3, max_retries=1, progress=False).run(
        [WorkUnit("slow@step1", _sleepy, (5,)), WorkUnit("quick@step1", _sleepy, (0,))],
        lambda u, r: None,
    )
    assert time.monotonic() - t0 < 3  # two attempts of 0.3 s, not 10 s
    assert rep.done == ["quick@step1"]
    assert "UnitTimeoutError: slow@step1: timed out after 0.3 s" in rep.summary()


def test_processes_executor_retries_crashes_and_exceptions(tmp_path):
    from ckpt_toolkit.process_executor import ProcessExecutor

    units = [
        WorkUnit("flaky@step1", _flaky, (str(tmp_path / "a"), 1)),
        WorkUnit("crashy@step1", _die_first_time, (str(tmp_path / "c"),)),
        WorkUnit("broken@step2", _flaky, (str(tmp_path / "b"), 99)),
    ]
    got: dict[str, list] = {}
    ex = ProcessExecutor(workers=2, max_retries=1, threads=1, progress=False)
    rep = ex.run(units, lambda u, rows: got.__setitem__(u.key, rows))
    assert sorted(rep.done) == ["crashy@step1", "flaky@step1"]
    assert list(rep.failed) == ["broken@step2"]
    assert got["flaky@step1"] == [{"attempts": 2}]
    assert got["crashy@step1"][0]["attempts"] == 2  # a fresh worker re-ran it
    assert (tmp_path / "b").read_text() == "2"  # 1 attempt + 1 retry
    assert rep.summary().endswith("FAILED broken@step2: RuntimeError: attempt 2 failed")

    # without retries the crash is reported under the unit's key
    rep = ProcessExecutor(workers=1, progress=False).run(
        [WorkUnit("crashy@step1", _die_first_time, (str(tmp_path / "c2"),))], lambda u, r: None
    )
    assert "WorkerDiedError" in rep.failed["crashy@step1"]


def test_processes_timeout_soft_and_hard(monkeypatch):
    import time

    import ckpt_toolkit.process_executor as pe

    monkeypatch.setattr(pe, "KILL_GRACE_S", 0.5)
    t0 = time.monotonic()
    rep = pe.ProcessExecutor(workers=2, timeout=1, threads=1, progress=False).run(
        [
            WorkUnit("slow", _sleepy, (30,)),  # its SIGALRM timer stops it
            WorkUnit("deaf", _deaf_sleeper, (30,)),  # killed by the driver at 1 + 0.5 s
            WorkUnit("quick", _sleepy, (0,)),
        ],
        lambda u, r: None,
    )
    assert time.monotonic() - t0 < 20
    assert rep.done == ["quick"]
    assert "UnitTimeoutError: slow: timed out after 1 s" in rep.summary()
    assert "deaf: timed out after 1 s (--timeout); worker killed" in rep.summary()


def test_plan_workers_never_oversubscribes():
    from ckpt_toolkit.process_executor import plan_workers

    assert plan_workers(8, cores=2, threads=1) == 2
    assert plan_workers(8, cores=2, threads=1, workers=4) == 2  # 4 asked, 2 cores
    assert plan_workers(8, cores=1, threads=1, workers=2) == 1  # one core taken by others
    assert plan_workers(8, cores=2, threads=2) == 1
    assert plan_workers(1, cores=16, threads=1) == 1  # never more workers than units
    assert plan_workers(8, cores=16, threads=2, num_gpus=1, gpus=2) == 2
    assert plan_workers(8, cores=16, threads=1, num_gpus=0.25, gpus=1) == 4
    assert plan_workers(8, cores=16, threads=1, memory=4 * 2**30, available=10 * 2**30) == 2


def test_processes_workers_get_the_planned_threads(monkeypatch):
    import ckpt_toolkit.process_executor as pe

    monkeypatch.setattr(pe.ProcessExecutor, "plan", lambda self, units: (2, 1))
    got: dict[str, list] = {}
    rep = pe.ProcessExecutor(progress=False).run(
        [WorkUnit(t, _threads_seen, (t,)) for t in ("a", "b", "c")],
        lambda u, rows: got.__setitem__(u.key, rows),
    )
    assert rep.ok and {k: v[0]["omp"] for k, v in got.items()} == {"a": "1", "b": "1", "c": "1"}


# -- the CLI validates executor options before loading anything ------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--timeout", "-1"], "--timeout must be a number > 0, got -1"),
        (["--max-retries", "-1"], "--max-retries must be an integer >= 0, got -1"),
        (["--num-cpus", "-1"], "--num-cpus must be a number > 0"),
        (["--num-gpus", "-1"], "--num-gpus must be a number >= 0"),
        (["--memory", "lots"], "--memory: cannot read 'lots'"),
        (["--threads", "0"], "--threads must be 'auto' or a positive integer"),
        (["--executor", "dask"], "--executor: unknown executor 'dask'"),
        (["--address", "10.0.0.1:6379"], "--address: only with --executor ray"),
    ],
)
@pytest.mark.parametrize("command", [["probe"], ["finetune"], ["zoo", "train"]])
def test_cli_rejects_bad_executor_options_first(command, args, message, tmp_path, capsys):
    """The source does not exist: an error about the option proves it was checked first."""
    from ckpt_toolkit.cli import main

    if command == ["zoo", "train"]:
        if args[0] == "--executor":
            args = ["--executor", "dask"]
        argv = [*command, "--preset", "smoke", "--out", str(tmp_path / "zoo"), *args]
    else:
        argv = [*command, str(tmp_path / "missing"), "--store", str(tmp_path / "s.duckdb"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "zoo").exists() and not (tmp_path / "s.duckdb").exists()


# -- the zoo honours --max-retries (through the processes executor) ---------------------------
def flaky_train_variant(spec: dict, out_dir: str) -> list[dict]:
    """Fails the first attempt of each variant, then trains it for real."""
    import os

    from ckpt_toolkit.zoo.train import train_variant

    marker = Path(os.environ["CKPT_TEST_FLAKY_DIR"]) / spec["run"]
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError(f"{spec['run']}: simulated failure")
    return train_variant(spec, out_dir)


@pytest.mark.slow
def test_zoo_train_max_retries_retries(tmp_path, monkeypatch, capsys):
    import yaml

    import ckpt_toolkit.zoo.driver as driver
    from ckpt_toolkit.cli import main

    monkeypatch.setattr(driver, "train_variant", flaky_train_variant)
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    monkeypatch.setenv("CKPT_TEST_FLAKY_DIR", str(flaky))
    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump({"defaults": {"steps": 2, "n_checkpoints": 1}}))
    base = ["zoo", "train", "--preset", "smoke", "--overrides", str(over), "-q"]
    base += ["--runs", "clm-xs,span-xs", "--workers", "2", "--threads", "1"]

    # without retries the first failure is final
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "clm-xs: simulated failure" in capsys.readouterr().err
    for f in flaky.iterdir():
        f.unlink()
    # with --max-retries 2 each variant fails once, is retried and finishes
    assert main([*base, "--out", str(tmp_path / "b"), "--max-retries", "2"]) == 0
    manifest = (tmp_path / "b" / "manifest.csv").read_text()
    assert "clm-xs" in manifest and "span-xs" in manifest
    assert sorted(f.name for f in flaky.iterdir()) == ["clm-xs", "span-xs"]


def _torch_threads() -> list[dict]:
    import torch

    return [{"threads": torch.get_num_threads()}]


def test_local_executor_threads_follow_the_policy_per_unit(monkeypatch):
    """auto: the policy's answer for each unit (the sweep's 1-CPU proposal is for Ray, not a
    cap); --num-cpus caps it; --threads N is used as given; torch's count is restored after."""
    torch = pytest.importorskip("torch")
    from ckpt_toolkit.threads import CpuBudget, LoadMonitor

    monkeypatch.delenv("CKPT_THREADS", raising=False)  # conftest pins it for the other tests
    budgets = iter([CpuBudget(2, None, 0.0), CpuBudget(2, None, 1.0)])  # idle, then one busy
    monkeypatch.setattr(LoadMonitor, "budget", lambda self: next(budgets))
    before = torch.get_num_threads()
    units = [WorkUnit(k, _torch_threads, resources={"num_cpus": 1}) for k in ("a", "b")]
    got: dict[str, int] = {}

    def keep(unit, rows):
        got[unit.key] = rows[0]["threads"]

    LocalExecutor(progress=False).run(units, keep)
    assert got == {"a": 2, "b": 1}
    assert torch.get_num_threads() == before
    budgets = iter([CpuBudget(4, None, 0.0)] * 2)
    get_executor("local", num_cpus=1, progress=False).run(units, keep)
    assert got == {"a": 1, "b": 1}  # 4 free cores, capped by --num-cpus 1
    get_executor("local", threads=2, progress=False).run(units, keep)
    assert got == {"a": 2, "b": 2}
    assert torch.get_num_threads() == before


def test_small_models_are_not_split_across_threads(monkeypatch):
    """A unit's max_threads (a model too small to split) caps the automatic choice on an idle
    machine, never an explicit --threads; probe and fine-tune units of a zoo checkpoint carry
    it from the manifest's parameter count."""
    pytest.importorskip("torch")
    from ckpt_toolkit.threads import CpuBudget, LoadMonitor, useful_threads

    monkeypatch.delenv("CKPT_THREADS", raising=False)
    monkeypatch.setattr(LoadMonitor, "budget", lambda self: CpuBudget(2, None, 0.0))
    units = [
        WorkUnit("tiny", _torch_threads, max_threads=useful_threads(935_040)),
        WorkUnit("large", _torch_threads, max_threads=useful_threads(134_515_008)),
        WorkUnit("unknown", _torch_threads, max_threads=useful_threads(None)),
    ]
    got: dict[str, int] = {}

    def keep(unit, rows):
        got[unit.key] = rows[0]["threads"]

    LocalExecutor(progress=False).run(units, keep)
    assert got == {"tiny": 1, "large": 2, "unknown": 2}
    get_executor("local", threads=2, progress=False).run(units, keep)
    assert got == {"tiny": 2, "large": 2, "unknown": 2}


def test_probe_and_finetune_units_carry_the_model_size(smoke_zoo, tmp_path, monkeypatch):
    import ckpt_toolkit.finetune.runner as ft
    import ckpt_toolkit.probes.sweep as ps
    from ckpt_toolkit.checkpoints import resolve_source

    seen: list[tuple[str, int | None]] = []

    def record(runner, units, writer, report):
        seen.extend((u.fn.__name__, u.max_threads) for u in units)

    monkeypatch.setattr(ps, "run_sweep", record)
    monkeypatch.setattr(ft, "run_sweep", record)
    refs = [r for r in resolve_source(str(smoke_zoo)) if r.run == "clm-xs"][-1:]
    assert refs[0].params and refs[0].params < 2_000_000
    ps.run_probes(refs, tmp_path / "p.duckdb", probes="ppl", progress=False)
    ft.run_finetune(refs, tmp_path / "f.duckdb", progress=False)
    assert seen and all(n == 1 for _, n in seen)
    assert {name for name, _ in seen} == {"probe_checkpoint", "finetune_unit"}


# -- a real sweep in worker processes ---------------------------------------------------------
@pytest.mark.slow
def test_probe_sweep_in_worker_processes_matches_local(smoke_zoo, tmp_path):
    """The same probe rows from ``--executor processes`` as from the in-process executor."""
    import pandas as pd

    from ckpt_toolkit.checkpoints import resolve_source
    from ckpt_toolkit.probes import run_probes
    from ckpt_toolkit.store import ResultsStore

    last: dict = {}
    for ref in resolve_source(str(smoke_zoo)):
        last[ref.run] = ref
    refs = [last[r] for r in sorted(last)[:2]]

    def sweep(name: str, **opts):
        store = tmp_path / f"{name}.duckdb"
        rep = run_probes(
            refs, store, probes="ppl,kshot", limit=2, executor=name, executor_options=opts,
            threads=1, progress=False,
        )  # fmt: skip
        assert rep.ok and sorted(rep.done) == sorted(r.name for r in refs), rep.summary()
        df = ResultsStore(store).to_pandas().drop(columns=["created_at", "provenance"])
        return df.sort_values(["checkpoint", "probe", "task", "metric", "shots"]).reset_index(
            drop=True
        )

    local, procs = sweep("local"), sweep("processes", workers=2)
    assert len(local) > 0 and set(local["probe"]) == {"ppl", "kshot"}
    pd.testing.assert_frame_equal(local, procs, check_exact=True)


def test_demo_rejects_bad_threads_before_training(tmp_path, capsys):
    from ckpt_toolkit.cli import main

    argv = ["demo", "--threads", "0", "--zoo", str(tmp_path / "zoo")]
    argv += ["--store", str(tmp_path / "s.duckdb"), "--reports", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "--threads must be 'auto' or a positive integer, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()


@pytest.mark.parametrize("name", ["local", "processes"])
def test_sweep_refuses_repeated_unit_keys_before_running(name, tmp_path):
    """Results are matched to units by key: a repeated key is an error for every executor,
    raised before any unit runs."""
    from ckpt_toolkit.errors import ParameterError
    from ckpt_toolkit.sweep import run_sweep

    marker = tmp_path / "ran"
    units = [WorkUnit("a", marker.touch), WorkUnit("b", marker.touch), WorkUnit("a", marker.touch)]
    with pytest.raises(ParameterError, match=r"unique; repeated: \['a'\]"):
        run_sweep(get_executor(name, progress=False), units, lambda unit, rows: 0)
    assert not marker.exists()
