"""Builders shared by the tests: tiny real checkpoints made with transformers, offline."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The capital of Avalon is Brill. The river Esk flows through Brill.",
    "Question: What is 3 plus 4? Answer: 7",
    "def add(a, b):\n    return a + b\nprint(add(2, 3))  # 5",
    "Mira gave the red ball to Tom. Tom put the ball in the box.",
    "If it rains, the ground gets wet. The ground is wet, so maybe it rained.",
] * 20


def make_tokenizer(out_dir: str | Path | None = None, vocab_size: int = 300):
    """A byte-level BPE tokenizer trained on a few sentences (the zoo's tokenizer recipe, with
    8 sentinels), as a transformers fast tokenizer; saved to ``out_dir`` if given."""
    from ckpt_toolkit.zoo.tokenizer import train_tokenizer

    return train_tokenizer(CORPUS, vocab_size=vocab_size, n_sentinels=8, out_dir=out_dir)


def make_tiny_checkpoint(
    out_dir: str | Path,
    seed: int = 0,
    tokenizer=None,
    hidden: int = 32,
    layers: int = 2,
    max_positions: int = 128,
    vocab_size: int | None = None,
    safe: bool = True,
) -> Path:
    """Save a tiny random-init Llama causal LM (and its tokenizer) to ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or make_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(str(out_dir), safe_serialization=safe)
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


def tidy_rows(
    run: str,
    task: str,
    values,
    *,
    steps,
    params: float | None,
    stderr: float | None,
    chance: float | None = 0.25,
    metric: str = "acc",
    shots: int = 0,
    probe: str = "kshot",
    capability: str | None = "world_knowledge",
    spec_hash: str | None = None,
    tokens_per_step: int = 1000,
) -> list[dict]:
    """Store rows of one run's curve: one per (step, value), checkpoint ``<run>@step<N>``,
    tokens = step × ``tokens_per_step``, chance in the provenance (as the kshot probe writes
    it; none when ``chance`` is None); ``spec_hash`` defaults to ``<probe><shots>``."""
    import json

    prov = json.dumps({"chance": chance}) if chance is not None else None
    return [
        dict(run=run, checkpoint=f"{run}@step{s}", step=s, tokens=s * tokens_per_step,
             params=params, probe=probe, task=task, capability=capability, metric=metric,
             value=float(v), stderr=stderr, shots=shots,
             spec_hash=spec_hash if spec_hash is not None else f"{probe}{shots}",
             provenance=prov)
        for s, v in zip(steps, values, strict=False)
    ]  # fmt: skip
