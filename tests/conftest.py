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
