"""The probe sweep: rows in the store, resume after kill -9, task-file errors, the CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ckpt_toolkit.errors import TaskFileError
from ckpt_toolkit.probes import run_probes
from ckpt_toolkit.store import KEY, ResultsStore
from ckpt_toolkit.tasks import write_task_file

ROOT = Path(__file__).resolve().parents[1]


def mc_items(n_train: int = 6, n_test: int = 8) -> list[dict]:
    items = []
    for i in range(n_train + n_test):
        a, b = i % 7 + 1, (3 * i) % 5 + 2
        items.append(
            {
                "context": f"Question: What is {a} plus {b}?\nAnswer:",
                "choices": [f" {a + b}", f" {a + b + 1}", f" {a * b} apples", " zero"],
                "gold": i % 4 if i % 3 else 0,
                "capability": "math",
                "split": "train" if i < n_train else "test",
            }
        )
    return items


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("probe_data")
    mc = write_task_file(d / "tasks" / "add.jsonl", mc_items())
    gen = write_task_file(
        d / "tasks" / "succ.jsonl",
        [
            {
                "context": f"{i} then",
                "gold": str(i + 1),
                "capability": "math",
                "split": "train" if i < 3 else "test",
            }
            for i in range(7)
        ],
    )
    held = d / "heldout"
    held.mkdir()
    docs = ["The capital of Avalon is Brill. " * k for k in (1, 4, 12)]
    (held / "wiki.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    (held / "code.txt").write_text("def add(a, b):\n    return a + b\n\n" * 5)
    return {"tasks": d / "tasks", "mc": mc, "gen": gen, "heldout": held}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, tiny_tokenizer) -> Path:
    """A trainer-style run: three checkpoint-N folders of different tiny random models."""
    from helpers import make_tiny_checkpoint

    run = tmp_path_factory.mktemp("runs") / "tiny-run"
    for seed, step in enumerate((10, 20, 30)):
        make_tiny_checkpoint(run / f"checkpoint-{step}", seed=seed, tokenizer=tiny_tokenizer)
    return run


def test_sweep_writes_documented_rows(tiny_checkpoint, probe_data, tmp_path):
    store = ResultsStore(tmp_path / "r.duckdb")
    rep = run_probes(
        str(tiny_checkpoint),
        store,
        tasks=probe_data["tasks"],
        heldout=probe_data["heldout"],
        shots=(0, 2),
        batch_size=4,
        progress=False,
    )
    assert rep.ok and rep.done and rep.rows_written > 0
    df = store.to_pandas()
    got = {(r.probe, r.task, r.metric, r.shots) for r in df.itertuples()}
    want = set()
    for dom in ("wiki", "code"):
        want |= {("ppl", dom, m, 0) for m in ("ppl", "loss", "bpb")}
        want |= {("sc_ppl", dom, m, 0) for m in ("sc_ppl", "sc_loss")}
    for k in (0, 2):
        want |= {("kshot", "add", m, k) for m in ("acc", "acc_norm", "gold_logprob", "bpb")}
        want.add(("kshot", "succ", "exact_match", k))
    assert got == want
    assert df.stderr.notna().all() and (df.value.apply(math.isfinite)).all()
    ppl = df[(df.probe == "ppl") & (df.task == "wiki")].set_index("metric")
    assert ppl.loc["ppl", "value"] == pytest.approx(math.exp(ppl.loc["loss", "value"]))
    assert set(df[df.probe == "ppl"].capability) == {"language_modeling"}
    acc = df[(df.task == "add") & (df.metric == "acc")].iloc[0]
    prov = json.loads(acc.provenance)
    assert prov["chance"] == pytest.approx(0.25) and prov["n_choices"] == 4
    assert prov["spec"]["task"] == "add" and prov["source"].endswith("add.jsonl")
    assert acc.capability == "math" and acc.n == 8
    assert acc.stderr == pytest.approx(math.sqrt(acc.value * (1 - acc.value) / 7))
    # checkpoint metadata is stored too
    assert list(store.checkpoints().checkpoint) == [acc.checkpoint]
    # a second run recomputes nothing
    again = run_probes(
        str(tiny_checkpoint),
        store,
        tasks=probe_data["tasks"],
        heldout=probe_data["heldout"],
        shots=(0, 2),
        progress=False,
    )
    assert again.done == [] and len(again.skipped) == 8 and len(store) == len(df)


def test_kshot_shots_are_seeded_and_fixed(tiny_checkpoint, probe_data, tmp_path):
    from ckpt_toolkit.probes import select_shots
    from ckpt_toolkit.tasks import load_task_file

    items = load_task_file(probe_data["mc"])
    a = select_shots("add", items, 3, seed=1234)
    assert a == select_shots("add", items, 3, seed=1234)
    assert all(it.split == "train" for it in a)
    with pytest.raises(TaskFileError, match="'train' items"):
        select_shots("add", items, 50, seed=1)


@pytest.mark.parametrize(
    "bad,match",
    [
        (
            {"context": "Q:", "choices": [" a", " b"], "capability": "x", "split": "test"},
            r"bad\.jsonl:2: missing required field\(s\) gold",
        ),
        (
            {
                "context": "Q:",
                "choices": [" a", " b"],
                "gold": 2,
                "capability": "x",
                "split": "test",
            },
            r"bad\.jsonl:2: 'gold' index 2 is out of range for 2 choices",
        ),
    ],
)
def test_task_file_errors_through_probe_path(tiny_checkpoint, tmp_path, bad, match):
    good = {"context": "Q:", "choices": [" a", " b"], "gold": 0, "capability": "x", "split": "test"}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(TaskFileError, match=match):
        run_probes(
            str(tiny_checkpoint), tmp_path / "r.duckdb", probes="kshot", tasks=path, progress=False
        )
    from ckpt_toolkit.cli import main

    assert (
        main(
            [
                "probe",
                str(tiny_checkpoint),
                "-p",
                "kshot",
                "-t",
                str(path),
                "-s",
                str(tmp_path / "r.duckdb"),
                "-q",
            ]
        )
        == 2
    )


SLOW_SWEEP = textwrap.dedent(
    """
    import sys, time, pathlib
    import ckpt_toolkit.probes.sweep as sw
    source, store, tasks, heldout, marker = sys.argv[1:6]
    original = sw.probe_checkpoint

    def slow(ref, *args, **kwargs):
        rows = original(ref, *args, **kwargs)
        if ref.step == 20:  # hang while this checkpoint is in flight: the test kills us here
            pathlib.Path(marker).write_text("in flight")
            time.sleep(120)
        return rows

    sw.probe_checkpoint = slow
    sw.run_probes(source, store, tasks=tasks, heldout=heldout, probes="ppl,kshot",
                  progress=False)
    """
)


def test_resume_after_kill_9(run_folder, probe_data, tmp_path):
    store_path = tmp_path / "r.duckdb"
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_SWEEP,
            str(run_folder),
            str(store_path),
            str(probe_data["mc"]),
            str(probe_data["heldout"]),
            str(marker),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.time() < deadline, "sweep never reached the second checkpoint"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = ResultsStore(store_path)
    first = store.to_pandas()
    assert set(first.checkpoint) == {"tiny-run@step10"}  # step20 was in flight: nothing of it
    per_ckpt = len(first)
    rep = run_probes(
        str(run_folder),
        store,
        tasks=probe_data["mc"],
        heldout=probe_data["heldout"],
        probes="ppl,kshot",
        progress=False,
    )
    assert rep.done == ["tiny-run@step20", "tiny-run@step30"]
    assert all(s.startswith("tiny-run@step10:") for s in rep.skipped)
    df = store.to_pandas()
    assert len(df) == 3 * per_ckpt
    assert not df.duplicated(list(KEY)).any()
    old = first.set_index(list(KEY)).created_at
    new = df[df.checkpoint == "tiny-run@step10"].set_index(list(KEY)).created_at
    assert (old.sort_index() == new.sort_index()).all()  # finished work was not redone


def test_cli_smoke(tiny_checkpoint, probe_data, tmp_path, capsys):
    from ckpt_toolkit.cli import main

    store = tmp_path / "cli.duckdb"
    args = [
        "probe",
        str(tiny_checkpoint),
        "--probes",
        "ppl,kshot",
        "--tasks",
        f"{probe_data['mc']},{probe_data['gen']}",
        "--heldout",
        str(probe_data["heldout"]),
        "--shots",
        "0,1",
        "--batch-size",
        "3",
        "--limit",
        "4",
        "--window",
        "64",
        "--store",
        str(store),
        "--quiet",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 done" in out
    df = ResultsStore(store).to_pandas()
    assert set(df.probe) == {"ppl", "kshot"} and set(df.shots) == {0, 1}
    assert (df[(df.task == "add")].n == 4).all()
    assert json.loads(df[df.probe == "ppl"].provenance.iloc[0])["window"] == 64
    assert main(args) == 0 and "0 done" in capsys.readouterr().out
    assert main(["probe", str(tiny_checkpoint), "--probes", "nope", "-s", str(store)]) == 2


def test_zoo_source_defaults_to_world_tasks_and_heldout(tiny_checkpoint, probe_data, tmp_path):
    import shutil

    zoo = tmp_path / "zoo"
    shutil.copytree(tiny_checkpoint, zoo / "runs" / "clm-s" / "checkpoint-10")
    shutil.copytree(probe_data["tasks"], zoo / "world" / "tasks")
    shutil.copytree(probe_data["heldout"], zoo / "world" / "heldout")
    (zoo / "manifest.csv").write_text(
        "run,objective,step,tokens,path\nclm-s,clm,10,5120,runs/clm-s/checkpoint-10\n"
    )
    store = ResultsStore(tmp_path / "zoo.duckdb")
    rep = run_probes(str(zoo), store, probes="ppl,kshot", progress=False)
    assert rep.ok and rep.done == ["clm-s@step10"]
    df = store.to_pandas()
    assert set(df.task) == {"add", "succ", "wiki", "code"}
    assert set(df.tokens) == {5120}
    assert store.checkpoints().config.iloc[0]["objective"] == "clm"


def test_too_few_train_items_skips_only_that_spec(tiny_checkpoint, probe_data, tmp_path):
    store = ResultsStore(tmp_path / "few.duckdb")
    with pytest.warns(UserWarning, match="kshot add at 7 shots skipped: only 6 train items"):
        rep = run_probes(
            str(tiny_checkpoint),
            store,
            probes="kshot",
            tasks=probe_data["mc"],
            shots=(0, 7),
            progress=False,
        )
    assert rep.ok
    assert set(store.to_pandas().shots) == {0}
