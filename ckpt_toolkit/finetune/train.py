"""Full supervised fine-tuning of a small causal LM on task items, and scoring on the test split.

Training examples are ``context + answer`` (the gold choice for multiple choice, the gold string
for generation), tokenized exactly as the probe engine splits a context from its continuation
(:func:`ckpt_toolkit.probes.engine.encode_pair`), so the answer tokens trained on are the ones
scored. The loss is the mean token NLL over answer tokens only (context positions are masked
with -100), as in the paper's SFT (arXiv 2504.12491, §3.1: "the loss is computed on the
response"). Scoring reuses the probe engine: multiple choice by log-likelihood of each choice
(``acc`` = argmax is gold), generation by greedy decoding and exact match.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from ..probes.engine import encode_pair, greedy_generate, score_choices
from ..probes.metrics import mean_stderr
from ..tasks import TaskItem

IGNORE = -100


def encode_example(
    tokenizer, item: TaskItem, max_length: int, append_eos: bool = True
) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one training example; labels are -100 on the context."""
    ctx, ans = encode_pair(tokenizer, item.context, item.answer)
    if append_eos and tokenizer.eos_token_id is not None:
        ans = ans + [int(tokenizer.eos_token_id)]
    ans = ans[:max_length]
    keep = max(0, max_length - len(ans))
    ctx = ctx[len(ctx) - keep :] if keep else []
    return ctx + ans, [IGNORE] * len(ctx) + ans


def _batch(examples: Sequence[tuple[list[int], list[int]]], pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for r, (x, y) in enumerate(examples):
        ids[r, : len(x)] = torch.tensor(x)
        labels[r, : len(y)] = torch.tensor(y)
        mask[r, : len(x)] = 1
    return ids, labels, mask


def finetune_model(model, tokenizer, items: Sequence[TaskItem], spec: dict[str, Any]) -> dict:
    """Fine-tune ``model`` in place on ``items`` with the spec's hyperparameters.

    AdamW, linear warm-up then linear decay to 0, gradient clipping; batches are drawn without
    replacement from a seeded shuffle (reshuffled each epoch). Returns training statistics.
    """
    import torch

    if not items:
        raise ValueError("no training items")
    torch.manual_seed(spec["seed"])
    rng = random.Random(spec["seed"])
    examples = [
        encode_example(tokenizer, it, spec["max_length"], spec["append_eos"]) for it in items
    ]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    steps = spec["max_steps"]
    warm = int(round(spec["warmup_frac"] * steps))

    def lr_at(step: int) -> float:  # multiplier of the peak lr
        if step < warm:
            return (step + 1) / (warm + 1)
        return max(0.0, (steps - step) / max(1, steps - warm))

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=spec["lr"], betas=tuple(spec["betas"]), weight_decay=spec["weight_decay"]
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    order: list[int] = []
    losses: list[float] = []
    n_tokens = 0
    bs = min(spec["batch_size"], len(examples))
    for _ in range(steps):
        if len(order) < bs:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        idx, order = order[:bs], order[bs:]
        ids, labels, mask = _batch([examples[i] for i in idx], pad_id)
        out = model(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            labels=labels.to(model.device),
        )
        loss = out.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if spec["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, spec["grad_clip"])
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        n_tokens += int((labels != IGNORE).sum())
    model.eval()
    tail = losses[-max(1, steps // 5) :]
    return {
        "steps": steps,
        "train_items": len(examples),
        "answer_tokens_seen": n_tokens,
        "first_loss": losses[0],
        "final_loss": sum(tail) / len(tail),
    }


def exact_match(prediction: str, gold: str) -> bool:
    """Stripped prediction (up to the first newline) equals the stripped gold."""
    return prediction.split("\n", 1)[0].strip() == str(gold).strip()


def item_correct(model, tokenizer, items: Sequence[TaskItem], spec: dict[str, Any]) -> list[float]:
    """1.0 / 0.0 per item (in the order of ``items``): is ``model`` right on it (0-shot, the
    fine-tuning format)? Multiple choice: argmax of the choices' summed log-likelihoods is gold
    (first maximum); generation: exact match of the greedy continuation."""
    mc = [i for i, it in enumerate(items) if it.is_multiple_choice]
    gen = [i for i, it in enumerate(items) if not it.is_multiple_choice]
    correct = [0.0] * len(items)
    if mc:
        scored = score_choices(
            model,
            tokenizer,
            [(items[i].context, list(items[i].choices)) for i in mc],
            batch_size=spec["eval_batch_size"],
        )
        for i, row in zip(mc, scored):
            lps = [s.logprob for s in row]
            best = max(range(len(lps)), key=lambda j: (lps[j], -j))
            correct[i] = float(best == items[i].gold)
    if gen:
        outs = greedy_generate(
            model,
            tokenizer,
            [items[i].context for i in gen],
            max_new_tokens=spec["max_new_tokens"],
            batch_size=spec["eval_batch_size"],
            # longer than every gold answer: cannot match, so decoding that row stops
            give_up_chars=max(len(str(items[i].gold).strip()) for i in gen),
        )
        for i, o in zip(gen, outs):
            correct[i] = float(exact_match(o, items[i].gold))
    return correct


def _score(correct: Sequence[float]) -> tuple[float, float | None, int]:
    acc, se = mean_stderr(correct)
    return acc, (se if se is None or math.isfinite(se) else None), len(correct)


def evaluate_items(
    model, tokenizer, items: Sequence[TaskItem], spec: dict[str, Any]
) -> tuple[float, float | None, int]:
    """(accuracy, stderr, n) of ``model`` on ``items`` (see :func:`item_correct`)."""
    return _score(item_correct(model, tokenizer, items, spec))


def finetune_and_score(
    model,
    tokenizer,
    train: Sequence[TaskItem],
    tests: dict[str, Sequence[TaskItem]],
    spec: dict[str, Any],
) -> tuple[dict, dict[str, tuple[float, float | None, int]]]:
    """Fine-tune ``model`` on ``train`` and score every dataset of ``tests``, repeated over
    ``spec["seeds"]`` seeds (``seed``, ``seed + 1``, ...), each from the same starting weights.

    Returns (training statistics, {dataset: (accuracy, stderr, n items)}). With several seeds an
    item's correctness is its mean over the seeds and the stderr is that of the mean over items
    (so it still counts the test items' sampling, and no longer the seed's luck alone).
    ``model`` ends fine-tuned with the last seed.
    """
    import torch

    n_seeds = int(spec.get("seeds", 1))
    start = {k: v.detach().clone() for k, v in model.state_dict().items()} if n_seeds > 1 else None
    per_item: dict[str, list[list[float]]] = {d: [] for d in tests}
    runs: list[dict] = []
    for r in range(n_seeds):
        if start is not None and r:
            with torch.no_grad():
                model.load_state_dict(start)
        runs.append(finetune_model(model, tokenizer, train, {**spec, "seed": spec["seed"] + r}))
        for d, items in tests.items():
            per_item[d].append(item_correct(model, tokenizer, items, spec))
    stats = dict(runs[0])
    if n_seeds > 1:
        for key in ("first_loss", "final_loss"):
            stats[key] = sum(run[key] for run in runs) / n_seeds
        stats["seeds"] = [spec["seed"] + r for r in range(n_seeds)]
    per = {d: _score([sum(col) / n_seeds for col in zip(*rows)]) for d, rows in per_item.items()}
    return stats, per
