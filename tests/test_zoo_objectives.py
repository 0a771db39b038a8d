"""Each objective's collator on hand-checked examples: which tokens are inputs, which targets."""

from __future__ import annotations

import numpy as np
import pytest

from ckpt_toolkit.errors import ParameterError
from ckpt_toolkit.span_corruption import (
    corrupt_with_mask,
    random_spans_noise_mask,
    span_raw_length,
)
from ckpt_toolkit.zoo import objectives as obj
from ckpt_toolkit.zoo.objectives import IGNORE, Collator, SpecialIds

IDS = SpecialIds(bos=1, eos=2, pad=0, sentinels=(100, 101, 102, 103, 104, 105, 106, 107))
N = IGNORE


def test_clm_targets_every_token_after_bos():
    x, y = obj.clm_example([10, 11, 12, 13, 14, 15], seq_len=5, ids=IDS)
    assert x == [1, 10, 11, 12, 13]
    assert y == [N, 10, 11, 12, 13]


def test_prefix_lm_loss_only_after_the_split():
    rng = np.random.default_rng(0)
    split = int(np.random.default_rng(0).integers(1, 5))  # what the collator draws
    x, y = obj.prefix_example([10, 11, 12, 13, 14], seq_len=6, ids=IDS, rng=rng)
    assert x == [1, 10, 11, 12, 13, 14]
    assert y == [N] * (split + 1) + x[split + 1 :]
    assert 1 <= split <= 4  # at least one prefix token and one target token


def test_span_corruption_hand_checked():
    # raw tokens 10..19 with noise at positions 2,3 and 7 (two spans)
    mask = np.zeros(10, dtype=bool)
    mask[[2, 3, 7]] = True
    ex = corrupt_with_mask(list(range(10, 20)), mask, [[100], [101], [102]], [1], [2])
    inputs = [1, 10, 11, 100, 14, 15, 16, 101, 18, 19]
    targets = [100, 12, 13, 101, 17, 2]
    assert ex.inputs == inputs and ex.targets == targets
    # multi-token sentinels are laid out whole, in inputs and targets alike
    ex = corrupt_with_mask(list(range(10, 20)), mask, [[7, 70], [7, 71]], [1], [2])
    assert ex.inputs == [1, 10, 11, 7, 70, 14, 15, 16, 7, 71, 18, 19]
    assert ex.targets == [7, 70, 12, 13, 7, 71, 17, 2]


def test_span_example_is_the_shared_corruption_with_loss_on_targets():
    seq_len, window = 32, list(range(10, 60))
    n = span_raw_length(seq_len)  # n + 2 * spans + 2 <= seq_len, as large as possible

    def spans(k: int) -> int:  # T5's count of noise spans, by hand
        return max(1, round(round(k * 0.15) / 3))

    assert n + 2 * spans(n) + 2 <= seq_len < (n + 1) + 2 * spans(n + 1) + 2
    x, y = obj.span_example(window, seq_len, IDS, np.random.default_rng(5))
    mask = random_spans_noise_mask(n, 0.15, 3.0, np.random.default_rng(5))
    ex = corrupt_with_mask(window[:n], mask, [[s] for s in IDS.sentinels], [1], [2])
    assert x == ex.inputs + ex.targets
    assert y == [N] * len(ex.inputs) + ex.targets


@pytest.mark.parametrize("density,mean_span", [(0.15, 3.0), (0.15, 8.0), (0.5, 3.0)])
def test_span_corruption_reconstructs_and_fits(density, mean_span):
    rng = np.random.default_rng(1)
    seq_len = 64
    window = list(range(200, 200 + seq_len))
    n = span_raw_length(seq_len, density, mean_span)
    for _ in range(20):
        x, y = obj.span_example(window, seq_len, IDS, rng, density, mean_span)
        assert len(x) == len(y) <= seq_len
        n_in = sum(1 for t in y if t == N)
        inputs, targets = x[:n_in], x[n_in:]
        assert inputs[0] == 1 and targets[-1] == 2 and targets[0] == 100
        assert y[n_in:] == targets  # loss on every target token, none on inputs
        # fill each sentinel in the input with its span from the targets -> the original text
        spans, cur = {}, None
        for t in targets[:-1]:
            if t in IDS.sentinels:
                cur = t
                spans[cur] = []
            else:
                spans[cur].append(t)
        rebuilt = [t for tok in inputs[1:] for t in (spans[tok] if tok in spans else [tok])]
        assert rebuilt == window[:n]
        noise = sum(len(v) for v in spans.values())
        assert noise == round(n * density)
        assert len(spans) == max(1, round(noise / mean_span))


def test_noise_mask_statistics():
    rng = np.random.default_rng(2)
    lengths = []
    for _ in range(300):
        m = random_spans_noise_mask(100, 0.15, 3.0, rng)
        assert m.sum() == 15 and not m[0]
        starts = np.flatnonzero(m & ~np.r_[False, m[:-1]])
        assert len(starts) == 5
        lengths.append(15 / len(starts))
    assert np.mean(lengths) == pytest.approx(3.0)


def _batch(objective, n=200, seq_len=48):
    windows = np.arange(n * seq_len).reshape(n, seq_len) % 90 + 10
    return Collator(objective, seq_len, IDS)(windows, np.random.default_rng(0))


def test_collator_pads_with_ignored_labels():
    short = np.arange(4 * 30).reshape(4, 30) % 90 + 10  # windows shorter than seq_len
    b = Collator("clm", 48, IDS)(short, np.random.default_rng(0))
    assert b["input_ids"].shape == b["labels"].shape == (4, 48)
    assert (b["input_ids"][:, 31:] == IDS.pad).all()
    pad = b["input_ids"] == IDS.pad
    assert pad.any() and (b["labels"][pad] == IGNORE).all()
    assert (b["attention_mask"] == (~pad).long()).all()


def test_mixtures_mix_per_example():
    has_sentinel = lambda b: (b["input_ids"] >= 100).any(dim=1).float().mean().item()  # noqa: E731
    assert has_sentinel(_batch("clm")) == 0
    assert has_sentinel(_batch("span")) == 1
    assert 0.35 < has_sentinel(_batch("span_clm")) < 0.65  # half span corruption, half clm
    assert 0.7 < has_sentinel(_batch("ul2")) < 0.9  # 80% span denoisers, 20% prefix LM
    # prefix LM: a contiguous ignored prefix, then targets to the end
    b = _batch("prefix")
    lab = b["labels"]
    first = (lab != IGNORE).int().argmax(dim=1)
    for row, f in zip(lab, first):
        assert (row[:f] == IGNORE).all() and (row[f:] != IGNORE).all() and f >= 2


def test_unknown_objective_and_too_few_sentinels():
    with pytest.raises(ParameterError, match="unknown objective"):
        Collator("mlm", 16, IDS)
    few = SpecialIds(1, 2, 0, (100,))
    with pytest.raises(ParameterError, match="sentinel"):
        Collator("span_x", 64, few)(np.arange(64)[None] + 10, np.random.default_rng(0))


# -- the sc_ppl probe scores exactly what the zoo trains on ------------------------------------
TEXT = " ".join(
    [
        "The capital of Avalon is Brill. The river Esk flows through Brill.",
        "Mira gave the red ball to Tom. Tom put the ball in the box.",
        "If it rains, the ground gets wet. The ground is wet, so maybe it rained.",
    ]
    * 3
)


@pytest.mark.parametrize("seed", [0, 7])
def test_probe_corrupts_exactly_as_the_zoo_trains(tiny_tokenizer, seed):
    from ckpt_toolkit.probes.sc_ppl import build_examples

    tok, seq_len = tiny_tokenizer, 64
    ids = SpecialIds.from_tokenizer(tok)
    raw = tok.encode(TEXT, add_special_tokens=False)
    n = span_raw_length(seq_len)
    assert len(raw) > 2 * n  # several chunks
    seqs, starts, owner, kind = build_examples(tok, [TEXT], seq_len, 0.15, 3.0, seed)
    assert kind == "special" and owner == [0] * len(seqs)
    for c, (seq, start) in enumerate(zip(seqs, starts)):
        chunk = raw[c * n : (c + 1) * n]
        if len(chunk) < n:  # the zoo trains on full windows only
            continue
        # the zoo's example for this chunk with the generator the probe seeds for it
        x, y = obj.span_example(chunk, seq_len, ids, np.random.default_rng([seed, 0, c]))
        assert seq == x  # identical token ids: inputs and targets
        scored = [i for i, lab in enumerate(y) if lab != IGNORE]
        assert scored == list(range(start, len(seq)))  # the probe scores the zoo's loss tokens
    assert sum(len(raw[c * n : (c + 1) * n]) == n for c in range(len(seqs))) >= 2


def test_sc_loss_equals_the_zoo_training_loss(tiny_checkpoint, tiny_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from ckpt_toolkit.probes.registry import get_probe
    from ckpt_toolkit.probes.specs import ProbeSpec

    tok, seq_len, seed = tiny_tokenizer, 64, 3
    model = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint)).eval()
    raw = tok.encode(TEXT, add_special_tokens=False)
    n = span_raw_length(seq_len)
    text = tok.decode(raw[:n])  # one full chunk
    assert tok.encode(text, add_special_tokens=False) == raw[:n]
    probe = get_probe("sc_ppl")
    params = probe.validate({"window": seq_len, "seed": seed})
    rows = probe.run(model, tok, ProbeSpec("sc_ppl", "d", params=params), [text], 4)
    sc_loss = next(r["value"] for r in rows if r["metric"] == "sc_loss")
    x, y = obj.span_example(
        raw[:n], seq_len, SpecialIds.from_tokenizer(tok), np.random.default_rng([seed, 0, 0])
    )
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([x]), labels=torch.tensor([y])).loss.item()
    assert sc_loss == pytest.approx(loss, rel=1e-5)
