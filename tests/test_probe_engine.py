"""The scoring engine against independent plain-torch computations on a tiny real model."""

from __future__ import annotations

import logging
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from ckpt_toolkit.probes import (
    greedy_generate,
    perplexity,
    score_choices,
    sliding_windows,
    token_nll,
)
from ckpt_toolkit.probes.sc_ppl import build_examples, noise_mask


@pytest.fixture(scope="module")
def lm(tiny_checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    return model, tok


def full_pass_logprob(model, ctx_ids: list[int], cont_ids: list[int]) -> float:
    """lm-eval's computation: forward (ctx + cont)[:-1] once, sum the continuation log-probs."""
    ids = torch.tensor([ctx_ids + cont_ids[:-1]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    n = len(ctx_ids)
    return sum(logp[n - 1 + j, t].item() for j, t in enumerate(cont_ids))


def is_greedy(model, ctx_ids: list[int], cont_ids: list[int]) -> bool:
    with torch.no_grad():
        logits = model(torch.tensor([ctx_ids + cont_ids[:-1]])).logits[0]
    n = len(ctx_ids)
    return all(int(logits[n - 1 + j].argmax()) == t for j, t in enumerate(cont_ids))


def test_auto_method_picks_packed_for_llama(lm):
    from ckpt_toolkit.probes.engine import _choose_method

    assert _choose_method(*lm) == "packed"


def lmeval_split(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval 0.4's _encode_pair, written out independently."""
    n = len(context) - len(context.rstrip())
    if n:
        continuation, context = context[-n:] + continuation, context[:-n]
    whole = tok.encode(context + continuation)
    ctx = tok.encode(context)
    return ctx, whole[len(ctx) :]


REQUESTS = [
    ("Question: What is 3 plus 4?\nAnswer:", [" 7", " 12 apples", " eight", " 3 plus 4 is 7"]),
    ("The capital of Avalon is ", ["Brill", "the river Esk flows through it", "Tom"]),
    ("def add(a, b):\n", ["    return a + b", "    pass"]),
    ("Mira gave the red ball to Tom. Tom put the ball in the", [" box", " box.", " river"]),
    ("x", [" y", " z z z z z z z z"]),
]


SHOTS = "Question: What is 1 plus 1?\nAnswer: 2\n\nQuestion: What is 2 plus 5?\nAnswer: 7\n\n"
# k-shot style: every context starts with the same shots (a shared prefix forwarded once)
SHARED = [(SHOTS + ctx, choices) for ctx, choices in REQUESTS]


@pytest.mark.parametrize("method", ["packed", "cache"])
@pytest.mark.parametrize("batch_size,max_tokens", [(1, None), (3, None), (16, None), (16, 40)])
@pytest.mark.parametrize("requests", [REQUESTS, SHARED], ids=["distinct", "shared-shots"])
def test_kv_shared_choices_equal_separate_full_passes(lm, batch_size, max_tokens, method, requests):
    model, tok = lm
    got = score_choices(
        model, tok, requests, batch_size=batch_size, method=method, max_tokens=max_tokens
    )
    for (ctx, choices), scores in zip(requests, got):
        assert len(scores) == len(choices)
        for choice, s in zip(choices, scores):
            c, k = lmeval_split(tok, ctx, choice)
            ref = full_pass_logprob(model, c, k)
            assert s.n_tokens == len(k)
            assert s.is_greedy == is_greedy(model, c, k)
            assert s.logprob == pytest.approx(ref, abs=2e-5), (ctx, choice)


@pytest.mark.parametrize("method", ["packed", "cache"])
def test_context_longer_than_window_is_left_truncated(lm, method):
    model, tok = lm
    window = model.config.max_position_embeddings
    long_ctx = "The capital of Avalon is Brill. " * 60  # several hundred tokens
    choices = [" Brill", " the river Esk"]
    assert len(tok.encode(long_ctx)) > 2 * window
    (scores,) = score_choices(model, tok, [(long_ctx, choices)], method=method)
    pairs = [lmeval_split(tok, long_ctx, ch) for ch in choices]
    longest = max(len(k) for _, k in pairs)
    for (c, k), s in zip(pairs, scores):
        # lm-eval's rule for the longest choice: (ctx + cont)[-(window + 1):][:-1]
        c = c[len(c) + longest - 1 - window :]
        assert len(c) + len(k) - 1 <= window
        assert s.logprob == pytest.approx(full_pass_logprob(model, c, k), abs=2e-5)
        assert math.isfinite(s.logprob)


def hf_recipe_nll(model, seq: list[int], window: int, stride: int) -> tuple[float, int]:
    """The strided-window recipe of the transformers perplexity guide, in plain torch."""
    ids = torch.tensor([seq])
    total, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(seq), stride):
        end = min(begin + window, len(seq))
        trg_len = end - prev_end
        inp = ids[:, begin:end]
        tgt = inp.clone()
        tgt[:, :-trg_len] = -100
        with torch.no_grad():
            logits = model(inp).logits.double()
        lab = tgt[:, 1:]
        total += F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), lab.reshape(-1), reduction="sum"
        ).item()
        count += int((lab != -100).sum())
        prev_end = end
        if end == len(seq):
            break
    return total, count


TEXTS = [
    "The capital of Avalon is Brill. The river Esk flows through Brill. " * 6,
    "Question: What is 3 plus 4? Answer: 7",
    "def add(a, b):\n    return a + b\nprint(add(2, 3))  # 5\n" * 3,
    "If it rains, the ground gets wet.",
    "Mira gave the red ball to Tom. " * 9,
    "short",
    "Tom put the ball in the box. " * 4,
    "é ü → unicode bytes count " * 2,
    "a b c d e f g h i j k l m n o p",
]


def test_perplexity_matches_plain_torch_and_batch_sizes_agree(lm):
    model, tok = lm
    window, stride = 32, 16
    r1 = perplexity(model, tok, TEXTS, window=window, stride=stride, batch_size=1)
    r8 = perplexity(model, tok, TEXTS, window=window, stride=stride, batch_size=8)
    total, count, nbytes = 0.0, 0, 0
    for i, text in enumerate(TEXTS):
        seq = [tok.bos_token_id] + tok.encode(text, add_special_tokens=False)
        nll, n = hf_recipe_nll(model, seq, window, stride)
        assert r1.tokens[i] == n == len(seq) - 1  # every token scored once, padding never
        assert r1.nll[i] == pytest.approx(nll, rel=1e-5)
        total, count, nbytes = total + nll, count + n, nbytes + len(text.encode("utf-8"))
    # batch 1 and batch 8 agree to float32 rounding (padding is never scored)
    assert r8.tokens == r1.tokens
    for a, b in zip(r1.nll, r8.nll):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-6)
    assert r1.loss == pytest.approx(total / count, rel=1e-5)
    assert r1.ppl == pytest.approx(math.exp(total / count), rel=1e-5)
    assert r1.bpb == pytest.approx(total / math.log(2) / nbytes, rel=1e-5)


def test_perplexity_window_covering_document_equals_one_pass(lm):
    model, tok = lm
    text = "The capital of Avalon is Brill. The river Esk flows through Brill."
    seq = [tok.bos_token_id] + tok.encode(text, add_special_tokens=False)
    assert len(seq) <= model.config.max_position_embeddings
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0].double()
    ref = F.cross_entropy(logits[:-1], torch.tensor(seq[1:]), reduction="sum").item()
    res = perplexity(model, tok, [text])  # default window: the model's (128)
    assert res.nll[0] == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("n,window,stride", [(2, 2, 1), (10, 4, 4), (100, 32, 16), (33, 32, 32)])
def test_sliding_windows_score_every_token_once(n, window, stride):
    scored = []
    for begin, end, start in sliding_windows(n, window, stride):
        assert 0 < end - begin <= window and start >= 1
        scored.extend(range(begin + start, end))
    assert scored == list(range(1, n))


def test_greedy_generation_matches_transformers_generate(lm):
    model, tok = lm
    contexts = ["Question: What is 3 plus 4? Answer:", "def add(a, b):", "The capital of"]
    got = greedy_generate(model, tok, contexts, max_new_tokens=8, batch_size=2, stop=())
    for ctx, text in zip(contexts, got):
        ids = torch.tensor([tok.encode(ctx)])
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=8,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        ref = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        assert text == ref


def test_greedy_generation_is_the_same_in_any_batching(lm):
    """Token-budget batches (a tiny budget: one row per batch) and wide batches agree."""
    model, tok = lm
    contexts = ["Question: What is 3 plus 4? Answer:", "def add(a, b):", "The capital of", "x"]
    wide = greedy_generate(model, tok, contexts, max_new_tokens=6, batch_size=64, stop=())
    narrow = greedy_generate(model, tok, contexts, max_new_tokens=6, batch_size=64, max_tokens=1)
    assert wide == narrow


def test_give_up_stops_only_rows_that_cannot_match(lm):
    """A row stops once its stripped output is longer than ``give_up_chars``: that output is a
    prefix of the full one (so an exact match against answers that short is decided), and rows
    that stay short are generated in full."""
    model, tok = lm
    contexts = ["Question: What is 3 plus 4? Answer:", "def add(a, b):", "The capital of"]
    full = greedy_generate(model, tok, contexts, max_new_tokens=12, stop=())
    for limit in (0, 3, 10_000):
        cut = greedy_generate(model, tok, contexts, max_new_tokens=12, stop=(), give_up_chars=limit)
        for f, c in zip(full, cut):
            assert f.startswith(c)
            if len(c.strip()) <= limit:
                assert c == f  # never stopped early
            else:
                assert len(c.strip()) > limit and (c == f or len(c) < len(f))
    assert (
        greedy_generate(model, tok, contexts, max_new_tokens=12, stop=(), give_up_chars=10_000)
        == full
    )
    assert any(
        len(c) < len(f)
        for c, f in zip(
            greedy_generate(model, tok, contexts, max_new_tokens=12, stop=(), give_up_chars=0), full
        )
    )


def test_kv_cache_goes_under_the_keyword_the_model_takes(lm):
    """transformers 5 renamed forward's ``past_key_values`` to ``cache`` and drops the old name
    in 5.40: the engine passes whichever name the model's forward takes, so the installed
    release raises no deprecation warning and a 4.x-style signature still gets its cache."""
    from ckpt_toolkit.probes.engine import _cache_keyword

    class Old(torch.nn.Module):
        def forward(self, input_ids=None, past_key_values=None, use_cache=None):
            return input_ids

    class New(torch.nn.Module):
        def forward(self, input_ids=None, cache=None, use_cache=None):
            return input_ids

    assert _cache_keyword(Old()) == "past_key_values"
    assert _cache_keyword(New()) == "cache"
    model, tok = lm
    shots = "Q: one? A: 1\nQ: two? A: 2\nQ: three? A: 3\n"
    reqs = [(shots + "Q: four? A:", [" 4", " 5 6"]), (shots + "Q: five? A:", [" 5", " 7"])]
    notices: list[str] = []  # transformers also logs the rename (once per process)
    handler = logging.Handler()
    handler.emit = lambda record: notices.append(record.getMessage())
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*past_key_values.*", category=FutureWarning)
            cached = score_choices(model, tok, reqs, method="cache")
            packed = score_choices(model, tok, reqs, method="packed")  # shared shots: KV cache
            greedy_generate(model, tok, ["The capital of"], max_new_tokens=3, stop=())
    finally:
        hf_logger.removeHandler(handler)
    assert not [n for n in notices if "past_key_values" in n]
    for a, b in zip(cached, packed):
        assert [x.logprob for x in a] == pytest.approx([x.logprob for x in b], abs=1e-4)


def test_span_corruption_is_deterministic_and_reconstructs_the_text(lm):
    model, tok = lm
    rng = __import__("numpy").random.default_rng(0)
    mask = noise_mask(200, 0.15, 3.0, rng)
    assert mask.sum() == 30 and not mask[0]
    texts = [TEXTS[0], TEXTS[2]]
    seqs, starts, owner, kind = build_examples(tok, texts, 128, 0.15, 3.0, seed=0)
    again = build_examples(tok, texts, 128, 0.15, 3.0, seed=0)
    assert kind == "special" and (seqs, starts) == (again[0], again[1])
    sent = {tok.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(8)}
    rebuilt: dict[int, list[int]] = {}
    for seq, start, d in zip(seqs, starts, owner):
        assert len(seq) <= 128 and seq[0] == tok.bos_token_id
        # <extra_id_0> occurs twice: where the first span was cut, and where the targets start
        body = seq[1:]
        i0 = [i for i, t in enumerate(body) if t == min(sent)]
        assert len(i0) == 2
        inp, tgt = body[: i0[1]], body[i0[1] :]
        assert start == 1 + len(inp)  # every target token is scored, as the zoo's loss
        assert tgt[-1] == tok.eos_token_id  # the zoo's layout: targets end with EOS
        spans, cur = {}, None
        for t in tgt[:-1]:
            if t in sent:
                cur = t
                spans[cur] = []
            else:
                spans[cur].append(t)
        out = []
        for t in inp:
            out.extend(spans[t] if t in sent else [t])
        rebuilt.setdefault(d, []).extend(out)
    for d, text in enumerate(texts):
        assert rebuilt[d] == tok.encode(text, add_special_tokens=False)
    nll = token_nll(model, tok, seqs, starts, batch_size=4)
    with torch.no_grad():
        logits = model(torch.tensor([seqs[0]])).logits[0].double()
    s = starts[0]
    ref = F.cross_entropy(logits[s - 1 : -1], torch.tensor(seqs[0][s:]), reduction="none")
    assert torch.allclose(nll[0], ref, atol=1e-5)


def test_textual_sentinels_without_special_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=200,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(TEXTS * 5, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    seqs, starts, _, kind = build_examples(tok, TEXTS[:2], 128, 0.15, 3.0, seed=0)
    assert kind == "textual" and seqs
    marker = tok.encode("<extra_id_0>", add_special_tokens=False)
    assert len(marker) > 1
    s = seqs[0]
    assert any(s[i : i + len(marker)] == marker for i in range(len(s)))
    assert all(len(q) <= 128 and 1 < st < len(q) for q, st in zip(seqs, starts))


def test_single_document_ppl_rows_use_token_level_stderr(lm):
    from ckpt_toolkit.probes import ppl_rows
    from ckpt_toolkit.probes.specs import DEFAULTS, ProbeSpec

    model, tok = lm
    text = "The capital of Avalon is Brill. The river Esk flows through Brill."
    seq = [tok.bos_token_id] + tok.encode(text, add_special_tokens=False)
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0].double()
    nll = F.cross_entropy(logits[:-1], torch.tensor(seq[1:]), reduction="none")
    rows = {
        r["metric"]: r
        for r in ppl_rows(model, tok, ProbeSpec("ppl", "x", params=dict(DEFAULTS["ppl"])), [text])
    }
    assert rows["loss"]["value"] == pytest.approx(nll.mean().item(), rel=1e-5)
    se = (nll.std(unbiased=True) / math.sqrt(len(nll))).item()
    assert rows["loss"]["stderr"] == pytest.approx(se, rel=1e-4)
    assert rows["loss"]["provenance"]["stderr_unit"] == "token"
    assert rows["bpb"]["value"] == pytest.approx(
        nll.sum().item() / math.log(2) / len(text.encode()), rel=1e-5
    )


@pytest.mark.parametrize("n,window", [(1, 4), (2, 4), (5, 4), (9, 4), (10, 4), (37, 8), (64, 16)])
def test_lmeval_rolling_windows_are_lm_evals_windows(n, window):
    """Our windows forward and score exactly what lm-eval's get_rolling_token_windows +
    make_disjoint_window give to its _loglikelihood_tokens ((ctx + cont)[:-1] forwarded)."""
    utils = pytest.importorskip("lm_eval.utils")
    from ckpt_toolkit.probes.engine import lmeval_rolling_windows

    prefix, toks = 7, list(range(100, 100 + n))
    seq = [prefix] + toks
    theirs = [
        ((ctx + cont)[-(window + 1) :][:-1], cont)
        for ctx, cont in map(
            utils.make_disjoint_window,
            utils.get_rolling_token_windows(toks, prefix, window, context_len=1),
        )
    ]
    ours = [(seq[b:e][:-1], seq[b:e][s:]) for b, e, s in lmeval_rolling_windows(len(seq), window)]
    assert ours == theirs
    assert all(len(fwd) <= window for fwd, _ in ours)


def test_token_batches_respect_rows_and_token_budget():
    from ckpt_toolkit.probes.engine import token_batches

    lengths = [5, 100, 20, 100, 7, 60]
    # longest first; a batch holds <= 3 rows and rows x longest <= 200 tokens
    assert token_batches(lengths, 3, 200) == [[1, 3], [5, 2, 4], [0]]
    assert token_batches(lengths, 16, 50) == [[1], [3], [5], [2, 4], [0]]  # a long row alone
    assert token_batches(lengths, 1, 10**6) == [[1], [3], [5], [2], [4], [0]]


@pytest.mark.parametrize("rolling", ["sliding", "lmeval"])
def test_perplexity_does_not_depend_on_batching(lm, rolling):
    model, tok = lm
    stride = 16 if rolling == "sliding" else None
    kw = {"window": 32, "stride": stride, "rolling": rolling}
    one = perplexity(model, tok, TEXTS, batch_size=1, **kw)
    wide = perplexity(model, tok, TEXTS, batch_size=64, max_tokens=10**6, **kw)
    narrow = perplexity(model, tok, TEXTS, batch_size=64, max_tokens=40, **kw)
    for r in (wide, narrow):
        assert r.tokens == one.tokens
        for a, b in zip(r.nll, one.nll):
            assert a == pytest.approx(b, rel=1e-6, abs=1e-6)


def test_lmeval_rolling_scores_every_token_with_lm_evals_context(lm):
    """Plain torch, windows written out by hand for a 23-token text and a 10-token window:
    [P t0..t8] predicts t0..t9; [t9..t18] predicts t10..t19 (one token of context); the last
    window t12..t21 (filled with earlier context) predicts t20..t22."""
    model, tok = lm
    window = 10
    text = "The capital of Avalon is Brill. The river Esk flows through Brill. Tom and Mira."
    toks = tok.encode(text)[:23]
    text = tok.decode(toks)
    toks = tok.encode(text)
    assert len(toks) == 23
    pre = tok.bos_token_id

    def lp(inp: list[int], targets: list[int]) -> float:
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([inp])).logits[0].double(), -1)
        off = len(inp) - len(targets)
        return sum(logp[off + j, t].item() for j, t in enumerate(targets))

    ref = lp([pre] + toks[:9], toks[:10]) + lp(toks[9:19], toks[10:20]) + lp(toks[12:22], toks[20:])
    res = perplexity(model, tok, [text], window=window, rolling="lmeval")
    assert res.tokens == [23]
    assert -res.nll[0] == pytest.approx(ref, rel=1e-6)
    sliding = perplexity(model, tok, [text], window=window, stride=window)
    assert abs(sliding.nll[0] - res.nll[0]) > 1e-3  # the layouts differ, as documented


def test_prefix_token_replaces_bos(lm):
    from ckpt_toolkit.errors import ParameterError
    from ckpt_toolkit.probes.engine import resolve_prefix_token

    model, tok = lm
    text = "Mira gave the red ball to Tom."
    body = tok.encode(text, add_special_tokens=False)
    eos = tok.eos_token_id
    assert eos != tok.bos_token_id
    with torch.no_grad():
        logits = model(torch.tensor([[eos] + body])).logits[0].double()
    ref = F.cross_entropy(logits[:-1], torch.tensor(body), reduction="sum").item()
    for prefix in (tok.eos_token, str(eos), eos):
        assert resolve_prefix_token(tok, prefix) == eos
        for rolling in ("sliding", "lmeval"):
            res = perplexity(model, tok, [text], rolling=rolling, prefix=prefix)
            assert res.nll[0] == pytest.approx(ref, rel=1e-6)
    default = perplexity(model, tok, [text])
    assert abs(default.nll[0] - ref) > 1e-3  # BOS by default
    with pytest.raises(ParameterError, match="--prefix-token 'two words here'"):
        resolve_prefix_token(tok, "two words here")
    with pytest.raises(ParameterError, match="out of range"):
        resolve_prefix_token(tok, str(len(tok) + 5))


def test_log_items_writes_per_item_scores_beside_the_store(tmp_path, tiny_checkpoint, lm, capsys):
    """`ckpt probe --log-items`: one Parquet file per checkpoint and spec beside the store;
    each record checked against a full pass of its own, the store's aggregates against them."""
    import json

    import pandas as pd

    from ckpt_toolkit.cli import main
    from ckpt_toolkit.probes.item_log import item_log_dir, read_item_log
    from ckpt_toolkit.store import ResultsStore
    from ckpt_toolkit.tasks import write_task_file

    model, tok = lm
    docs = [TEXTS[i] for i in (1, 3, 6, 7)]  # each fits the 128-token window: one pass
    (tmp_path / "heldout").mkdir()
    with (tmp_path / "heldout" / "web.jsonl").open("w") as fh:
        fh.writelines(json.dumps({"text": t}) + "\n" for t in docs)
    items = [
        {
            "id": f"q{i}",
            "context": f"Question: What is {i} plus {i + 1}?\nAnswer:",
            "choices": [f" {2 * i + 1}", f" {2 * i + 2}", " zero"],
            "gold": i % 3,
            "capability": "math",
            "split": "train" if i < 2 else "test",
        }
        for i in range(8)
    ]
    write_task_file(tmp_path / "tasks" / "add.jsonl", items)
    store = tmp_path / "s.duckdb"
    argv = ["probe", str(tiny_checkpoint), "--store", str(store), "--probes", "ppl,kshot"]
    argv += ["--heldout", str(tmp_path / "heldout"), "--tasks", str(tmp_path / "tasks")]
    assert main([*argv, "--shots", "1", "--log-items", "--quiet", "--threads", "1"]) == 0
    assert f"per-item scores: {item_log_dir(store)}/" in capsys.readouterr().out

    files = sorted(item_log_dir(store).glob("*/*.parquet"))
    assert [f.name.split("-")[0] for f in files] == ["kshot", "ppl"]
    log = read_item_log(store)
    rows = ResultsStore(store).to_pandas()

    ppl = log[log["probe"] == "ppl"].sort_values("item", key=lambda s: s.astype(int))
    assert list(ppl["item"]) == ["0", "1", "2", "3"] and set(ppl["task"]) == {"web"}
    for (_, rec), text in zip(ppl.iterrows(), docs):
        seq = [tok.bos_token_id] + tok.encode(text, add_special_tokens=False)
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0].double()
        ref = -F.cross_entropy(logits[:-1], torch.tensor(seq[1:]), reduction="sum").item()
        assert rec["loglik"] == pytest.approx(ref, rel=1e-5)
        assert rec["n_tokens"] == len(seq) - 1 and rec["n_bytes"] == len(text.encode())
    loss = rows[(rows["probe"] == "ppl") & (rows["metric"] == "loss")]["value"].item()
    assert loss == pytest.approx(-ppl["loglik"].sum() / ppl["n_tokens"].sum(), rel=1e-9)

    ks = log[log["probe"] == "kshot"].set_index("item")
    assert sorted(ks.index) == [f"q{i}" for i in range(2, 8)] and set(ks["shots"]) == {1}
    shot = ResultsStore(store).to_pandas(probe="kshot")["provenance"].iloc[0]
    shot_id = json.loads(shot)["shot_ids"][0] if isinstance(shot, str) else shot["shot_ids"][0]
    s = next(it for it in items if it["id"] == shot_id)
    prefix = f"{s['context']}{s['choices'][s['gold']]}\n\n"
    for it in items[2:]:
        rec = ks.loc[it["id"]]
        lls = [
            full_pass_logprob(model, *lmeval_split(tok, prefix + it["context"], c))
            for c in it["choices"]
        ]
        assert list(rec["logliks"]) == pytest.approx(lls, abs=2e-5)
        best = max(range(3), key=lambda j: lls[j])
        assert rec["pred"] == str(best) and rec["gold"] == str(it["gold"])
        assert rec["acc"] == float(best == it["gold"])
    acc = rows[(rows["probe"] == "kshot") & (rows["metric"] == "acc")]["value"].item()
    assert acc == pytest.approx(ks["acc"].mean())
    assert isinstance(log, pd.DataFrame)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--rolling", "strided"], "--rolling must be one of sliding, lmeval"),
        (["--rolling", "lmeval", "--stride", "8"], "--stride does not apply to --rolling lmeval"),
    ],
)
def test_cli_rejects_bad_rolling_options_before_loading(args, message, tmp_path, capsys):
    from ckpt_toolkit.cli import main

    argv = ["probe", str(tmp_path / "missing"), "--store", str(tmp_path / "s.duckdb")]
    assert main([*argv, "--probes", "ppl", *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_rolling_and_prefix_token_reach_the_probe(tmp_path, tiny_checkpoint, lm):
    import json

    from ckpt_toolkit.cli import main
    from ckpt_toolkit.store import ResultsStore

    _, tok = lm
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "web.txt").write_text(TEXTS[0] + "\n\n" + TEXTS[3])
    store = tmp_path / "s.duckdb"
    argv = ["probe", str(tiny_checkpoint), "--store", str(store), "--probes", "ppl", "--quiet"]
    argv += ["--heldout", str(tmp_path / "h"), "--window", "32", "--rolling", "lmeval"]
    assert main([*argv, "--prefix-token", tok.eos_token, "--threads", "1"]) == 0
    row = ResultsStore(store).to_pandas(metric="loss").iloc[0]
    prov = (
        row["provenance"] if isinstance(row["provenance"], dict) else json.loads(row["provenance"])
    )
    assert prov["rolling"] == "lmeval" and prov["stride"] is None
    assert prov["prefix_token_id"] == tok.eos_token_id and prov["window"] == 32
    model, _ = lm
    ref = perplexity(model, tok, [TEXTS[0], TEXTS[3]], window=32, rolling="lmeval", prefix="</s>")
    assert row["value"] == pytest.approx(ref.loss, rel=1e-6)


def test_bfloat16_scores_stay_close_to_float32(lm, tiny_checkpoint):
    """--dtype bfloat16 (the model's weights and activations in bf16, the vocabulary
    log-softmax in float32): per-document log-likelihoods within 0.5% of the float32 model's,
    choice log-likelihoods within 2% (or 0.05 nats)."""
    from transformers import AutoModelForCausalLM

    model32, tok = lm
    model16 = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.bfloat16).eval()
    nll32 = perplexity(model32, tok, TEXTS).nll
    nll16 = perplexity(model16, tok, TEXTS).nll
    for a, b in zip(nll32, nll16):
        assert b == pytest.approx(a, rel=5e-3)
    s32 = score_choices(model32, tok, REQUESTS)
    s16 = score_choices(model16, tok, REQUESTS)
    for r32, r16 in zip(s32, s16):
        lp32, lp16 = [s.logprob for s in r32], [s.logprob for s in r16]
        assert lp16 == pytest.approx(lp32, rel=2e-2, abs=5e-2)
