"""The zoo's tokenizer: byte-level BPE trained locally on the world's corpus."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


def sentinel_tokens(n: int) -> list[str]:
    """T5 sentinel names ``<extra_id_0>`` .. ``<extra_id_{n-1}>``."""
    return [f"<extra_id_{i}>" for i in range(n)]


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 1024,
    n_sentinels: int = 32,
    out_dir: str | Path | None = None,
):
    """Train a byte-level BPE (``tokenizers``) and wrap it as a transformers fast tokenizer with
    ``<pad>``, ``<s>``, ``</s>``, ``<unk>`` and sentinels; saved to ``out_dir`` if given."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = SPECIAL_TOKENS + sentinel_tokens(n_sentinels)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=specials[4:],
    )
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def load_tokenizer(path: str | Path):
    """Load a saved zoo tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
