"""Issue 13 (hardening) outside the importers: each bad input gets a named error that names the
file, row, option or tensor, or its data is preserved. Store locking and export cases live in
tests/test_store.py; this file drives the rest through the CLI and the Python API."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import make_tiny_checkpoint

from ckpt_toolkit.checkpoints import (
    count_params,
    read_safetensors_header,
    resolve_source,
    verify_folder,
)
from ckpt_toolkit.cli import main
from ckpt_toolkit.errors import CheckpointError, SourceError
from ckpt_toolkit.store import ResultsStore
from ckpt_toolkit.tasks import write_task_file

HELDOUT_TEXT = "The capital of Avalon is Brill. The river Esk flows through Brill. " * 3


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("heldout") / "wiki.jsonl"
    f.write_text("\n".join(json.dumps({"text": HELDOUT_TEXT}) for _ in range(3)) + "\n")
    return f


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


# -- 1, 2: export onto the store / a file that is not DuckDB, through the CLI ------------------
def test_cli_export_onto_the_store_is_refused(tmp_path, capsys):
    store = tmp_path / "s.duckdb"
    ResultsStore(store).upsert(
        [{"checkpoint": "a@step1", "probe": "ppl", "task": "wiki", "metric": "ppl", "value": 3.5}]
    )
    before = store.read_bytes()
    for fmt in ("csv", "parquet"):
        rc = main(["export", "--store", str(store), "--out", str(store), "--format", fmt])
        assert rc == 2
        assert "refusing to export onto the results store itself" in capsys.readouterr().err
    assert store.read_bytes() == before
    assert ResultsStore(store, read_only=True).to_pandas()["value"].tolist() == [3.5]


def test_cli_store_that_is_not_duckdb(tmp_path, capsys):
    bad = tmp_path / "notes.duckdb"
    bad.write_text("these are my notes, not a database\n")
    t0 = time.monotonic()
    assert main(["export", "--store", str(bad), "--out", str(tmp_path / "x.csv")]) == 2
    assert time.monotonic() - t0 < 5
    err = capsys.readouterr().err
    assert "notes.duckdb is not a DuckDB file" in err and "locked" not in err


# -- 4, 9: manifests ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared_ckpt(tmp_path_factory, tiny_tokenizer) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("shared") / "ck", tokenizer=tiny_tokenizer)


def _manifest(folder: Path, rows: list[dict], name="manifest.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.endswith(".csv"):
        cols = list(dict.fromkeys(k for r in rows for k in r))
        lines = [",".join(cols)] + [",".join(str(r.get(c, "")) for c in cols) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_text(yaml.safe_dump(rows))
    return path


@pytest.mark.parametrize("name", ["manifest.csv", "manifest.yaml"])
def test_manifest_row_with_empty_path(tmp_path, shared_ckpt, name):
    rows = [{"path": str(shared_ckpt), "run": "a", "step": 1}, {"path": "", "run": "a", "step": 2}]
    m = _manifest(tmp_path, rows, name)
    with pytest.raises(SourceError, match=rf"{name}, row 2: the 'path' cell is empty"):
        resolve_source(m)


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("params", 2**63, "params: .* is out of range"),
        ("step", 2**63 + 5, "step: .* is out of range"),
        ("tokens", "99999999999999999999", "tokens: .* is out of range"),
        ("tokens", "1e30", "tokens: .* is out of range"),
        ("step", -3, "step: .* is negative"),
        ("step", 1.7, "step: .* is not a whole number"),
        ("step", "ten", "step: 'ten' is not a number"),
        ("tokens_per_step", 2**62, r"tokens_per_step=.*: step 4 x 4611686018427387904 .*range"),
    ],
)
def test_manifest_numbers_out_of_range(tmp_path, shared_ckpt, column, value, message):
    row = {"path": str(shared_ckpt), "run": "a", "step": 4, column: value}
    for name in ("manifest.csv", "manifest.yaml"):
        m = _manifest(tmp_path / name.split(".")[1], [row], name)
        with pytest.raises(SourceError, match=rf"{name}, row 1, {message}"):
            resolve_source(m)


def test_manifest_big_exact_numbers_are_kept_exactly(tmp_path, shared_ckpt):
    big = 2**63 - 1  # the largest count the store holds; float parsing would round it
    m = _manifest(tmp_path, [{"path": str(shared_ckpt), "run": "a", "step": 3, "tokens": big}])
    (ref,) = resolve_source(m)
    assert ref.tokens == 9223372036854775807
    st = ResultsStore(tmp_path / "s.duckdb")
    st.upsert([{**ref.store_fields(), "probe": "ppl", "task": "w", "metric": "m", "value": 1.0}])
    assert int(st.to_pandas()["tokens"].iloc[0]) == 9223372036854775807


def test_manifest_paths_outside_its_folder_are_reported(tmp_path, shared_ckpt, capsys):
    inside = _copy(shared_ckpt, tmp_path / "zoo" / "runs" / "a" / "checkpoint-1")
    rel_outside = os.path.relpath(shared_ckpt, tmp_path / "zoo")
    m = _manifest(
        tmp_path / "zoo",
        [
            {"path": "runs/a/checkpoint-1", "run": "a", "step": 1},
            {"path": rel_outside, "run": "a", "step": 2},
        ],
    )
    assert main(["checkpoints", "list", str(m)]) == 0
    out = capsys.readouterr().out
    assert f"note: a@step2: path {shared_ckpt.resolve()} lies outside the manifest's folder" in out
    assert "note: a@step1" not in out
    assert main(["checkpoints", "list", str(m), "--json"]) == 0
    rows = {
        r["checkpoint"]: r for r in map(json.loads, capsys.readouterr().out.strip().splitlines())
    }
    assert rows["a@step2"]["outside_manifest_folder"] is True
    assert "outside_manifest_folder" not in rows["a@step1"]
    assert inside.is_dir()


# -- 5: safetensors headers that lie -----------------------------------------------------------
def _safetensors(path: Path, tensors: dict[str, dict], data_len: int) -> Path:
    header = json.dumps(tensors).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * data_len)
    return path


def test_shape_that_disagrees_with_its_byte_range(tmp_path, shared_ckpt, capsys):
    d = _copy(shared_ckpt, tmp_path / "lying")
    (d / "model.safetensors").unlink()
    _safetensors(
        d / "model.safetensors",
        {
            "embed.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "huge.weight": {"dtype": "F32", "shape": [999019637], "data_offsets": [16, 32]},
        },
        32,
    )
    with pytest.raises(CheckpointError, match=r"tensor 'huge.weight' has shape \[999019637\]"):
        read_safetensors_header(d / "model.safetensors")
    with pytest.raises(CheckpointError, match="huge.weight"):
        count_params(d)  # no 999,019,641 parameters reported
    assert any("'huge.weight'" in p and "16 bytes" in p for p in verify_folder(d))
    assert main(["checkpoints", "list", str(d), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "BROKEN" in out and "huge.weight" in out and "999019641" not in out


@pytest.mark.parametrize(
    "tensors, data_len, message",
    [
        (  # two tensors claim the same bytes
            {
                "a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]},
                "b": {"dtype": "F16", "shape": [4], "data_offsets": [4, 12]},
            },
            12,
            "tensor 'b' at bytes 4..12 overlaps the previous tensor",
        ),
        (
            {"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}},
            12,
            "tensor 'a' at bytes 8..12 leaves a gap",
        ),
        (
            {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
            8,
            "tensors need",
        ),
        ({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, 4, "unknown dtype 'F33'"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, 4, "invalid shape"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, 4, "no valid data_offsets"),
    ],
    ids=["overlap", "gap", "beyond-file", "dtype", "shape", "offsets"],
)
def test_safetensors_ranges_are_checked(tmp_path, tensors, data_len, message):
    f = _safetensors(tmp_path / "model.safetensors", tensors, data_len)
    with pytest.raises(CheckpointError, match=message) as info:
        read_safetensors_header(f)
    assert str(f) in str(info.value)


def test_valid_header_counts_params_exactly(tiny_checkpoint):
    from safetensors.torch import load_file

    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    assert count_params(tiny_checkpoint) == sum(t.numel() for t in tensors.values())


# -- 6: --allow-pickle and --trust-remote-code reach the loader ---------------------------------
@pytest.fixture(scope="module")
def pickled_ckpt(tmp_path_factory, shared_ckpt) -> Path:
    d = _copy(shared_ckpt, tmp_path_factory.mktemp("pickled") / "ck")
    from safetensors.torch import load_file

    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    torch.save(state, d / "pytorch_model.bin")
    return d


def test_probe_allow_pickle_flag(pickled_ckpt, heldout, tmp_path, capsys):
    store = tmp_path / "s.duckdb"
    args = ["probe", str(pickled_ckpt), "--heldout", str(heldout), "--probes", "ppl"]
    args += ["--store", str(store), "-q"]
    assert main(args) == 1
    assert "--allow-pickle" in capsys.readouterr().out
    assert len(ResultsStore(store)) == 0
    assert main([*args, "--allow-pickle"]) == 0
    df = ResultsStore(store).to_pandas()
    assert set(df["metric"]) == {"ppl", "loss", "bpb"}


def _custom_code_checkpoint(src: Path, dst: Path) -> Path:
    d = _copy(src, dst)
    (d / "custom_llama.py").write_text(
        "from transformers import LlamaConfig, LlamaForCausalLM\n\n\n"
        "class CustomLlamaConfig(LlamaConfig):\n    model_type = 'custom_llama'\n\n\n"
        "class CustomLlamaForCausalLM(LlamaForCausalLM):\n    config_class = CustomLlamaConfig\n"
    )
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "custom_llama"
    cfg["auto_map"] = {
        "AutoConfig": "custom_llama.CustomLlamaConfig",
        "AutoModelForCausalLM": "custom_llama.CustomLlamaForCausalLM",
    }
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_probe_trust_remote_code_flag(shared_ckpt, heldout, tmp_path, capsys):
    d = _custom_code_checkpoint(shared_ckpt, tmp_path / "remote")
    store = tmp_path / "s.duckdb"
    args = ["probe", str(d), "--heldout", str(heldout), "--probes", "ppl"]
    args += ["--store", str(store), "-q"]
    assert main(args) == 1
    assert "--trust-remote-code" in capsys.readouterr().out
    assert main([*args, "--trust-remote-code"]) == 0
    assert len(ResultsStore(store)) == 3


def test_finetune_has_both_flags(pickled_ckpt, tmp_path, capsys):
    items = [
        dict(
            id=f"q-{split}-{i}",
            task="q",
            capability="knowledge",
            split=split,
            context="Question: Where is Brill?\nAnswer:",
            choices=[" Avalon", " Esk"],
            gold=0,
        )
        for split in ("train", "test")
        for i in range(4)
    ]
    tasks = write_task_file(tmp_path / "tasks" / "q.jsonl", items)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"max_steps": 1, "batch_size": 2}))
    store = tmp_path / "s.duckdb"
    args = ["finetune", str(pickled_ckpt), "--tasks", str(tasks), "--spec", str(spec)]
    args += ["--store", str(store), "--no-progress"]
    assert main(args) == 1
    assert "--allow-pickle" in capsys.readouterr().err
    assert main([*args, "--allow-pickle", "--trust-remote-code"]) == 0
    assert "score" in set(ResultsStore(store).to_pandas()["metric"])


# -- 7: ckpt zoo train without an output folder -------------------------------------------------
def test_zoo_train_requires_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["zoo", "train"]) == 2
    assert main(["zoo", "train", "--preset", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "Missing option '--out'" in err and "Usage: ckpt zoo train" in err
    assert list(tmp_path.iterdir()) == []  # nothing was trained into ./zoo/smoke


# -- 8: a successful run prints no warnings -----------------------------------------------------
def test_successful_probe_prints_nothing_on_stderr(shared_ckpt, heldout, tmp_path):
    """A real `ckpt probe` process: the transformers `past_key_values` notice used to appear
    once per checkpoint."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    store = tmp_path / "s.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "ckpt_toolkit.cli", "probe", str(shared_ckpt), "--heldout",
         str(heldout), "--probes", "ppl,sc_ppl", "--store", str(store), "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "rows written" in proc.stdout


def test_report_kernel_is_not_interrupted_at_shutdown():
    """jupyter_client SIGINTs a kernel before shutting it down, which ipykernel logs as
    `KeyboardInterrupt caught in kernel`; the report runner's kernel manager does not."""
    from jupyter_client.manager import AsyncKernelManager

    from ckpt_toolkit.reports.kernel import QuietShutdownKernelManager

    def signals_sent(cls: type) -> list[int]:
        sent: list[int] = []

        class Recording(cls):  # type: ignore[misc, valid-type]
            async def _async_signal_kernel(self, signum: int) -> None:
                sent.append(signum)
                await super()._async_signal_kernel(signum)

        async def run() -> None:
            km = Recording(kernel_name="python3")
            await km.start_kernel()
            await km.shutdown_kernel()

        asyncio.run(run())
        return sent

    assert signal.SIGINT in signals_sent(AsyncKernelManager)  # what the default does
    assert signal.SIGINT not in signals_sent(QuietShutdownKernelManager)


def test_successful_report_prints_no_kernel_noise(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb_dir = tmp_path / "nb"
    nb_dir.mkdir()
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "ckpt-toolkit", "display_name": "x", "language": "python"}
    params = new_code_cell('store_path: str = "x.duckdb"  # store\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell("print(sum(range(10)))")]
    nbformat.write(nb, nb_dir / "tiny.ipynb")
    store = tmp_path / "s.duckdb"
    ResultsStore(store)
    proc = subprocess.run(
        [sys.executable, "-m", "ckpt_toolkit.cli", "report", "tiny", "--notebooks", str(nb_dir),
         "--store", str(store), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = ("reports:", "  ok   tiny ", "1/1 reports ok")  # progress bar redraws, summary
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    noise = [ln for ln in lines if not any(e in ln for e in expected)]
    assert noise == []  # no [IPKernelApp] ERROR | KeyboardInterrupt, no TCP warning
    assert "1/1 reports ok" in proc.stderr


# -- 3: a second process locks the store just as a probed checkpoint's rows are written ---------
HOLDER = (
    "import sys, time, duckdb\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "print('holding', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


class _LockedAtWrite(ResultsStore):
    """A store whose first upsert finds the file locked by a real second process that holds it
    for ``hold`` seconds (started right before the write, after the checkpoint was probed)."""

    hold = 3.0
    holder: subprocess.Popen | None = None

    def upsert(self, rows, checkpoints=()):
        if type(self).holder is None:
            proc = subprocess.Popen(
                [sys.executable, "-c", HOLDER, str(self.path), str(self.hold)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout.readline().strip() == "holding"
            type(self).holder = proc
        return super().upsert(rows, checkpoints)


@pytest.fixture
def locked_at_write():
    _LockedAtWrite.holder, _LockedAtWrite.hold = None, 3.0
    yield _LockedAtWrite
    if _LockedAtWrite.holder is not None:
        _LockedAtWrite.holder.kill()
        _LockedAtWrite.holder.wait()


def test_probe_sweep_waits_for_a_locked_store(
    shared_ckpt, heldout, tmp_path, capfd, locked_at_write
):
    from ckpt_toolkit.probes import run_probes

    store = locked_at_write(tmp_path / "s.duckdb", lock_timeout=60)
    report = run_probes(str(shared_ckpt), store, probes="ppl", heldout=str(heldout), progress=False)
    pid = locked_at_write.holder.pid
    assert report.ok and report.rows_written == 3
    assert set(ResultsStore(tmp_path / "s.duckdb").to_pandas()["metric"]) == {"ppl", "loss", "bpb"}
    err = capfd.readouterr().err
    assert f"is locked by PID {pid}" in err and "lock released" in err


def test_probe_sweep_keeps_rows_when_the_lock_outlives_the_wait(
    shared_ckpt, heldout, tmp_path, locked_at_write
):
    from ckpt_toolkit.errors import StoreLockedError
    from ckpt_toolkit.probes import run_probes

    path = tmp_path / "s.duckdb"
    locked_at_write.hold = 4.0
    store = locked_at_write(path, lock_timeout=0.5)
    with pytest.raises(StoreLockedError, match="locked by PID") as info:
        run_probes(str(shared_ckpt), store, probes="ppl", heldout=str(heldout), progress=False)
    assert "kept in" in str(info.value) and info.value.kept.is_file()
    locked_at_write.holder.wait()
    # the next sweep stores the kept rows first, then finds the checkpoint already probed
    again = run_probes(str(shared_ckpt), path, probes="ppl", heldout=str(heldout), progress=False)
    assert again.done == [] and len(again.skipped) == 1
    assert set(ResultsStore(path).to_pandas()["metric"]) == {"ppl", "loss", "bpb"}


@pytest.mark.parametrize("value", ["abc", "runA=x", "=5", "0", "-4"])
def test_tokens_per_step_option_is_validated(shared_ckpt, value, capsys):
    for cmd in (["checkpoints", "list"], ["probe"]):
        assert main([*cmd, str(shared_ckpt), "--tokens-per-step", value]) == 2
        assert "error: --tokens-per-step" in capsys.readouterr().err
