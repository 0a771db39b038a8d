"""The ceiling that benchmarks/probe_vs_lmeval.py prints rests on counting what our engine
computes; these tests count it independently while the engine runs (forward hooks, the attention
masks it builds, and torch's FlopCounterMode for the matrix products)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ckpt_toolkit.probes import engine, perplexity, score_choices
from ckpt_toolkit.tasks import load_task_file, write_task_file

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "probe_vs_lmeval.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("probe_vs_lmeval", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def model_and_tok(tmp_path_factory, tiny_tokenizer):
    from helpers import make_tiny_checkpoint
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = make_tiny_checkpoint(
        tmp_path_factory.mktemp("ceiling") / "m", tokenizer=tiny_tokenizer, max_positions=512
    )
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    score_choices(model, tok, [("a b", [" c", " d e"])], method="packed")  # one-time checks
    return model, tok


def _forwarded(model):
    """Record the (rows, width) of every pass through the transformer body."""
    shapes: list[tuple[int, int]] = []

    def hook(_module, args, kwargs):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]
        shapes.append(tuple(ids.shape))

    return shapes, model.base_model.register_forward_pre_hook(hook, with_kwargs=True)


def _linear_flops(model, tokens: int, scored: int) -> int:
    body = sum(p.numel() for p in model.base_model.parameters() if p.dim() == 2)
    body -= model.get_input_embeddings().weight.numel()
    return 2 * body * tokens + 2 * model.get_output_embeddings().weight.numel() * scored


def test_rolling_work_is_what_the_engine_forwards(bench, model_and_tok):
    model, tok = model_and_tok
    docs = ["the quick brown fox jumps " * 30, "over the lazy dog. " * 7, "short"]
    shapes, handle = _forwarded(model)
    try:
        with FlopCounterMode(display=False) as counter:
            res = perplexity(model, tok, docs, window=32, rolling="lmeval", batch_size=1)
    finally:
        handle.remove()
    tokens, scored, pairs = bench.our_work(tok, "rolling", docs, 32, 512)
    assert all(rows == 1 for rows, _ in shapes)  # batch 1: no padding in the counts
    assert tokens == sum(w for _, w in shapes) > 3 * 32  # several windows per long document
    assert scored == sum(res.tokens)
    assert pairs == sum(w * (w + 1) // 2 for _, w in shapes)  # causal
    mm = counter.get_flop_counts()["Global"][torch.ops.aten.mm]  # body and answer positions
    assert mm == _linear_flops(model, tokens, scored)
    cfg = model.config
    expected = mm + 4 * cfg.hidden_size * pairs * cfg.num_hidden_layers
    assert bench.our_flops(model, tok, "rolling", docs, 32, 512) == expected


@pytest.mark.parametrize("shared", [False, True])
def test_multiple_choice_work_is_what_the_engine_forwards(
    bench, model_and_tok, tmp_path, monkeypatch, shared
):
    model, tok = model_and_tok
    items = load_task_file(write_task_file(tmp_path / "t.jsonl", bench.build_task(6, 12)))
    reqs = bench.mc_requests(items, 2, per_item=not shared)
    case = "mc shared context" if shared else "mc like-for-like"
    masks: list[int] = []
    tree_mask = engine._tree_mask

    def recording(*args, **kwargs):
        out = tree_mask(*args, **kwargs)
        masks.append(int(out.sum()))
        return out

    monkeypatch.setattr(engine, "_tree_mask", recording)
    shapes, handle = _forwarded(model)
    pairs_in = [(c, ch) for c, ch, _ in reqs]
    try:
        with FlopCounterMode(display=False) as counter:
            score_choices(
                model,
                tok,
                pairs_in,
                batch_size=1,
                method="packed",
                share_prefix=shared,
                max_length=512,
            )
    finally:
        handle.remove()
    tokens, scored, pairs = bench.our_work(tok, case, reqs, 512, 512)
    assert tokens == sum(r * w for r, w in shapes)
    rows = [w for _, w in shapes[1:]] if shared else [w for _, w in shapes]
    prefix = shapes[0][1] if shared else 0
    assert len(rows) == len(reqs)  # one pass per item: batch 1, no padding
    if shared:  # the shots, forwarded once
        assert prefix >= engine.MIN_SHARED_PREFIX
    # the prefix pass is causal; every row attends to the whole prefix plus its tree mask
    assert pairs == prefix * (prefix + 1) // 2 + prefix * sum(rows) + sum(masks)
    mm = counter.get_flop_counts()["Global"][torch.ops.aten.mm]
    assert mm == _linear_flops(model, tokens, scored)
