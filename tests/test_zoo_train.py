"""The zoo: presets, manifest, checkpoints that load and resolve, falling loss, determinism,
resume after SIGKILL, CLI."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ckpt_toolkit.zoo import (
    MANIFEST_COLUMNS,
    PRESETS,
    checkpoint_steps,
    resolve_preset,
    resolve_variants,
    train_variant,
    train_zoo,
)

REPO = Path(__file__).resolve().parents[1]


def _rows(manifest: Path) -> list[dict]:
    with manifest.open() as fh:
        return list(csv.DictReader(fh))


def test_checkpoint_schedule_log_then_linear():
    steps = checkpoint_steps(150, 8)
    assert len(steps) == 8 and steps[-1] == 150 and steps == sorted(set(steps))
    early, late = steps[:4], steps[4:]
    ratios = [b / a for a, b in zip(early, early[1:])]
    assert all(r > 2 for r in ratios)  # geometric early
    gaps = np.diff(late + [late[-1] + (late[-1] - late[-2])])
    assert gaps.max() - gaps.min() <= 2  # even spacing later
    assert checkpoint_steps(3, 8) == [1, 2, 3]


def test_presets_follow_the_design():
    quick = resolve_variants(resolve_preset("quick"))
    # every axis of the proxy paper's Table 4 varies, with few variants (the demo's budget)
    assert 8 <= len(quick) <= 12
    assert len({s["size"] for s in quick}) >= 3
    assert all(len(checkpoint_steps(s["steps"], s["n_checkpoints"])) >= 8 for s in quick)
    for axis in ("objective", "lr", "mixture", "length_filter", "domain_tags"):
        assert len({s[axis] for s in quick}) >= 2, axis
    largest = max(quick, key=lambda s: s["size_config"]["hidden"])
    assert largest["steps"] >= max(s["steps"] for s in quick)  # emergence before its end
    paper = resolve_variants(resolve_preset("paper"))
    design = [s for s in paper if not s["run"].startswith("clm-size-")]
    assert len(design) == 50
    assert len({(s["objective"], s["lr"]) for s in design}) >= 35
    assert set(PRESETS) == {"smoke", "quick", "paper"}


def test_overrides_and_bad_options():
    from ckpt_toolkit.errors import ParameterError

    cfg = resolve_preset(
        "smoke", {"defaults": {"steps": 7}, "variants": [{"name": "a", "lr": 0.1}]}
    )
    (spec,) = resolve_variants(cfg, seed=5)
    assert spec["steps"] == 7 and spec["lr"] == 0.1 and spec["seed"] == 5
    with pytest.raises(ParameterError, match="unknown zoo option"):
        resolve_preset("smoke", {"stepz": 3})
    with pytest.raises(ParameterError, match="unknown objective"):
        resolve_variants(resolve_preset("smoke", {"variants": [{"name": "x", "objective": "mlm"}]}))
    with pytest.raises(ParameterError, match="unknown zoo preset"):
        resolve_preset("huge")


def test_manifest_and_checkpoints(smoke_zoo):
    root = smoke_zoo.parent
    rows = _rows(smoke_zoo)
    assert list(rows[0]) == MANIFEST_COLUMNS
    specs = resolve_variants(resolve_preset("smoke"))
    assert {r["run"] for r in rows} == {s["run"] for s in specs}
    for s in specs:
        steps = [int(r["step"]) for r in rows if r["run"] == s["run"]]
        assert steps == checkpoint_steps(s["steps"], s["n_checkpoints"])
    for r in rows:
        folder = root / r["path"]
        assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
        assert (folder / "tokenizer.json").is_file()
        assert int(r["tokens"]) == int(r["step"]) * int(r["tokens_per_step"])
    assert (root / "world" / "world.json").is_file()
    assert len(list((root / "world" / "tasks").glob("*.jsonl"))) >= 10
    assert len(list((root / "world" / "heldout").glob("*.jsonl"))) == 5


def test_checkpoint_loads_with_its_tokenizer(smoke_zoo):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    row = _rows(smoke_zoo)[-1]
    folder = smoke_zoo.parent / row["path"]
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    assert model.config.vocab_size == len(tok)
    assert sum(p.numel() for p in model.parameters()) == int(row["params"])
    for t in ("<pad>", "<s>", "</s>", "<unk>", "<extra_id_0>", "<extra_id_15>"):
        assert tok.convert_tokens_to_ids(t) != tok.unk_token_id or t == "<unk>"
    text = "The capital of"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_manifest_resolves(smoke_zoo):
    checkpoints = pytest.importorskip("ckpt_toolkit.checkpoints")
    refs = checkpoints.resolve_source(str(smoke_zoo))
    rows = _rows(smoke_zoo)
    assert len(refs) == len(rows)
    ref = next(r for r in refs if r.run == rows[-1]["run"] and r.step == int(rows[-1]["step"]))
    assert ref.tokens == int(rows[-1]["tokens"]) and ref.params == int(rows[-1]["params"])
    assert Path(ref.world) == smoke_zoo.parent / "world"
    assert ref.config["objective"] == rows[-1]["objective"]


def test_loss_falls_during_training(smoke_zoo):
    for run in ("clm-xs", "span-xs"):
        log = (smoke_zoo.parent / "runs" / run / "train_log.csv").read_text().splitlines()[1:]
        losses = [float(line.split(",")[2]) for line in log]
        assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 0.5, run
    rows = [r for r in _rows(smoke_zoo) if r["run"] == "clm-xs"]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_objectives_and_mixtures_give_different_models(smoke_zoo):
    from safetensors.torch import load_file

    rows = _rows(smoke_zoo)
    last = {r["run"]: smoke_zoo.parent / r["path"] / "model.safetensors" for r in rows}
    w = {run: load_file(str(p))["model.embed_tokens.weight"] for run, p in last.items()}
    for a in w:
        for b in w:
            if a < b:
                assert not np.allclose(w[a].numpy(), w[b].numpy(), atol=1e-4), (a, b)


def test_same_seed_same_weights(smoke_zoo, tmp_path):
    again = train_zoo("smoke", tmp_path / "z", runs=["clm-xs"], progress=False)
    a, b = smoke_zoo.parent, again.parent
    for r in _rows(again):
        f = Path(r["path"]) / "model.safetensors"
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "tokenizer" / "tokenizer.json").read_bytes() == (
        b / "tokenizer" / "tokenizer.json"
    ).read_bytes()
    for f in sorted((a / "world" / "tasks").glob("*.jsonl")):
        assert f.read_bytes() == (b / "world" / "tasks" / f.name).read_bytes()


def _resume_spec():
    cfg = resolve_preset(
        "smoke", {"defaults": {"steps": 120, "n_checkpoints": 4}, "variants": [{"name": "r"}]}
    )
    return resolve_variants(cfg)[0]


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(smoke_zoo, tmp_path):
    import shutil

    from safetensors.torch import load_file

    spec = _resume_spec()
    dirs = {}
    for name in ("killed", "clean"):
        d = tmp_path / name
        shutil.copytree(smoke_zoo.parent / "tokenizer", d / "tokenizer")
        dirs[name] = d
    code = (
        "import json, sys; from ckpt_toolkit.zoo import train_variant; "
        "train_variant(json.loads(sys.argv[1]), sys.argv[2])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(spec), str(dirs["killed"])],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    state = dirs["killed"] / "runs" / "r" / "trainer_state" / "state.json"
    deadline = time.time() + 240
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the run never saved a checkpoint"
    saved_step = json.loads(state.read_text())["step"]
    assert saved_step < spec["steps"], "the run finished before it could be killed"
    assert not (dirs["killed"] / "runs" / "r" / "rows.json").exists()

    resumed = train_variant(spec, str(dirs["killed"]))
    done = json.loads((dirs["killed"] / "runs" / "r" / "rows.json").read_text())
    assert done["steps_this_session"] == spec["steps"] - saved_step  # continued, not restarted
    clean = train_variant(spec, str(dirs["clean"]))
    assert resumed == clean
    for row in clean:
        a = load_file(str(dirs["killed"] / row["path"] / "model.safetensors"))
        b = load_file(str(dirs["clean"] / row["path"] / "model.safetensors"))
        assert all((a[k] == b[k]).all() for k in b), row["path"]
    log_a = (dirs["killed"] / "runs" / "r" / "train_log.csv").read_text()
    assert log_a == (dirs["clean"] / "runs" / "r" / "train_log.csv").read_text()


def test_cli_train_and_presets(tmp_path, capsys):
    from ckpt_toolkit.cli import main

    over = tmp_path / "over.yaml"
    over.write_text(
        yaml.safe_dump(
            {
                "world": {"corpus_chars": 20_000},
                "defaults": {"steps": 4, "n_checkpoints": 2, "corpus_chars": 20_000},
            }
        )
    )
    out = tmp_path / "zoo"
    argv = ["zoo", "train", "--preset", "smoke", "--out", str(out), "--overrides", str(over)]
    assert main(argv + ["--runs", "span-xs", "-q"]) == 0
    rows = _rows(out / "manifest.csv")
    assert [(r["run"], r["step"]) for r in rows] == [("span-xs", "1"), ("span-xs", "4")]
    done = out / "runs" / "span-xs" / "rows.json"
    stamp = done.stat().st_mtime_ns
    assert main(argv + ["--runs", "span-xs", "-q"]) == 0  # finished variants are not retrained
    assert done.stat().st_mtime_ns == stamp
    assert main(["zoo", "presets"]) == 0
    assert "quick: 9 variants" in capsys.readouterr().out
    assert main(["zoo", "world", "--out", str(tmp_path / "w"), "--preset", "smoke"]) == 0
    assert (tmp_path / "w" / "world.json").is_file() and (tmp_path / "w" / "tasks").is_dir()
    assert main(["zoo", "train", "--preset", "nope", "--out", str(out)]) == 2
    assert main(argv + ["--runs", "nope", "-q"]) == 2


@pytest.mark.slow
def test_variants_side_by_side_in_worker_processes(tmp_path):
    """workers=2 (what quick uses) trains in spawned processes: same weights as in-process."""
    over = {"defaults": {"steps": 3, "n_checkpoints": 1}}
    runs = ["clm-xs", "span-xs"]
    a = train_zoo("smoke", tmp_path / "a", overrides=over, runs=runs, workers=2, progress=False)
    b = train_zoo("smoke", tmp_path / "b", overrides=over, runs=runs, workers=1, progress=False)
    rows = _rows(a)
    assert [(r["run"], r["step"]) for r in rows] == [("clm-xs", "3"), ("span-xs", "3")]
    assert rows == _rows(b)
    for r in rows:
        f = Path(r["path"]) / "model.safetensors"
        assert (a.parent / f).read_bytes() == (b.parent / f).read_bytes()


def _heldout_loss(folder: Path, texts: list[str]) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"]])
            ids = ids[:, : model.config.max_position_embeddings]
            out = model(input_ids=ids, labels=ids)
            total += out.loss.item() * (ids.shape[1] - 1)
            n += ids.shape[1] - 1
    return total / n


def test_mixture_changes_what_the_model_knows(smoke_zoo):
    """A code-heavy mixture: lower held-out loss on code, higher on wiki, than the default."""
    root = smoke_zoo.parent
    last = {r["run"]: root / r["path"] for r in _rows(smoke_zoo)}

    def heldout(domain: str) -> list[str]:
        lines = (root / "world" / "heldout" / f"{domain}.jsonl").read_text().splitlines()
        return [json.loads(x)["text"] for x in lines]

    code, wiki = heldout("code"), heldout("wiki")
    assert _heldout_loss(last["clm-xs-code"], code) < _heldout_loss(last["clm-xs"], code) - 0.2
    assert _heldout_loss(last["clm-xs-code"], wiki) > _heldout_loss(last["clm-xs"], wiki) + 0.1


def test_token_stream_cache_returns_the_same_stream(smoke_zoo, tmp_path):
    """Variants with the same data share one cached stream; another mixture gets its own."""
    import numpy as np

    from ckpt_toolkit.zoo.presets import resolve_preset, resolve_variants
    from ckpt_toolkit.zoo.tokenizer import load_tokenizer
    from ckpt_toolkit.zoo.train import token_stream

    tok = load_tokenizer(smoke_zoo.parent / "tokenizer")
    specs = {s["run"]: s for s in resolve_variants(resolve_preset("smoke"))}
    fresh = token_stream(specs["clm-xs"], tok)
    cached = token_stream(specs["clm-xs"], tok, cache_dir=tmp_path)
    assert np.array_equal(fresh, cached) and len(list(tmp_path.glob("*.npy"))) == 1
    # same corpus, other objective: read from the cache, equal to building it
    assert np.array_equal(token_stream(specs["span-xs"], tok, cache_dir=tmp_path), fresh)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    code = token_stream(specs["clm-xs-code"], tok, cache_dir=tmp_path)
    assert np.array_equal(code, token_stream(specs["clm-xs-code"], tok))
    assert not np.array_equal(code[: len(fresh)], fresh[: len(code)])
    assert len(list(tmp_path.glob("*.npy"))) == 2 and not list(tmp_path.glob("*.tmp*"))
