"""Zoo training throughput and model FLOP utilization (MFU) per model size.

For every size of a preset (default: quick) and each thread count, trains the real model on
real batches from the real collator for a few steps and reports tokens/s and

    MFU = 6 * N * tokens_per_second / (measured fp32 matmul FLOP/s at the same thread count)

where N counts all parameters once (the input embedding is tied to the LM head, whose matmul
it stands for; attention-score FLOPs are left out, as in the usual 6N rule). The matmul rate is
the best of several square fp32 matmuls (n = 512, 1024, 2048) measured here, now.

    .venv/bin/python benchmarks/zoo_throughput.py [--preset quick] [--steps 12] [--json out.json]

The machine is shared: the 1-minute load average is printed before and after, and every
number should be read with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch


def matmul_flops(threads: int, reps: int = 5, clock=time.perf_counter) -> float:
    """Best fp32 matmul FLOP/s over a few sizes at ``threads`` threads, timed by ``clock``."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        for _ in range(reps):
            t = clock()
            a @ b
            best = max(best, 2 * n**3 / (clock() - t))
    return best


def train_rate(
    spec: dict, vocab: int, threads: int, steps: int, batch: int | None = None, bf16: bool = False
) -> dict:
    """Tokens/s of the real training step (forward, backward, clip, AdamW) for one size."""
    from ckpt_toolkit.zoo.objectives import Collator, SpecialIds
    from ckpt_toolkit.zoo.train import build_model, count_params

    torch.set_num_threads(threads)
    ids = SpecialIds(bos=1, eos=2, pad=0, sentinels=tuple(range(4, 36)))
    bsz = batch or spec["batch_size"]
    model = build_model(spec, vocab, ids)
    n_all, n_nonemb = count_params(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    collate = Collator(spec["objective"], spec["seq_len"], ids)
    rng = np.random.default_rng(0)
    windows = rng.integers(36, vocab, size=(bsz, spec["seq_len"]))

    def step() -> None:
        b = collate(windows, rng)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=b["input_ids"], labels=b["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    times, cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    # median step time: robust to other processes stealing the CPU for a moment
    tps = bsz * spec["seq_len"] / float(np.median(times))
    # tokens per CPU-second: with one thread, what the step costs when the core is ours
    tpcs = bsz * spec["seq_len"] / float(np.median(cpu))
    return {
        "params": n_all,
        "non_embedding_params": n_nonemb,
        "tokens_per_s": tps,
        "tokens_per_cpu_s": tpcs,
        "batch": bsz,
        "seq_len": spec["seq_len"],
        "flops_per_s": 6 * n_all * tps,
        "flops_per_cpu_s": 6 * n_all * tpcs,
    }


def main() -> None:
    from ckpt_toolkit.zoo import checkpoint_steps, resolve_preset, resolve_variants

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--json", default=None)
    ap.add_argument("--bf16", action="store_true", help="also time bf16 autocast (largest size)")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    cfg = resolve_preset(args.preset)
    specs = resolve_variants(cfg)
    vocab = cfg["tokenizer"]["vocab_size"] + 0
    threads = [int(t) for t in args.threads.split(",")]
    peak = {t: matmul_flops(t) for t in threads}
    peak_cpu1 = matmul_flops(1, clock=time.process_time)
    results = []
    by_size = {}
    for s in specs:
        by_size.setdefault(s["size"], s)
    for size, spec in by_size.items():
        for t in threads:
            largest = size == max(by_size, key=lambda k: by_size[k]["size_config"]["hidden"])
            for bf16 in (False, True) if largest and args.bf16 else (False,):
                r = train_rate(spec, vocab, t, args.steps, bf16=bf16)
                r.update(
                    size=size,
                    threads=t,
                    dtype="bf16-autocast" if bf16 else "float32",
                    mfu=r["flops_per_s"] / peak[t],
                )
                if t == 1:
                    r["mfu_cpu_time"] = r["flops_per_cpu_s"] / peak_cpu1
                results.append(r)
                extra = (
                    f" | {r['tokens_per_cpu_s']:6.0f} tok/CPU-s, MFU(CPU time) "
                    f"{r['mfu_cpu_time']:.1%}"
                    if t == 1
                    else ""
                )
                print(
                    f"{size:>3} threads={t} {r['dtype']:>13}: {r['tokens_per_s']:8.0f} tok/s "
                    f"N={r['params']:,} MFU={r['mfu']:.1%}{extra}",
                    flush=True,
                )
    # predicted wall time of the preset's training with its worker count (1 thread each)
    workers = int(cfg.get("workers") or 1)
    rate1 = {
        r["size"]: r["tokens_per_cpu_s"]
        for r in results
        if r["threads"] == 1 and r["dtype"] == "float32"
    }
    train_s = sum(s["steps"] * s["batch_size"] * s["seq_len"] / rate1[s["size"]] for s in specs)
    n_ckpt = sum(len(checkpoint_steps(s["steps"], s["n_checkpoints"])) for s in specs)
    out = {
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": load0,
        "load_after": os.getloadavg()[0],
        "matmul_fp32_flops": peak,
        "matmul_fp32_flops_per_cpu_s_1thread": peak_cpu1,
        "results": results,
        "preset": args.preset,
        "predicted_train_seconds": train_s / workers,
        "workers": workers,
        "checkpoints": n_ckpt,
    }
    print(
        "matmul fp32: "
        + ", ".join(f"{t} thr {v / 1e9:.1f} GFLOP/s" for t, v in peak.items())
        + f"; 1 thr per CPU-second {peak_cpu1 / 1e9:.1f} GFLOP/s"
    )
    print(
        f"predicted {args.preset} training time on idle cores: {train_s / workers:.0f}s with "
        f"{workers} worker(s) of 1 thread ({len(specs)} variants, {n_ckpt} checkpoints)"
    )
    print(f"load average before/after: {load0:.2f} / {out['load_after']:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
