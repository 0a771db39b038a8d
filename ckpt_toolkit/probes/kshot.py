"""k-shot capability probe: multiple choice by log-likelihood, short answers by exact match.

Prompt: the k shots (``context + answer`` of k items drawn once, with a seeded RNG, from the
task's train split), each followed by the separator (``"\\n\\n"``), then the item's context. The
same k shots serve every item of a task, so a checkpoint sweep compares like with like.

Multiple choice (lm-eval conventions): ``acc`` = argmax of the choices' log-likelihoods is gold;
``acc_norm`` = argmax of log-likelihood / characters of the choice; ``gold_logprob`` = mean
log-likelihood of the gold choice (nats); ``bpb`` = bits per UTF-8 byte of the gold choice (sum of
bits / sum of bytes over items). The continuous metrics stay informative early in training when
accuracy sits at chance (arXiv 2404.01204, §4). Generation: greedy decoding up to the first newline,
``exact_match`` of the stripped text against the stripped gold.
"""

from __future__ import annotations

import math
import random
from collections import Counter

from ..errors import TaskFileError
from ..tasks import TaskItem
from .engine import greedy_generate, score_choices
from .metrics import mean_stderr, ratio_stderr
from .registry import KSHOT, Param, Probe, register_probe
from .specs import ProbeSpec


def eval_items(task: str, items: list[TaskItem], limit: int | None = None) -> list[TaskItem]:
    """The items a probe scores: the test split, else validation (first ``limit`` in file order)."""
    for split in ("test", "validation"):
        chosen = [it for it in items if it.split == split]
        if chosen:
            return chosen[:limit] if limit else chosen
    raise TaskFileError(f"task {task!r} has no 'test' or 'validation' items to probe")


def join_answer(context: str, answer: str) -> str:
    """Context followed by its answer; a space is inserted only if neither side has one."""
    if context and answer and not context[-1].isspace() and not answer[0].isspace():
        return f"{context} {answer}"
    return context + answer


def select_shots(task: str, items: list[TaskItem], k: int, seed: int) -> list[TaskItem]:
    """A fixed, seeded choice of ``k`` train items (the same for every checkpoint and item)."""
    if k == 0:
        return []
    pool = [it for it in items if it.split == "train"]
    if len(pool) < k:
        raise TaskFileError(
            f"task {task!r} has {len(pool)} 'train' items; {k} shots need at least {k}"
        )
    rng = random.Random(f"{seed}:{task}:{k}")
    return rng.sample(pool, k)


def build_prompt(shots: list[TaskItem], item: TaskItem, separator: str = "\n\n") -> str:
    """The k-shot prompt for one item."""
    parts = [join_answer(s.context, s.answer) for s in shots]
    return separator.join(parts + [item.context])


def capability_of(items: list[TaskItem]) -> str:
    """The most common ``capability`` label among a task's items."""
    return Counter(it.capability for it in items).most_common(1)[0][0]


def score_mc(model, tokenizer, prompts: list[str], items: list[TaskItem], batch_size: int):
    """Per-item log-likelihoods of every choice."""
    scored = score_choices(
        model, tokenizer, [(p, list(it.choices)) for p, it in zip(prompts, items)], batch_size
    )
    return [[s.logprob for s in row] for row in scored]


def _argmax(xs: list[float]) -> int:
    return max(range(len(xs)), key=lambda i: (xs[i], -i))  # first maximum, as np.argmax


def kshot_rows(
    model,
    tokenizer,
    spec: ProbeSpec,
    items: list[TaskItem],
    batch_size: int = 16,
    item_log: list[dict] | None = None,
) -> list[dict]:
    """Rows for one task at ``spec.shots`` shots; ``item_log``, if given, receives one record
    per scored item (``--log-items``, :mod:`ckpt_toolkit.probes.item_log`)."""
    p = spec.params
    shots = select_shots(spec.task, items, spec.shots, p["seed"])
    evals = eval_items(spec.task, items, spec.limit)
    sep = p["separator"]
    mc = [it for it in evals if it.is_multiple_choice]
    gen = [it for it in evals if not it.is_multiple_choice]
    base_prov = {"shot_ids": [s.id for s in shots], "separator": sep}
    rows: list[dict] = []
    if mc:
        prompts = [build_prompt(shots, it, sep) for it in mc]
        lls = score_mc(model, tokenizer, prompts, mc, batch_size)
        acc = [float(_argmax(ll) == it.gold) for ll, it in zip(lls, mc)]
        norm = [
            float(_argmax([x / max(1, len(c)) for x, c in zip(ll, it.choices)]) == it.gold)
            for ll, it in zip(lls, mc)
        ]
        gold = [ll[it.gold] for ll, it in zip(lls, mc)]
        if item_log is not None:
            for ll, it, a, an in zip(lls, mc, acc, norm):
                norm_ll = [x / max(1, len(c)) for x, c in zip(ll, it.choices)]
                item_log.append(
                    {"item": it.id, "gold": str(it.gold), "pred": str(_argmax(ll))}
                    | {"pred_norm": str(_argmax(norm_ll)), "acc": a, "acc_norm": an}
                    | {"loglik": ll[it.gold], "logliks": list(ll)}
                )
        bits = [-g / math.log(2) for g in gold]
        nbytes = [len(it.answer.encode("utf-8")) for it in mc]
        n_choices = [len(it.choices) for it in mc]
        prov = {
            **base_prov,
            "chance": sum(1 / c for c in n_choices) / len(n_choices),
            "n_choices": sum(n_choices) / len(n_choices),
        }
        for metric, (value, se) in (
            ("acc", mean_stderr(acc)),
            ("acc_norm", mean_stderr(norm)),
            ("gold_logprob", mean_stderr(gold)),
            ("bpb", ratio_stderr(bits, nbytes)),
        ):
            rows.append(
                {"metric": metric, "value": value, "stderr": se, "n": len(mc), "provenance": prov}
            )
    if gen:
        prompts = [build_prompt(shots, it, sep) for it in gen]
        # exact match: a row longer than every gold answer has failed, so it stops there
        longest = max(len(str(it.gold).strip()) for it in gen)
        outs = greedy_generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=p["max_new_tokens"],
            batch_size=batch_size,
            give_up_chars=longest,
        )
        em = [float(o.strip() == str(it.gold).strip()) for o, it in zip(outs, gen)]
        if item_log is not None:
            item_log.extend(
                {"item": it.id, "gold": str(it.gold), "output": o, "exact_match": e}
                for o, it, e in zip(outs, gen, em)
            )
        value, se = mean_stderr(em)
        prov = {
            **base_prov,
            "chance": 0.0,
            "n_choices": None,
            "max_new_tokens": p["max_new_tokens"],
        }
        rows.append(
            {
                "metric": "exact_match",
                "value": value,
                "stderr": se,
                "n": len(gen),
                "provenance": prov,
            }
        )
    return rows


PROBE = register_probe(
    Probe(
        name=KSHOT,
        description="k-shot capability scores: multiple choice by log-likelihood, exact match",
        needs="tasks",
        params=(
            Param("seed", int, 1234, "seed of the k-shot draw from the train split", minimum=0),
            Param("separator", str, "\n\n", "text between the shots and the item"),
            Param("max_new_tokens", int, 32, "generation items: greedy tokens at most", minimum=1),
        ),
        metrics=("acc", "acc_norm", "gold_logprob", "bpb", "exact_match"),
        run=kshot_rows,
        capability=capability_of,
        uses_shots=True,
    )
)
