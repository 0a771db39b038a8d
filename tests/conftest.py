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

from helpers import make_tiny_checkpoint, make_tokenizer  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PYTHIA_EVALS = SHARED / "data" / "pythia-evals"


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A small byte-level BPE tokenizer with <pad>, <s>, </s>, <unk> and 8 sentinels."""
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_tokenizer) -> Path:
    """A folder holding a tiny random Llama model + tokenizer (safetensors)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def pythia_evals() -> Path:
    """../shared/data/pythia-evals (real lm-eval output); skips cleanly where absent."""
    if not PYTHIA_EVALS.is_dir():
        pytest.skip(f"real Pythia eval data not found at {PYTHIA_EVALS}")
    return PYTHIA_EVALS


@pytest.fixture(scope="session")
def smoke_zoo(tmp_path_factory) -> Path:
    """The smoke-preset zoo, trained once per session; returns its manifest.csv
    (DIR/world/ holds its tasks and held-out text, DIR/runs/ its checkpoints)."""
    from ckpt_toolkit.zoo import train_zoo

    return train_zoo("smoke", tmp_path_factory.mktemp("zoo") / "smoke", progress=False)
