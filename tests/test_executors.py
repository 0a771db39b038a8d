"""get_executor and the LocalExecutor's retry/report semantics (shared with the Ray executor)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckpt_toolkit.errors import ParameterError
from ckpt_toolkit.executors import LocalExecutor, SweepReport, WorkUnit, get_executor


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
