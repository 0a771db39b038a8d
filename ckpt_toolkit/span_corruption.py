"""T5-style span corruption: the one implementation shared by the zoo and the ``sc_ppl`` probe.

The zoo's span-corruption objectives (``ckpt_toolkit/zoo/objectives.py``) train on it and the
``sc_ppl`` probe (``ckpt_toolkit/probes/sc_ppl.py``) scores it, so for the same raw tokens, random
generator state and sentinels the probe sees exactly the token ids the zoo trained on.

Layout of one example (``<s>`` = BOS, ``</s>`` = EOS, ``<X_i>`` = sentinel ``<extra_id_i>``)::

    <s> x1 x2 <X_0> x6 ... <X_1> ...   <X_0> x3 x4 x5 <X_1> ... </s>
    └──────────── inputs ───────────┘  └───────────── targets ───────────┘

Each noise span of the raw text is replaced by its sentinel in the inputs; the targets list every
span after its sentinel and end with EOS. The loss (zoo) and the score (probe) are over all the
target tokens, as in T5 (Raffel et al. 2020, §3.1.4).

Noise mask: T5's ``random_spans_noise_mask`` — ``round(length × density)`` noise tokens (at least
1, at most ``length − 1``) in ``round(noise / mean_span)`` spans (at least 1, at most the number of
noise and of non-noise tokens), alternating non-noise / noise segments of random non-empty lengths,
non-noise first. Defaults: density 0.15, mean span 3.

This module is pure numpy: probes import it without importing the zoo (and so the world).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ParameterError

NOISE_DENSITY = 0.15
MEAN_SPAN = 3.0


@dataclass(frozen=True)
class SpanExample:
    """One corrupted example: the model reads ``inputs + targets``; ``targets`` carry the loss."""

    inputs: list[int]
    targets: list[int]

    @property
    def ids(self) -> list[int]:
        """The full token sequence ``inputs + targets``."""
        return self.inputs + self.targets


def num_noise_spans(length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """``(noise tokens, noise spans)`` of T5's mask for ``length`` raw tokens."""
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    spans = max(1, int(round(num_noise / mean_span)))
    return num_noise, min(spans, num_noise, length - num_noise)


def random_spans_noise_mask(
    length: int, noise_density: float, mean_span: float, rng: np.random.Generator
) -> np.ndarray:
    """T5's noise mask over ``length`` tokens (``True`` = noise); randomness from ``rng``."""
    num_noise, num_spans = num_noise_spans(length, noise_density, mean_span)
    num_nonnoise = length - num_noise

    def segment(n: int, k: int) -> np.ndarray:
        # random partition of n items into k non-empty segments
        cuts = np.sort(rng.choice(np.arange(1, n), size=k - 1, replace=False)) if k > 1 else []
        return np.diff(np.concatenate([[0], cuts, [n]])).astype(int)

    noise_lens = segment(num_noise, num_spans)
    nonnoise_lens = segment(num_nonnoise, num_spans)
    mask = np.zeros(length, dtype=bool)
    pos = 0
    for a, b in zip(nonnoise_lens, noise_lens):
        pos += a
        mask[pos : pos + b] = True
        pos += b
    return mask


def span_raw_length(
    seq_len: int,
    noise_density: float = NOISE_DENSITY,
    mean_span: float = MEAN_SPAN,
    sentinel_len: int = 1,
) -> int:
    """The most raw tokens whose corrupted layout (BOS, inputs, targets, EOS) fits ``seq_len``
    when each sentinel is ``sentinel_len`` tokens."""
    n = seq_len - 2
    while n > 2 and (
        n + 2 * sentinel_len * num_noise_spans(n, noise_density, mean_span)[1] + 2 > seq_len
    ):
        n -= 1
    return n


def corrupt_with_mask(
    tokens: Sequence[int],
    mask: np.ndarray,
    sentinels: Sequence[Sequence[int]],
    bos: Sequence[int],
    eos: Sequence[int],
) -> SpanExample:
    """Lay out ``tokens`` with noise ``mask``: sentinel ``i`` (its token ids) replaces span ``i``.

    Raises :class:`ParameterError` when the spans outnumber the sentinels.
    """
    inputs: list[int] = list(bos)
    targets: list[int] = []
    k = -1
    for i, (tok, noisy) in enumerate(zip(tokens, mask)):
        if noisy:
            if i == 0 or not mask[i - 1]:
                k += 1
                if k >= len(sentinels):
                    raise ParameterError(
                        f"span corruption needs more than {len(sentinels)} sentinel tokens "
                        f"(<extra_id_0> … <extra_id_{len(sentinels) - 1}>) for "
                        f"{len(tokens)} raw tokens"
                    )
                inputs.extend(sentinels[k])
                targets.extend(sentinels[k])
            targets.append(int(tok))
        else:
            inputs.append(int(tok))
    targets.extend(eos)
    return SpanExample(inputs, targets)


def span_corrupt(
    tokens: Sequence[int],
    rng: np.random.Generator,
    sentinels: Sequence[Sequence[int]],
    bos: Sequence[int],
    eos: Sequence[int],
    noise_density: float = NOISE_DENSITY,
    mean_span: float = MEAN_SPAN,
) -> SpanExample:
    """Draw T5's noise mask for ``tokens`` from ``rng`` and lay the example out (see module doc).

    ``sentinels[i]`` are the token ids of ``<extra_id_i>`` (one id each for a tokenizer that has
    them as special tokens); ``bos`` / ``eos`` are the ids put before the inputs / after the
    targets (lists, possibly empty).
    """
    mask = random_spans_noise_mask(len(tokens), noise_density, mean_span, rng)
    return corrupt_with_mask(tokens, mask, sentinels, bos, eos)
