"""Span-corruption perplexity for decoder-only models.

Formulation (cf. the span-corruption proxy of arXiv 2504.12491, §3, and T5's objective,
Raffel et al. 2020 §3.1.4): each held-out document is tokenized and cut into chunks; each chunk
is corrupted deterministically (seeded per document and chunk) by T5's ``random_spans_noise_mask``
with noise density 0.15 and mean span length 3. The model reads one sequence::

    [BOS] x1 x2 <extra_id_0> x6 ... <extra_id_1> ...   <extra_id_0> x3 x4 x5 <extra_id_1> ... [EOS]
          └──────── corrupted input ──────────────┘    └────────────── targets ───────────────┘

— the layout the zoo's span-corruption objectives train on (``ckpt_toolkit/zoo/objectives.py``) —
and we score only the target tokens after the first target sentinel: the dropped tokens, the
sentinel that opens the next span and the closing EOS (together they say where each span ends).
``sc_loss`` is their mean NLL (nats), ``sc_ppl = exp(sc_loss)``.

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

from .engine import model_max_length, prefix_token_id, token_nll
from .metrics import ratio_stderr, token_stderr
from .specs import ProbeSpec

CAPABILITY = "language_modeling"


def random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Partition ``num_items`` into ``num_segments`` non-empty segments at random (T5)."""
    first = np.arange(num_items - 1) < (num_segments - 1)
    rng.shuffle(first)
    first = np.concatenate([[0], first.astype(int)])
    seg_id = np.cumsum(first)
    return np.bincount(seg_id, minlength=num_segments)


def noise_mask(
    length: int, density: float, mean_span: float, rng: np.random.Generator
) -> np.ndarray:
    """T5's ``random_spans_noise_mask``: alternating non-noise / noise spans, non-noise first."""
    num_noise = int(round(length * density))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = max(1, int(round(num_noise / mean_span)))
    noise_lens = random_segmentation(num_noise, num_spans, rng)
    keep_lens = random_segmentation(length - num_noise, num_spans, rng)
    mask = np.zeros(length, dtype=bool)
    pos = 0
    for k, n in zip(keep_lens, noise_lens):
        pos += int(k)
        mask[pos : pos + int(n)] = True
        pos += int(n)
    return mask


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


def corrupt(
    tokens: list[int],
    mask: np.ndarray,
    sentinels: list[list[int]],
    end: list[int],
) -> tuple[list[int], list[int], int]:
    """(input ids, target ids, index in targets from which tokens are scored); the targets end
    with ``end`` (EOS)."""
    inp: list[int] = []
    tgt: list[int] = []
    s = 0
    i = 0
    while i < len(tokens):
        if mask[i]:
            inp.extend(sentinels[s])
            tgt.extend(sentinels[s])
            while i < len(tokens) and mask[i]:
                tgt.append(tokens[i])
                i += 1
            s += 1
        else:
            inp.append(tokens[i])
            i += 1
    tgt.extend(end)
    return inp, tgt, len(sentinels[0])


def build_examples(
    tokenizer, texts: list[str], window: int, density: float, mean_span: float, seed: int
) -> tuple[list[list[int]], list[int], list[int], str]:
    """Corrupted sequences, the position scoring starts at, the owning document, sentinel kind."""
    n_special = n_special_sentinels(tokenizer)
    kind = "special" if n_special >= 2 else "textual"
    # chunk so that spans + 1 sentinels suffice and input + targets fit the window
    per_tok = 1 + 2 * density / mean_span
    chunk = int((window - 4) / per_tok)
    if kind == "special":
        chunk = min(chunk, int((n_special - 0.5) * mean_span / density))
    else:
        chunk = int(chunk / 2)  # textual sentinels cost several tokens each
    chunk = max(chunk, 4)
    pre = prefix_token_id(tokenizer)
    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [pre]
    seqs: list[list[int]] = []
    starts: list[int] = []
    owner: list[int] = []
    for d, text in enumerate(texts):
        toks = tokenizer.encode(text, add_special_tokens=False)
        pending = [toks[i : i + chunk] for i in range(0, len(toks), chunk)]
        c = 0
        while pending:
            piece = pending.pop(0)
            if len(piece) < 2:
                continue
            rng = np.random.default_rng([seed, d, c])
            mask = noise_mask(len(piece), density, mean_span, rng)
            n_spans = int(np.sum(mask[1:] & ~mask[:-1]) + mask[0])
            if kind == "special" and n_spans > n_special:
                half = len(piece) // 2
                pending[:0] = [piece[:half], piece[half:]]
                continue
            sents, kind_now = sentinel_ids(tokenizer, n_spans)
            inp, tgt, skip = corrupt(piece, mask, sents, end)
            seq = [pre] + inp + tgt
            if len(seq) > window:
                half = len(piece) // 2
                pending[:0] = [piece[:half], piece[half:]]
                continue
            seqs.append(seq)
            starts.append(1 + len(inp) + skip)
            owner.append(d)
            kind = kind_now
            c += 1
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
