"""Shared fixtures. Heavy artefacts (tiny checkpoints, the smoke zoo) are built once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# sweeps use one torch thread unless a test says otherwise: fast for the tiny test models, and
# the same arithmetic whatever the machine's load (docs/threads.md; tests of the policy unset it)
os.environ.setdefault("CKPT_THREADS", "1")

from helpers import make_tiny_checkpoint, make_tokenizer  # noqa: E402

#: compact derived copy of EleutherAI's public Pythia evals (see tests/data/README.md)
PYTHIA_PARQUET = Path(__file__).parent / "data" / "pythia_evals.parquet"


def write_pythia_evals(root: Path) -> Path:
    """Rebuild the lm-eval JSON tree ``pythia-<size>/zero-shot/<size>_step<N>.json`` from the
    committed Parquet subset (values exact), so importers read the real published layout."""
    import json

    import pandas as pd

    df = pd.read_parquet(PYTHIA_PARQUET)
    for (size, step), g in df.groupby(["size", "step"], observed=True, sort=True):
        results: dict = {}
        versions: dict = {}
        for task, metric, value, version in g[["task", "metric", "value", "version"]].itertuples(
            index=False
        ):
            results.setdefault(task, {})[metric] = value
            versions[task] = int(version)
        doc = {"results": results, "versions": versions, "config": json.loads(g["config"].iloc[0])}
        out = root / f"pythia-{size}" / "zero-shot" / f"{size}_step{step}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1))
    return root


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A small byte-level BPE tokenizer with <pad>, <s>, </s>, <unk> and 8 sentinels."""
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_tokenizer) -> Path:
    """A folder holding a tiny random Llama model + tokenizer (safetensors)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def pythia_evals(tmp_path_factory) -> Path:
    """Real lm-eval output for four Pythia sizes x 27 checkpoints, as JSON files in lm-eval's
    old layout, rebuilt from the committed subset in tests/data/."""
    return write_pythia_evals(tmp_path_factory.mktemp("pythia-evals"))


@pytest.fixture(scope="session")
def smoke_zoo(tmp_path_factory) -> Path:
    """The smoke-preset zoo, trained once per session; returns its manifest.csv
    (DIR/world/ holds its tasks and held-out text, DIR/runs/ its checkpoints)."""
    from ckpt_toolkit.zoo import train_zoo

    return train_zoo("smoke", tmp_path_factory.mktemp("zoo") / "smoke", progress=False)


#: modules whose tests execute notebooks, start Ray clusters or build a wheel: the slow tier
SLOW_MODULES = {
    "test_notebooks",
    "test_reports",
    "test_report_explorer",
    "test_ray_executor",
    "test_ray_probes",
    "test_finetune_zoo",
    "test_packaging",
}
#: fixtures that train a zoo or start a Ray cluster once per session
SLOW_FIXTURES = {"smoke_zoo", "ray_cluster"}
#: single tests that kill processes, hold locks for seconds or start a kernel
SLOW_TESTS = {
    "test_resume_after_kill_9",
    "test_lock_that_never_frees_keeps_the_rows",
    "test_locked_store_waits_with_a_message_then_writes",
    "test_probe_sweep_keeps_rows_when_the_lock_outlives_the_wait",
    "test_probe_sweep_waits_for_a_locked_store",
    "test_successful_report_prints_no_kernel_noise",
    "test_successful_probe_prints_nothing_on_stderr",
}


def pytest_collection_modifyitems(config, items):
    """`make test-fast` (`-m "not slow"`) leaves out whole slow modules and every test that
    needs a trained zoo, besides the tests marked slow by hand; `make test` runs them all."""
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        fixtures = set(getattr(item, "fixturenames", ()))
        if module in SLOW_MODULES or SLOW_FIXTURES & fixtures or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
