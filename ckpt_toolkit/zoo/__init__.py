"""The checkpoint zoo: a tokenizer, pretraining objectives, variants and a training loop that
pretrain small Llama-style models on the built-in world and save checkpoints along the way."""

from .driver import MANIFEST_COLUMNS, ZooError, prepare_world, train_zoo, write_manifest
from .objectives import OBJECTIVES, Collator, SpecialIds
from .presets import PRESETS, load_overrides, resolve_preset, resolve_variants
from .tokenizer import load_tokenizer, train_tokenizer
from .train import checkpoint_steps, train_variant

__all__ = [
    "MANIFEST_COLUMNS",
    "OBJECTIVES",
    "PRESETS",
    "Collator",
    "SpecialIds",
    "ZooError",
    "checkpoint_steps",
    "load_overrides",
    "load_tokenizer",
    "prepare_world",
    "resolve_preset",
    "resolve_variants",
    "train_tokenizer",
    "train_variant",
    "train_zoo",
    "write_manifest",
]
