"""``run_probes(..., executor="ray")`` on tiny real checkpoints: the same rows as a local sweep,
and a worker SIGKILLed mid-task is retried (the kill comes from outside, as an OOM killer would).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from helpers import make_tiny_checkpoint  # noqa: E402
from test_ray_executor import ray_cluster  # noqa: E402,F401  (the shared session cluster)

from ckpt_toolkit.probes import run_probes  # noqa: E402
from ckpt_toolkit.store import ResultsStore  # noqa: E402

#: columns that legitimately differ between two runs of the same measurement
VOLATILE = ["created_at", "provenance"]


@pytest.fixture(scope="module")
def probe_inputs(tmp_path_factory, tiny_tokenizer):
    """Three tiny checkpoints of one run, a held-out domain and a 4-choice task."""
    root = tmp_path_factory.mktemp("ray_probe")
    for i, step in enumerate((10, 20, 40)):
        make_tiny_checkpoint(root / "run" / f"checkpoint-{step}", seed=i, tokenizer=tiny_tokenizer)
    heldout = root / "heldout"
    heldout.mkdir()
    with (heldout / "wiki.jsonl").open("w") as fh:
        for text in ("The river Esk flows through Brill.", "Tom put the ball in the box."):
            fh.write(json.dumps({"text": text}) + "\n")
    tasks = root / "capitals.jsonl"
    with tasks.open("w") as fh:
        for i, (city, wrong) in enumerate([("Brill", "Cato"), ("Esk", "Dun"), ("Avo", "Tem")]):
            item = {
                "context": f"Question {i}: the capital is",
                "choices": [f" {city}", f" {wrong}"],
                "gold": 0,
                "capability": "world_knowledge",
                "split": "test",
            }
            fh.write(json.dumps(item) + "\n")
    return root / "run", heldout, tasks


def _sweep(inputs, store: Path, executor: str, **options):
    source, heldout, tasks = inputs
    return run_probes(
        str(source),
        store,
        probes="ppl,kshot",
        tasks=str(tasks),
        heldout=str(heldout),
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
                if cmd.startswith(self.key) and proc.pid != os.getpid():
                    try:
                        os.kill(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    self.killed.append(proc.pid)
                    break
            time.sleep(0.005)


def test_ray_probe_rows_match_local_and_survive_a_killed_worker(
    ray_cluster,  # noqa: F811
    probe_inputs,
    tmp_path,
):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as a 1-CPU Ray task
    try:
        local = _sweep(probe_inputs, tmp_path / "local.duckdb", "local")
    finally:
        torch.set_num_threads(threads)
    assert local.ok, local.summary()

    killer = _Killer("run@step20")
    killer.start()
    try:
        remote = _sweep(probe_inputs, tmp_path / "ray.duckdb", "ray", max_retries=1)
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed, "the worker running run@step20 was never seen (nothing was killed)"
    assert remote.ok, remote.summary()
    assert sorted(remote.done) == ["run@step10", "run@step20", "run@step40"]

    a, b = _table(tmp_path / "local.duckdb"), _table(tmp_path / "ray.duckdb")
    assert len(a) > 0 and set(a["probe"]) == {"ppl", "kshot"}
    # row for row, the same numbers (exact: same code, same 1-thread arithmetic)
    assert a.to_dict("records") == b.to_dict("records")

    # resume: rerunning on Ray finds everything in the store and submits nothing
    again = _sweep(probe_inputs, tmp_path / "ray.duckdb", "ray", max_retries=1)
    assert again.done == [] and again.ok
    assert len(again.skipped) == len(set(zip(a["checkpoint"], a["spec_hash"], strict=True)))
