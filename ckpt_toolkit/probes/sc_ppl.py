"""Span-corruption perplexity for decoder-only models (probe ``sc_ppl``).

Formulation (cf. the span-corruption proxy of arXiv 2504.12491, §3, and T5's objective,
Raffel et al. 2020 §3.1.4): each held-out document is tokenized and cut into consecutive chunks
of the length the zoo trains span corruption on for the same window
(:func:`ckpt_toolkit.span_corruption.span_raw_length`); each chunk is corrupted by the one shared
implementation, :func:`ckpt_toolkit.span_corruption.span_corrupt` (T5's
``random_spans_noise_mask``, noise density 0.15, mean span 3), with a generator seeded by
``(seed, document, chunk)``. The model reads one sequence::

    [BOS] x1 x2 <extra_id_0> x6 ... <extra_id_1> ...   <extra_id_0> x3 x4 x5 <extra_id_1> ... [EOS]
    └────────────── inputs ─────────────────────┘    └────────────── targets ───────────────┘

— token for token what the zoo's span-corruption objectives train on
(``ckpt_toolkit/zoo/objectives.py``) — and we score exactly the tokens the zoo puts its loss on:
every target token (the sentinels, the dropped tokens and the closing EOS). ``sc_loss`` is their
mean NLL (nats), ``sc_ppl = exp(sc_loss)``.

Why: checkpoints pretrained with span corruption (or a UL2 mixture) are scored in the format they
were trained on, where plain left-to-right perplexity undersells them; causal-only checkpoints
still get a well-defined number (they must infer the spans from the bidirectional context in the
input), which is exactly the in-filling ability the proxy is meant to capture.

Sentinels: if the tokenizer has ``<extra_id_0>``, ``<extra_id_1>``, … as single tokens they are
used (chunks are sized so a chunk needs no more sentinels than exist); otherwise the literal text
``<extra_id_i>`` is tokenized as ordinary text ("textual sentinels", several tokens each) and
the provenance says ``"sentinels": "textual"``.
"""

from __future__ import annotations

import math

import numpy as np

from ..span_corruption import (
    MEAN_SPAN,
    NOISE_DENSITY,
    num_noise_spans,
    random_spans_noise_mask,
    span_corrupt,
    span_raw_length,
)
from .engine import model_max_length, prefix_token_id, token_nll
from .metrics import ratio_stderr, token_stderr
from .registry import LANGUAGE_MODELING, SC_PPL, Param, Probe, register_probe
from .specs import ProbeSpec

CAPABILITY = LANGUAGE_MODELING

#: T5's noise mask (kept under its old name for notebooks and tests)
noise_mask = random_spans_noise_mask


def sentinel_ids(tokenizer, n: int) -> tuple[list[list[int]], str]:
    """Token ids of sentinels 0..n-1 and whether they are ``special`` or ``textual``."""
    special: list[list[int]] = []
    unk = tokenizer.unk_token_id
    for i in range(n):
        tid = tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>")
        if tid is None or tid == unk:
            break
        special.append([int(tid)])
    if len(special) == n:
        return special, "special"
    return [
        tokenizer.encode(f"<extra_id_{i}>", add_special_tokens=False) for i in range(n)
    ], "textual"


def n_special_sentinels(tokenizer, limit: int = 1000) -> int:
    """How many ``<extra_id_i>`` single tokens the tokenizer has (0 if none)."""
    unk = tokenizer.unk_token_id
    n = 0
    while n < limit:
        tid = tokenizer.convert_tokens_to_ids(f"<extra_id_{n}>")
        if tid is None or tid == unk:
            break
        n += 1
    return n


def chunk_length(window: int, density: float, mean_span: float, n_special: int) -> int:
    """Raw tokens per chunk: the zoo's ``span_raw_length(window)`` (single-token sentinels), cut
    down until the chunk needs no more sentinels than the tokenizer has."""
    n = span_raw_length(window, density, mean_span)
    while n > 2 and num_noise_spans(n, density, mean_span)[1] > n_special:
        n -= 1
    return n


def _textual_chunk_length(tokenizer, window: int, density: float, mean_span: float) -> int:
    """Raw tokens per chunk with textual (multi-token) sentinels: the largest whose layout fits."""
    n = span_raw_length(window, density, mean_span)
    while n > 2:
        spans = num_noise_spans(n, density, mean_span)[1]
        width = max(len(s) for s in sentinel_ids(tokenizer, spans)[0])
        if n + 2 * width * spans + 2 <= window:
            break
        n -= 1
    return n


def build_examples(
    tokenizer, texts: list[str], window: int, density: float, mean_span: float, seed: int
) -> tuple[list[list[int]], list[int], list[int], str]:
    """Corrupted sequences, the position scoring starts at, the owning document, sentinel kind.

    Sequence ``i`` is ``span_corrupt(chunk, default_rng([seed, d, c]), ...)`` of chunk ``c`` of
    document ``d``; scoring starts at its first target token.
    """
    n_special = n_special_sentinels(tokenizer)
    if n_special >= 1:
        kind = "special"
        chunk = chunk_length(window, density, mean_span, n_special)
        sents = [
            [int(tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>"))] for i in range(n_special)
        ]
    else:
        kind = "textual"
        chunk = _textual_chunk_length(tokenizer, window, density, mean_span)
        spans = num_noise_spans(chunk, density, mean_span)[1] if chunk >= 2 else 1
        sents = sentinel_ids(tokenizer, max(1, spans))[0]
    pre = [prefix_token_id(tokenizer)]
    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else pre
    seqs: list[list[int]] = []
    starts: list[int] = []
    owner: list[int] = []
    for d, text in enumerate(texts):
        toks = tokenizer.encode(text, add_special_tokens=False)
        for c, i in enumerate(range(0, len(toks), chunk)):
            piece = toks[i : i + chunk]
            if len(piece) < 2:
                continue
            rng = np.random.default_rng([seed, d, c])
            ex = span_corrupt(piece, rng, sents, pre, end, density, mean_span)
            seqs.append(ex.ids)
            starts.append(len(ex.inputs))
            owner.append(d)
    return seqs, starts, owner, kind


def sc_ppl_rows(
    model, tokenizer, spec: ProbeSpec, texts: list[str], batch_size: int = 8
) -> list[dict]:
    """Rows ``sc_loss`` (mean NLL of target tokens, nats) and ``sc_ppl`` for one domain."""
    texts = texts[: spec.limit] if spec.limit else texts
    p = spec.params
    window = p.get("window") or model_max_length(model, tokenizer)
    seqs, starts, owner, kind = build_examples(
        tokenizer, texts, window, p["noise_density"], p["mean_span"], p["seed"]
    )
    nlls = token_nll(model, tokenizer, seqs, starts, batch_size=batch_size)
    nll = [0.0] * len(texts)
    ntok = [0] * len(texts)
    sq = 0.0
    for d, t in zip(owner, nlls):
        nll[d] += float(t.sum())
        ntok[d] += int(t.numel())
        sq += float((t * t).sum())
    used = [i for i in range(len(texts)) if ntok[i] > 0]
    loss, se = ratio_stderr([nll[i] for i in used], [ntok[i] for i in used])
    stderr_unit = "document"
    if se is None:  # one document: token-level stderr
        stderr_unit = "token"
        se = token_stderr(sum(nll), sq, sum(ntok))
    prov = {
        "window": window,
        "sentinels": kind,
        "stderr_unit": stderr_unit,
        "documents": len(used),
        "sequences": len(seqs),
        "target_tokens": sum(ntok),
        "noise_density": p["noise_density"],
        "mean_span": p["mean_span"],
        "seed": p["seed"],
    }
    n = len(used)
    return [
        {"metric": "sc_loss", "value": loss, "stderr": se, "n": n, "provenance": prov},
        {
            "metric": "sc_ppl",
            "value": math.exp(loss),
            "stderr": None if se is None else math.exp(loss) * se,
            "n": n,
            "provenance": prov,
        },
    ]


PROBE = register_probe(
    Probe(
        name=SC_PPL,
        description="span-corruption perplexity of held-out text (the zoo's T5-style layout)",
        needs="heldout",
        params=(
            Param(
                "noise_density",
                float,
                NOISE_DENSITY,
                "share of tokens dropped into spans",
                minimum=0.0,
                maximum=1.0,
                exclusive_minimum=True,
                exclusive_maximum=True,
            ),
            Param("mean_span", float, MEAN_SPAN, "mean noise-span length in tokens", minimum=1.0),
            Param("seed", int, 0, "seed of the noise masks (with document and chunk)", minimum=0),
            Param(
                "window",
                int,
                None,
                "tokens per corrupted sequence (default: the model's)",
                minimum=8,
                nullable=True,
                option="--window",
            ),
        ),
        metrics=("sc_loss", "sc_ppl"),
        run=sc_ppl_rows,
        capability=CAPABILITY,
        # 2: the zoo's span corruption (shared implementation, zoo chunk length, every target
        # token scored); version 1 used its own noise mask and skipped the first sentinel
        version=2,
    )
)
