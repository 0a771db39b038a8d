"""``run_probes(..., executor="ray")`` on the smoke zoo (real trained checkpoints, the world's
tasks and held-out text): the same rows as a local sweep, and a worker SIGKILLed mid-task (from
outside, as an OOM killer would) is retried.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from test_ray_executor import ray_cluster  # noqa: E402,F401  (the shared session cluster)

from ckpt_toolkit.probes import run_probes  # noqa: E402
from ckpt_toolkit.store import ResultsStore  # noqa: E402

#: columns that legitimately differ between two runs of the same measurement
VOLATILE = ["created_at", "provenance"]


@pytest.fixture(scope="module")
def zoo_refs(smoke_zoo):
    """The final checkpoint of three smoke-zoo variants (with their world's tasks and text)."""
    from ckpt_toolkit.checkpoints import resolve_source

    last: dict = {}
    for ref in resolve_source(str(smoke_zoo)):  # sorted by (run, step)
        last[ref.run] = ref
    assert len(last) >= 3, sorted(last)
    return [last[run] for run in sorted(last)[:3]]


def _sweep(refs, store: Path, executor: str, **options):
    return run_probes(
        refs,
        store,
        probes="ppl,sc_ppl,kshot",
        limit=2,
        executor=executor,
        executor_options=options or None,
        progress=False,
    )


def _table(store: Path):
    df = ResultsStore(store).to_pandas().drop(columns=VOLATILE)
    return df.sort_values(["checkpoint", "probe", "task", "metric", "shots"]).reset_index(drop=True)


class _Killer(threading.Thread):
    """SIGKILL the first Ray worker process seen running the task named ``key``."""

    def __init__(self, key: str, timeout: float = 120.0):
        super().__init__(daemon=True)
        self.key, self.timeout, self.killed = f"ray::{key}", timeout, []
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.time()
        while not self.stop.is_set() and not self.killed and time.time() - t0 < self.timeout:
            for proc in psutil.process_iter(["cmdline"]):
                cmd = " ".join(proc.info.get("cmdline") or [])
                # the worker's process title while it runs the task: "ray::<task name>"
                exact = cmd == self.key or cmd.startswith((self.key + " ", self.key + "("))
                if exact and proc.pid != os.getpid():
                    try:
                        os.kill(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    self.killed.append(proc.pid)
                    break
            time.sleep(0.02)


def test_ray_probe_rows_match_local_and_survive_a_killed_worker(
    ray_cluster,  # noqa: F811
    zoo_refs,
    tmp_path,
):
    # one thread: the same arithmetic as a 1-CPU Ray task
    local = _sweep(zoo_refs, tmp_path / "local.duckdb", "local", threads=1)
    assert local.ok, local.summary()

    victim = zoo_refs[1].name
    killer = _Killer(victim)
    killer.start()
    try:
        remote = _sweep(zoo_refs, tmp_path / "ray.duckdb", "ray", max_retries=1)
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed, f"the worker running {victim} was never seen (nothing was killed)"
    assert remote.ok, remote.summary()
    assert sorted(remote.done) == sorted(r.name for r in zoo_refs)

    a, b = _table(tmp_path / "local.duckdb"), _table(tmp_path / "ray.duckdb")
    assert len(a) > 0 and set(a["probe"]) == {"ppl", "sc_ppl", "kshot"}
    # row for row, the same numbers (exact: same code, same 1-thread arithmetic)
    pd.testing.assert_frame_equal(a, b, check_exact=True)

    # resume: rerunning on Ray finds everything in the store and submits nothing
    again = _sweep(zoo_refs, tmp_path / "ray.duckdb", "ray", max_retries=1)
    assert again.done == [] and again.ok
    assert len(again.skipped) == len(set(zip(a["checkpoint"], a["spec_hash"], strict=True)))
