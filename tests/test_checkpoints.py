"""Checkpoint sources, fingerprints and safe loading, on real tiny folders built here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers import make_tiny_checkpoint

from ckpt_toolkit import load_checkpoint
from ckpt_toolkit.checkpoints import fingerprint, resolve_source, verify_folder
from ckpt_toolkit.errors import (
    CheckpointError,
    HubUnavailableError,
    SourceError,
    TokenizerMismatchError,
    UnsafeWeightsError,
)


@pytest.fixture(scope="module")
def trainer_run(tmp_path_factory, tiny_tokenizer) -> Path:
    """run folder with checkpoint-10, checkpoint-20, checkpoint-100 (different weights)."""
    root = tmp_path_factory.mktemp("trainer") / "myrun"
    for step in (100, 10, 20):
        make_tiny_checkpoint(root / f"checkpoint-{step}", seed=step, tokenizer=tiny_tokenizer)
    (root / "checkpoint-20" / "trainer_state.json").write_text(
        json.dumps({"global_step": 20, "num_input_tokens_seen": 5120})
    )
    return root


def test_local_hf_folder(tiny_checkpoint):
    (ref,) = resolve_source(tiny_checkpoint)
    assert ref.kind == "local" and ref.path == str(tiny_checkpoint)
    model, tok = load_checkpoint(ref)
    assert ref.params == sum(p.numel() for p in model.parameters())
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    # the same through a plain path and with another dtype
    model16, _ = load_checkpoint(str(tiny_checkpoint), dtype="bfloat16")
    assert next(model16.parameters()).dtype == torch.bfloat16


def test_trainer_folder_orders_steps_and_tokens(trainer_run):
    refs = resolve_source(trainer_run, tokens_per_step=256)
    assert [r.step for r in refs] == [10, 20, 100]
    assert [r.name for r in refs] == ["myrun@step10", "myrun@step20", "myrun@step100"]
    # trainer_state.json's token count wins over step x tokens-per-step
    assert [r.tokens for r in refs] == [2560, 5120, 25600]
    assert {r.kind for r in refs} == {"trainer"}
    # per-run tokens per step
    refs = resolve_source(trainer_run, tokens_per_step={"myrun": 10})
    assert refs[0].tokens == 100
    # a folder of run folders
    refs = resolve_source(trainer_run.parent)
    assert [r.step for r in refs] == [10, 20, 100]


def test_manifest_csv_and_yaml(trainer_run, tmp_path):
    csv = tmp_path / "manifest.csv"
    rel = Path("..") / trainer_run.parent.name / trainer_run.name
    rel = Path(shutil.copytree(trainer_run, tmp_path / "ck"))
    csv.write_text(
        "run,objective,params,step,tokens,path\n"
        "a,clm,,10,1000,ck/checkpoint-10\n"
        "a,clm,,20,2000,ck/checkpoint-20\n"
        "b,span,,100,,ck/checkpoint-100\n"
    )
    refs = resolve_source(csv, tokens_per_step={"b": 7})
    assert [(r.run, r.step, r.tokens) for r in refs] == [
        ("a", 10, 1000),
        ("a", 20, 2000),
        ("b", 100, 700),
    ]
    assert refs[0].config == {"objective": "clm"}
    assert refs[0].params == 39840  # from the safetensors header, since the column is empty
    assert Path(refs[2].path) == (rel / "checkpoint-100").resolve()
    assert refs[0].world is None
    # a folder holding manifest.csv and world/ resolves the same, with world set
    (tmp_path / "world").mkdir()
    refs2 = resolve_source(tmp_path, tokens_per_step={"b": 7})
    assert [r.name for r in refs2] == [r.name for r in refs]
    assert refs2[0].world == str(tmp_path / "world")

    y = tmp_path / "m.yaml"
    y.write_text(
        yaml.safe_dump(
            {
                "tokens_per_step": 50,
                "checkpoints": [
                    {"path": "ck/checkpoint-10", "run": "y", "step": 10, "lr": 0.01},
                    {"path": "ck/checkpoint-20", "run": "y", "step": 20, "lr": 0.01},
                ],
            }
        )
    )
    refs = resolve_source(y)
    assert [(r.run, r.step, r.tokens, r.config["lr"]) for r in refs] == [
        ("y", 10, 500, 0.01),
        ("y", 20, 1000, 0.01),
    ]


def test_manifest_errors(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("run,step\na,1\n")
    with pytest.raises(SourceError, match="'path' column"):
        resolve_source(bad)
    bad.write_text("run,step,path\na,one,x\n")
    with pytest.raises(SourceError, match="row 1, step: 'one' is not a number"):
        resolve_source(bad)
    with pytest.raises(SourceError, match="not found"):
        resolve_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no checkpoints found"):
        resolve_source(tmp_path / "empty")


def test_hub_refs_resolve_offline_and_fail_clearly(monkeypatch):
    refs = resolve_source("hf://EleutherAI/pythia-70m@step1000,step2000", tokens_per_step=2097152)
    assert [(r.run, r.step, r.tokens, r.revision) for r in refs] == [
        ("pythia-70m", 1000, 1000 * 2097152, "step1000"),
        ("pythia-70m", 2000, 2000 * 2097152, "step2000"),
    ]
    refs2 = resolve_source("hf://org/model@ckpt_010")
    assert refs2[0].step == 10
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match=r"EleutherAI/pythia-70m at revision step1000"):
        load_checkpoint(refs[0])
    with pytest.raises(HubUnavailableError, match="pythia-70m"):
        fingerprint(refs[0])
    assert fingerprint(refs[0].with_(commit_sha="a" * 40)) == "hub-" + "a" * 20


def test_fingerprint_follows_weights_not_path(tiny_checkpoint, tmp_path, tiny_tokenizer):
    fp = fingerprint(resolve_source(tiny_checkpoint)[0])
    moved = shutil.copytree(tiny_checkpoint, tmp_path / "moved")
    assert fingerprint(resolve_source(moved)[0]) == fp
    other = make_tiny_checkpoint(tmp_path / "other", seed=123, tokenizer=tiny_tokenizer)
    assert fingerprint(resolve_source(other)[0]) != fp
    # flipping one byte deep inside the weights changes it too
    f = moved / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    assert fingerprint(resolve_source(moved)[0]) != fp


def test_large_file_fingerprint_is_sampled(tmp_path):
    from ckpt_toolkit.checkpoints.fingerprint import folder_fingerprint

    big = tmp_path / "big"
    big.mkdir()
    payload = bytearray(20 * 1024 * 1024)
    (big / "model.bin").write_bytes(payload)
    a = folder_fingerprint(big)
    payload[-10] = 1  # the last chunk is always sampled
    (big / "model.bin").write_bytes(payload)
    assert folder_fingerprint(big) != a


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def test_missing_config(tiny_checkpoint, tmp_path):
    d = _copy(tiny_checkpoint, tmp_path / "noconfig")
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        load_checkpoint(str(d))
    assert any("missing config.json" in p for p in verify_folder(d))


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_corrupt_safetensors(tiny_checkpoint, tmp_path, damage):
    d = _copy(tiny_checkpoint, tmp_path / damage)
    f = d / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\xff" * 8 + data[8:])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(str(d))
    assert verify_folder(d)


def test_pickled_weights_refused_unless_opted_in(tiny_checkpoint, tmp_path):
    d = _copy(tiny_checkpoint, tmp_path / "pickled")
    model, _ = load_checkpoint(str(tiny_checkpoint))
    (d / "model.safetensors").unlink()
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError, match="allow_pickle"):
        load_checkpoint(str(d))
    m2, _ = load_checkpoint(str(d), allow_pickle=True)
    x = torch.tensor([[1, 2, 3]])
    assert torch.equal(m2(x).logits, model(x).logits)


def test_pickle_opt_in_still_refuses_code(tiny_checkpoint, tmp_path):
    """weights_only=True: a pickle that would run code is refused even with the opt-in."""
    d = _copy(tiny_checkpoint, tmp_path / "evil")
    (d / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="cannot read pickled weights"):
        load_checkpoint(str(d), allow_pickle=True)


def test_tokenizer_that_does_not_fit(tmp_path, tiny_tokenizer):
    d = make_tiny_checkpoint(tmp_path / "small_vocab", tokenizer=tiny_tokenizer, vocab_size=100)
    with pytest.raises(
        TokenizerMismatchError, match="300 tokens but the model's embedding has 100"
    ):
        load_checkpoint(str(d))
    assert any("embedding has only 100 rows" in p for p in verify_folder(d))


def test_missing_tokenizer(tiny_checkpoint, tmp_path):
    d = _copy(tiny_checkpoint, tmp_path / "notok")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (d / f).unlink()
    with pytest.raises(CheckpointError, match="no tokenizer files"):
        load_checkpoint(str(d))


def test_remote_code_is_off_by_default(tiny_checkpoint, tmp_path):
    d = _copy(tiny_checkpoint, tmp_path / "remote")
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    cfg["model_type"] = "evil-custom"
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(CheckpointError, match="trust_remote_code"):
        load_checkpoint(str(d))


def test_one_path_many_checkpoints(trainer_run):
    with pytest.raises(CheckpointError, match="holds 3 checkpoints"):
        load_checkpoint(str(trainer_run))
