"""End to end on the smoke zoo: probe → fine-tune (ground truth) → `ckpt pairwise --store`."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from ckpt_toolkit.checkpoints import resolve_source
from ckpt_toolkit.cli import main
from ckpt_toolkit.finetune import run_finetune
from ckpt_toolkit.finetune.runner import select_checkpoints
from ckpt_toolkit.store import ResultsStore


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_smoke_zoo_finetune_then_pairwise(smoke_zoo, tmp_path):
    zoo = smoke_zoo.parent
    world = json.loads((zoo / "world" / "world.json").read_text())
    caps: dict[str, list[str]] = world["capabilities"]
    store = ResultsStore(tmp_path / "zoo.duckdb")
    t0 = time.perf_counter()
    # a shorter fine-tune than the default spec keeps the suite fast (the flow is what is tested)
    rep = run_finetune(
        smoke_zoo, store, checkpoints="final", spec={"max_steps": 20}, progress=False
    )
    seconds = time.perf_counter() - t0
    finals = select_checkpoints(resolve_source(smoke_zoo), "final")
    assert rep.ok and len(rep.done) == len(finals) * len(caps)
    print(f"smoke zoo SFT: {len(rep.done)} units in {seconds:.1f}s")
    df = store.to_pandas(probe="sft")
    score = df[df.metric == "score"]
    assert set(score["task"]) == set(caps)
    assert set(score["checkpoint"]) == {r.name for r in finals}
    assert score["value"].between(0, 1).all()
    for cap, tasks in caps.items():  # the score is the mean over the capability's datasets
        for ck in finals:
            acc = df[(df.checkpoint == ck.name) & (df.metric == "acc")]
            acc = acc[acc.task.str.startswith(f"{cap}/")]
            assert sorted(acc.task) == sorted(f"{cap}/{t}" for t in tasks)
            s = score[(score.checkpoint == ck.name) & (score.task == cap)]["value"].iloc[0]
            assert s == pytest.approx(acc["value"].mean())

    # proxies for the same final checkpoints, then the pairwise analysis on the store
    from ckpt_toolkit.probes.sweep import run_probes

    run_probes(finals, store, probes=("ppl", "kshot"), shots=0, progress=False)
    out = tmp_path / "pw"
    rc = main(["pairwise", "--store", str(store.path), "--splits", "2", "--n-boot", "20",
               "--no-transfer", "--out", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0
    acc = pd.read_csv(out / "proxy_accuracy.csv")
    assert set(acc["target"]) == {f"sft:{c}" for c in caps}
    assert {"inv_ppl", "kshot_acc"} <= set(acc["proxy"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_models_used"] == len(finals)
