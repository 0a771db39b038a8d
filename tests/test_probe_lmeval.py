"""Agreement with lm-evaluation-harness 0.4 on the same model, prompts and choices (float32, CPU).

Our kshot prompts (3 shots) are exported to lm-eval's task format and run at num_fewshot 0 with
``logits_cache=False``: lm-eval's logits cache shares one forward pass among requests whose
tokens differ only in the last one, and reads wrong positions for the shorter of two such
requests when their continuations differ in length.
"""

from __future__ import annotations

import os

import pytest
import torch

from ckpt_toolkit.probes import build_prompt, kshot_rows, score_choices, select_shots
from ckpt_toolkit.probes.kshot import eval_items
from ckpt_toolkit.probes.lmeval_export import export_lmeval_task
from ckpt_toolkit.probes.specs import DEFAULTS, ProbeSpec
from ckpt_toolkit.tasks import load_task_file, write_task_file

lm_eval = pytest.importorskip("lm_eval")


def test_per_item_loglikelihoods_and_accuracy_match_lm_eval(tmp_path, tiny_tokenizer):
    from helpers import make_tiny_checkpoint
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from test_probe_sweep import mc_items
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    torch.set_num_threads(1)
    # a window long enough that no prompt is truncated (truncation rules differ: see probes.md)
    path = make_tiny_checkpoint(
        tmp_path / "model", seed=3, tokenizer=tiny_tokenizer, max_positions=512
    )
    items = load_task_file(write_task_file(tmp_path / "add.jsonl", mc_items(6, 40)))
    yaml_path = export_lmeval_task("add", items, tmp_path / "lmeval", shots=3)

    res = simple_evaluate(
        model="hf",
        model_args=f"pretrained={path},logits_cache=False,dtype=float32",
        tasks=[yaml_path.stem],
        task_manager=TaskManager(include_path=str(yaml_path.parent), include_defaults=False),
        batch_size=8,
        device="cpu",
        log_samples=True,
    )
    samples = sorted(res["samples"][yaml_path.stem], key=lambda s: s["doc_id"])
    theirs = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    shots = select_shots("add", items, 3, seed=DEFAULTS["kshot"]["seed"])
    evals = eval_items("add", items)
    reqs = [(build_prompt(shots, it), list(it.choices)) for it in evals]
    ours = [[s.logprob for s in row] for row in score_choices(model, tok, reqs, batch_size=8)]

    assert len(ours) == len(theirs) == 40
    worst = max(abs(a - b) for o, t in zip(ours, theirs) for a, b in zip(o, t))
    assert worst < 1e-4, worst
    for o, t, s in zip(ours, theirs, samples):
        assert o.index(max(o)) == t.index(max(t))
        assert float(o.index(max(o)) == s["target"]) == s["acc"]

    spec = ProbeSpec("kshot", "add", 3, params=dict(DEFAULTS["kshot"]))
    rows = {r["metric"]: r for r in kshot_rows(model, tok, spec, items, batch_size=8)}
    r = res["results"][yaml_path.stem]
    assert rows["acc"]["value"] == pytest.approx(r["acc,none"], abs=1e-12)
    assert rows["acc_norm"]["value"] == pytest.approx(r["acc_norm,none"], abs=1e-12)
    assert rows["acc"]["stderr"] == pytest.approx(r["acc_stderr,none"], rel=1e-9)


ROLLING_TEXTS = [
    "The capital of Avalon is Brill. The river Esk flows through Brill. " * k for k in (1, 3, 6)
] + [
    "def add(a, b):\n    return a + b\nprint(add(2, 3))  # 5\n" * 4,
    "short",
    "Mira gave the red ball to Tom. Tom put the ball in the box. " * 5,
]


def test_rolling_lmeval_mode_matches_lm_eval_per_document(tmp_path, tiny_tokenizer):
    """``--rolling lmeval`` against lm-eval's loglikelihood_rolling on documents up to ~8
    windows long (a 32-token window), with a short last window filled with earlier context."""
    from helpers import make_tiny_checkpoint
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ckpt_toolkit.probes import ppl_rows
    from ckpt_toolkit.probes.lmeval_export import export_lmeval_rolling_task

    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    torch.set_num_threads(1)
    window = 32
    path = make_tiny_checkpoint(tmp_path / "model", seed=5, tokenizer=tiny_tokenizer)
    yaml_path = export_lmeval_rolling_task(ROLLING_TEXTS, tmp_path / "lmeval")
    res = simple_evaluate(
        model="hf",
        model_args=f"pretrained={path},logits_cache=False,dtype=float32,max_length={window}",
        tasks=[yaml_path.stem],
        task_manager=TaskManager(include_path=str(yaml_path.parent), include_defaults=False),
        batch_size=4,
        device="cpu",
        log_samples=True,
    )
    samples = sorted(res["samples"][yaml_path.stem], key=lambda s: s["doc_id"])
    theirs = [float(s["filtered_resps"][0]) for s in samples]

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    n_tokens = [len(tok.encode(t)) for t in ROLLING_TEXTS]
    assert max(n_tokens) > 6 * window and any(n % window for n in n_tokens)
    spec = ProbeSpec("ppl", "docs", params={"window": window, "rolling": "lmeval"})
    logged: list[dict] = []
    rows = {r["metric"]: r for r in ppl_rows(model, tok, spec, ROLLING_TEXTS, 8, item_log=logged)}
    ours = [it["loglik"] for it in logged]
    assert len(ours) == len(theirs) == len(ROLLING_TEXTS)
    worst = max(abs(a - b) for a, b in zip(ours, theirs))
    assert worst <= 1e-4, worst
    assert [it["n_tokens"] for it in logged] == n_tokens
    assert rows["bpb"]["value"] == pytest.approx(
        res["results"][yaml_path.stem]["bits_per_byte,none"], rel=1e-6
    )
