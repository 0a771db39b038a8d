"""The `ckpt` command: checkpoints list/verify, export, YAML config with CLI overrides."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_tiny_checkpoint

from ckpt_toolkit.cli import main
from ckpt_toolkit.store import ResultsStore


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    root = tmp_path_factory.mktemp("cli") / "runA"
    for step in (5, 50):
        make_tiny_checkpoint(root / f"checkpoint-{step}", seed=step, tokenizer=tiny_tokenizer)
    return root


def test_help_on_every_subcommand():
    out = subprocess.run(
        [sys.executable, "-m", "ckpt_toolkit.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for cmd in ("checkpoints", "export"):
        assert cmd in out
    for args in (["checkpoints", "list", "--help"], ["export", "--help"]):
        assert main(args) == 0


def test_checkpoints_list_trainer_folder(run_dir, capsys):
    assert main(["checkpoints", "list", str(run_dir), "--tokens-per-step", "1000", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["checkpoint"], r["step"], r["tokens"]) for r in rows] == [
        ("runA@step5", 5, 5000),
        ("runA@step50", 50, 50000),
    ]


def test_checkpoints_list_manifest_and_verify_names_broken(run_dir, tmp_path, capsys):
    d = Path(shutil.copytree(run_dir, tmp_path / "ck"))
    f = d / "checkpoint-50" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    (tmp_path / "manifest.csv").write_text(
        "run,step,tokens,path\nr,5,10,ck/checkpoint-5\nr,50,100,ck/checkpoint-50\n"
    )
    assert main(["checkpoints", "list", str(tmp_path / "manifest.csv")]) == 0
    out = capsys.readouterr().out
    assert "r@step5" in out and "r@step50" in out and "2 checkpoint(s) in 1 run(s)" in out
    assert main(["checkpoints", "list", str(tmp_path), "--verify"]) == 1
    captured = capsys.readouterr()
    broken = [line for line in captured.out.splitlines() if "BROKEN" in line]
    assert len(broken) == 1 and broken[0].startswith("r@step50")
    assert "truncated or corrupt safetensors file" in broken[0]
    assert "1 broken checkpoint(s)" in captured.err


def test_bad_source_is_a_clear_error(tmp_path, capsys):
    assert main(["checkpoints", "list", str(tmp_path / "nope")]) == 2
    assert "error: checkpoint source not found" in capsys.readouterr().err


def test_export_and_config_file_override(tmp_path, capsys):
    store = tmp_path / "s.duckdb"
    ResultsStore(store).upsert(
        [{"checkpoint": "a@step1", "probe": "ppl", "task": "wiki", "metric": "ppl", "value": 3.5}]
    )
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"store: {store}\nexport:\n  format: parquet\n")
    out = tmp_path / "table.out"
    assert main(["--config", str(cfg), "export", "--out", str(out)]) == 0
    import pandas as pd

    assert pd.read_parquet(out)["value"].tolist() == [3.5]
    # a flag on the command line overrides the file
    assert main(["--config", str(cfg), "export", "--out", str(out), "--format", "csv"]) == 0
    assert pd.read_csv(out)["value"].tolist() == [3.5]


def test_config_file_unknown_key_is_an_error(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("stroe: x.duckdb\n")
    assert main(["--config", str(cfg), "export", "--out", "x.csv"]) == 2
    assert "unknown option(s) ['stroe']" in capsys.readouterr().err
    cfg.write_text("export:\n  colour: red\n")
    assert main(["--config", str(cfg), "export", "--out", "x.csv"]) == 2
    assert "'export' has no option 'colour'" in capsys.readouterr().err


def test_config_file_missing_or_malformed(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "none.yaml"), "export", "--out", "x.csv"]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: [unclosed\n")
    assert main(["--config", str(bad), "export", "--out", "x.csv"]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    bad.write_text("- a\n- b\n")
    assert main(["--config", str(bad), "export", "--out", "x.csv"]) == 2
    assert "must hold a mapping" in capsys.readouterr().err


def test_finetune_and_probe_take_tokens_per_step(run_dir, tmp_path):
    """A trainer folder without trainer_state.json: `--tokens-per-step` gives the rows of
    `ckpt finetune` and `ckpt probe` tokens = step x N, as `ckpt checkpoints list` shows them."""
    from ckpt_toolkit.tasks import write_task_file

    items = [
        dict(id=f"{split}{i}", task="sum", capability="math", split=split, gold="7",
             context=f"Question: What is {i} plus {7 - i}?\nAnswer:")
        for split, n in (("train", 4), ("test", 2)) for i in range(n)
    ]  # fmt: skip
    write_task_file(tmp_path / "tasks" / "sum.jsonl", items)
    spec = tmp_path / "spec.yaml"
    spec.write_text("max_steps: 1\nbatch_size: 2\nmax_test_items: 2\n")
    store = tmp_path / "s.duckdb"
    tasks = str(tmp_path / "tasks")
    common = ["--store", str(store), "--tasks", tasks, "--tokens-per-step", "1000"]
    assert main(["finetune", str(run_dir), *common, "--spec", str(spec), "--checkpoints", "all",
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["probe", str(run_dir), *common, "--probes", "kshot", "--quiet"]) == 0
    df = ResultsStore(store, read_only=True).to_pandas()
    assert set(df["probe"]) == {"sft", "kshot"}
    for probe, rows in df.groupby("probe"):
        assert sorted(set(zip(rows["step"], rows["tokens"]))) == [(5, 5000), (50, 50000)], probe
