"""Pretraining objectives as data collators over one decoder-only model (``LlamaForCausalLM``).

Every collator turns raw token windows (``seq_len`` corpus tokens each) into fixed-length rows
``input_ids`` / ``labels`` of length ``seq_len``. ``labels`` are aligned with ``input_ids``
(Hugging Face shifts them inside the model): position *t* with ``labels[t] != -100`` is a loss
target, predicted from positions ``< t`` under the model's causal attention. Rows are
right-padded with ``<pad>`` (label -100); since attention is causal, real tokens never attend
to the padding, so no attention mask is passed to the model.

Layouts (``<s>`` = BOS, ``</s>`` = EOS, ``<X_i>`` = sentinel ``<extra_id_i>``):

* ``clm`` -- causal LM. ``<s> x1 .. x_{L-1}``; targets: every token after ``<s>``.
* ``span`` -- T5-style span corruption (noise density 0.15, mean span 3; T5's
  ``random_spans_noise_mask``; one implementation, :mod:`ckpt_toolkit.span_corruption`, shared
  with the ``sc_ppl`` probe) laid out for a decoder-only model:
  ``<s> [corrupted input] <X_0> span_0 <X_1> span_1 ... </s>``, where the corrupted input is the
  text with each noise span replaced by its sentinel. Targets: the sentinel-delimited spans and
  ``</s>`` (the part after the corrupted input); no loss on ``<s>`` or the corrupted input.
  The number of raw tokens ``n`` is the largest with ``n + 2*spans(n) + 2 <= seq_len``.
* ``span_long`` / ``span_x`` -- the same with (0.15, 8) and (0.5, 3): UL2's R- and X-denoisers.
* ``prefix`` -- prefix LM. ``<s> x1 .. x_{L-1}``; a split point is drawn uniformly; targets are
  the tokens after it. NOTE: the prefix is read with *causal* attention (the model is an
  unmodified ``LlamaForCausalLM``), not bidirectionally as in the original prefix LM; the
  objective differs from ``clm`` only in which tokens carry loss.
* ``ul2`` -- a UL2-style mixture: per example one of span (0.15, 3), span (0.15, 8), span (0.5, 3),
  span (0.5, 8) or prefix LM (weights 0.3 / 0.2 / 0.15 / 0.15 / 0.2). No paradigm (mode) tokens.
* ``span_clm`` -- span corruption + causal LM jointly: each example is span (0.15, 3) or
  ``clm`` with probability 1/2, so every batch mixes both losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ParameterError
from ..span_corruption import span_corrupt, span_raw_length

IGNORE = -100


@dataclass(frozen=True)
class SpecialIds:
    """Token ids the collators need."""

    bos: int
    eos: int
    pad: int
    sentinels: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tok) -> SpecialIds:
        sentinels = []
        i = 0
        while True:
            tid = tok.convert_tokens_to_ids(f"<extra_id_{i}>")
            if tid is None or tid == tok.unk_token_id:
                break
            sentinels.append(tid)
            i += 1
        return cls(tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tuple(sentinels))


def clm_example(window: list[int], seq_len: int, ids: SpecialIds) -> tuple[list[int], list[int]]:
    x = [ids.bos] + list(window[: seq_len - 1])
    return x, [IGNORE] + x[1:]


def prefix_example(
    window: list[int], seq_len: int, ids: SpecialIds, rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    x = [ids.bos] + list(window[: seq_len - 1])
    split = int(rng.integers(1, len(x) - 1))  # x[1:split+1] is the prefix (>= 1 token)
    return x, [IGNORE] * (split + 1) + x[split + 1 :]


def span_example(
    window: list[int],
    seq_len: int,
    ids: SpecialIds,
    rng: np.random.Generator,
    noise_density: float = 0.15,
    mean_span: float = 3.0,
) -> tuple[list[int], list[int]]:
    """Span corruption of the first ``span_raw_length(seq_len)`` tokens of ``window`` (the shared
    implementation in :mod:`ckpt_toolkit.span_corruption`, which the ``sc_ppl`` probe scores)."""
    n = span_raw_length(seq_len, noise_density, mean_span)
    try:
        ex = span_corrupt(
            list(window[:n]),
            rng,
            [[s] for s in ids.sentinels],
            [ids.bos],
            [ids.eos],
            noise_density,
            mean_span,
        )
    except ParameterError as err:
        raise ParameterError(
            f"{err}; train the tokenizer with more (zoo option tokenizer.n_sentinels)"
        ) from None
    return ex.ids, [IGNORE] * len(ex.inputs) + ex.targets


UL2_DENOISERS: list[tuple[float, tuple]] = [
    (0.3, ("span", 0.15, 3.0)),
    (0.2, ("span", 0.15, 8.0)),
    (0.15, ("span", 0.5, 3.0)),
    (0.15, ("span", 0.5, 8.0)),
    (0.2, ("prefix",)),
]

#: objective -> list of (probability, example kind) mixed per example
OBJECTIVES: dict[str, list[tuple[float, tuple]]] = {
    "clm": [(1.0, ("clm",))],
    "span": [(1.0, ("span", 0.15, 3.0))],
    "span_long": [(1.0, ("span", 0.15, 8.0))],
    "span_x": [(1.0, ("span", 0.5, 3.0))],
    "prefix": [(1.0, ("prefix",))],
    "ul2": UL2_DENOISERS,
    "span_clm": [(0.5, ("span", 0.15, 3.0)), (0.5, ("clm",))],
}


def make_example(
    kind: tuple, window: list[int], seq_len: int, ids: SpecialIds, rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    """One (input_ids, labels) pair of the given example kind, before padding."""
    if kind[0] == "clm":
        return clm_example(window, seq_len, ids)
    if kind[0] == "prefix":
        return prefix_example(window, seq_len, ids, rng)
    return span_example(window, seq_len, ids, rng, kind[1], kind[2])


class Collator:
    """Builds a batch for ``objective`` from raw windows; randomness comes from ``rng``."""

    def __init__(self, objective: str, seq_len: int, ids: SpecialIds):
        if objective not in OBJECTIVES:
            raise ParameterError(
                f"unknown objective {objective!r}; choose one of {sorted(OBJECTIVES)}"
            )
        self.objective, self.seq_len, self.ids = objective, seq_len, ids
        self.mix = OBJECTIVES[objective]
        self.probs = np.array([p for p, _ in self.mix]) / sum(p for p, _ in self.mix)

    def __call__(self, windows, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        rows_x, rows_y = [], []
        for w in windows:
            kind = (
                self.mix[int(rng.choice(len(self.mix), p=self.probs))][1]
                if len(self.mix) > 1
                else self.mix[0][1]
            )
            x, y = make_example(kind, list(w), self.seq_len, self.ids, rng)
            pad = self.seq_len - len(x)
            rows_x.append(x + [self.ids.pad] * pad)
            rows_y.append(y + [IGNORE] * pad)
        input_ids = torch.tensor(rows_x, dtype=torch.long)
        return {
            "input_ids": input_ids,
            "labels": torch.tensor(rows_y, dtype=torch.long),
            "attention_mask": (input_ids != self.ids.pad).long(),
        }
