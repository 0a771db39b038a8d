"""The SFT runner: spec, answer-only loss, fine-tuning raises the score, resumable sweep, CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from ckpt_toolkit.checkpoints import CheckpointRef, load_checkpoint
from ckpt_toolkit.cli import main
from ckpt_toolkit.errors import ParameterError
from ckpt_toolkit.finetune import (
    build_sft_tasks,
    evaluate_items,
    load_spec,
    run_finetune,
    sft_spec_hash,
)
from ckpt_toolkit.finetune.runner import select_checkpoints
from ckpt_toolkit.finetune.train import IGNORE, encode_example
from ckpt_toolkit.probes.engine import encode_pair
from ckpt_toolkit.store import ResultsStore
from ckpt_toolkit.tasks import load_tasks, write_task_file

#: a strong learning rate for the random-init test model (the shipped default suits pretrained ones)
FAST_SPEC = {"lr": 0.01, "max_steps": 40}


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def easy_tasks(tmp_path_factory) -> Path:
    """Two capabilities: 'knowledge' = two multiple-choice datasets whose gold is always the same
    word (learnable by SFT, near chance before), 'math' = one generation dataset (gold '7')."""
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("sft_tasks")
    names = ["Brill", "Tom", "Mira", "Esk"]

    def mc(task, gold, pool, question):
        out = []
        for split, n in (("train", 48), ("test", 24)):
            for i in range(n):
                ch = [gold] + rng.sample(pool, 3)
                rng.shuffle(ch)
                out.append(
                    dict(
                        id=f"{task}-{split}-{i}",
                        task=task,
                        capability="knowledge",
                        split=split,
                        context=question.format(rng.choice(names)),
                        choices=ch,
                        gold=ch.index(gold),
                    )
                )
        return out

    write_task_file(
        folder / "where.jsonl",
        mc(
            "where",
            " Brill",
            [" Tom", " ball", " box", " river"],
            "Question: Where does {} live?\nAnswer:",
        ),
    )
    write_task_file(
        folder / "what.jsonl",
        mc(
            "what",
            " box",
            [" Esk", " red", " Tom", " river"],
            "Question: What did {} hold?\nAnswer:",
        ),
    )
    gen = [
        dict(
            id=f"sum-{s}-{i}",
            task="sum",
            capability="math",
            split=s,
            context=f"Question: What is {rng.randint(0, 9)} plus zero?\nAnswer:",
            gold="7",
        )
        for s, n in (("train", 48), ("test", 16))
        for i in range(n)
    ]
    write_task_file(folder / "sum.jsonl", gen)
    return folder


def test_spec_defaults_validation_and_hash(tmp_path):
    spec = load_spec()
    assert spec["max_steps"] >= 1 and 0 < spec["lr"] < 1 and spec["append_eos"] is True
    y = tmp_path / "s.yaml"
    y.write_text(yaml.safe_dump({"lr": 0.005, "max_steps": 3}))
    over = load_spec(y)
    assert (
        over["lr"] == 0.005 and over["max_steps"] == 3 and over["batch_size"] == spec["batch_size"]
    )
    assert sft_spec_hash(over) != sft_spec_hash(spec)
    with pytest.raises(ParameterError, match="'learning_rate'"):
        load_spec({"learning_rate": 1})
    with pytest.raises(ParameterError, match="'max_steps'"):
        load_spec({"max_steps": "ten"})
    with pytest.raises(ParameterError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


def test_loss_is_on_answer_tokens_only(tiny_checkpoint, easy_tasks):
    _, tok = load_checkpoint(tiny_checkpoint)
    item = load_tasks(easy_tasks / "where.jsonl")["where"][0]
    ctx, ans = encode_pair(tok, item.context, item.answer)
    ids, labels = encode_example(tok, item, max_length=128, append_eos=True)
    assert ids == ctx + ans + [tok.eos_token_id]
    assert labels == [IGNORE] * len(ctx) + ans + [tok.eos_token_id]
    ids, labels = encode_example(tok, item, max_length=5, append_eos=False)  # context cut left
    assert (
        len(ids) == 5
        and ids[-len(ans) :] == ans
        and labels[: 5 - len(ans)] == [IGNORE] * (5 - len(ans))
    )


def test_sft_tasks_group_capabilities_into_datasets(easy_tasks):
    tasks = build_sft_tasks(load_tasks(easy_tasks))
    assert sorted(tasks) == ["knowledge", "math"]
    assert sorted(tasks["knowledge"].datasets) == ["what", "where"]
    by_task = build_sft_tasks(load_tasks(easy_tasks), group_by="task")
    assert sorted(by_task) == ["sum", "what", "where"] and by_task["sum"].capability == "math"


def test_select_checkpoints():
    refs = [CheckpointRef(path="x", run=r, step=s) for r in ("a", "b") for s in (30, 10, 20)]
    assert sorted(r.name for r in select_checkpoints(refs, "final")) == ["a@step30", "b@step30"]
    assert sorted(r.step for r in select_checkpoints(refs, "last:2")) == [20, 20, 30, 30]
    assert len(select_checkpoints(refs, "all")) == 6
    with pytest.raises(ParameterError, match="last:N"):
        select_checkpoints(refs, "last:x")


def test_finetuning_raises_the_score_and_resumes(tiny_checkpoint, easy_tasks, tmp_path):
    spec = load_spec(FAST_SPEC)
    model, tok = load_checkpoint(tiny_checkpoint)
    tasks = load_tasks(easy_tasks)
    before = {
        t: evaluate_items(model, tok, [i for i in items if i.split == "test"], spec)[0]
        for t, items in tasks.items()
    }
    del model
    store = ResultsStore(tmp_path / "s.duckdb")
    rep = run_finetune(
        str(tiny_checkpoint), store, tasks=easy_tasks, spec=FAST_SPEC, progress=False
    )
    assert rep.ok and len(rep.done) == 2 and not rep.skipped
    df = store.to_pandas(probe="sft")
    val = {(r.task, r.metric): r.value for r in df.itertuples()}
    # the task score is the mean over its datasets
    assert val[("knowledge", "score")] == pytest.approx(
        (val[("knowledge/where", "acc")] + val[("knowledge/what", "acc")]) / 2
    )
    assert val[("math", "score")] == val[("math/sum", "acc")]
    # fine-tuning learns the easy tasks: well above the un-fine-tuned model
    for d, task in (("where", "knowledge"), ("what", "knowledge"), ("sum", "math")):
        assert val[(f"{task}/{d}", "acc")] >= 0.9 > before[d] + 0.3
    assert set(df["capability"]) == {"knowledge", "math"}
    assert (df["shots"] == 0).all() and df["fingerprint"].notna().all()
    prov = json.loads(df["provenance"].iloc[0])
    assert prov["sft_spec_hash"] == sft_spec_hash(spec) and prov["spec"]["lr"] == 0.01
    assert prov["final_loss"] < prov["first_loss"]
    assert len(store.checkpoints()) == 1
    # resumable: the same (fingerprint, spec_hash) is skipped
    rep2 = run_finetune(
        str(tiny_checkpoint), store, tasks=easy_tasks, spec=FAST_SPEC, progress=False
    )
    assert not rep2.done and sorted(rep2.skipped) == [
        f"{tiny_checkpoint.name}@final:knowledge",
        f"{tiny_checkpoint.name}@final:math",
    ]


def test_cli_finetune(tiny_checkpoint, easy_tasks, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"max_steps": 2, "max_test_items": 4}))
    st = tmp_path / "c.duckdb"
    rc = main(
        [
            "finetune",
            str(tiny_checkpoint),
            "--store",
            str(st),
            "--tasks",
            str(easy_tasks),
            "--spec",
            str(spec),
            "--only",
            "math",
            "--no-progress",
        ]
    )
    assert rc == 0
    df = ResultsStore(st).to_pandas(probe="sft")
    assert set(df["task"]) == {"math", "math/sum"}
    assert df.loc[df.metric == "acc", "n"].iloc[0] == 4
    assert (
        main(
            [
                "finetune",
                str(tiny_checkpoint),
                "--store",
                str(st),
                "--tasks",
                str(easy_tasks),
                "--only",
                "nope",
                "--no-progress",
            ]
        )
        == 2
    )


def test_seeds_average_per_item_correctness(tiny_checkpoint, easy_tasks):
    """With seeds=2 each item's correctness is its mean over two fine-tunes (seeds 0 and 1, both
    from the checkpoint's weights) and the stderr is that of the mean over items."""
    import math

    import numpy as np

    from ckpt_toolkit.finetune import finetune_and_score, finetune_model
    from ckpt_toolkit.finetune.train import item_correct

    tasks = load_tasks(easy_tasks)
    train = [i for i in tasks["where"] if i.split == "train"]
    test = {"where": [i for i in tasks["where"] if i.split == "test"]}
    spec = load_spec({**FAST_SPEC, "max_steps": 4, "seeds": 2})
    expected = []
    for seed in (0, 1):  # each seed by hand, from a fresh load of the checkpoint
        model, tok = load_checkpoint(tiny_checkpoint)
        finetune_model(model, tok, train, {**spec, "seed": seed})
        expected.append(item_correct(model, tok, test["where"], spec))
    per_item = np.mean(np.array(expected), axis=0)
    model, tok = load_checkpoint(tiny_checkpoint)
    stats, per = finetune_and_score(model, tok, train, test, spec)
    acc, se, n = per["where"]
    assert stats["seeds"] == [0, 1] and n == len(test["where"])
    assert acc == pytest.approx(per_item.mean())
    assert se == pytest.approx(per_item.std(ddof=1) / math.sqrt(n))
    with pytest.raises(ParameterError, match="'seeds'"):
        load_spec({"seeds": 0})
