"""Pretraining one zoo variant: data, model, loop, checkpoints, resume.

:func:`train_variant` is a picklable top-level function (an executor ``WorkUnit`` runs it in
this process or on a Ray worker). It writes

* ``runs/<run>/checkpoint-<step>/`` -- a Hugging Face folder (config.json, model.safetensors,
  tokenizer files, ``zoo.json`` with the variant and step/tokens);
* ``runs/<run>/trainer_state/`` -- what resuming needs and a loader must not mistake for a
  checkpoint: ``optimizer.safetensors`` (AdamW moments) and ``state.json`` (step, losses, rows);
* ``runs/<run>/rows.json`` once the run is complete (its manifest rows);
* ``runs/<run>/train_log.csv`` -- step, tokens, training loss.

The batch at step *s* is a pure function of (seed, s) -- window order from a per-epoch seeded
permutation, collator randomness from ``numpy.random.default_rng([seed, s])`` -- so a run
killed after checkpoint *k* and resumed from it takes the same steps as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .objectives import IGNORE, Collator, SpecialIds

STATE_DIR = "trainer_state"


def checkpoint_steps(total: int, n: int) -> list[int]:
    """``n`` save points ending at ``total``: the first half log-spaced (from ~total/64 up to
    total/4), the rest evenly spaced up to ``total`` ("log-spaced early, linear later")."""
    if n <= 1 or total <= n:
        return list(range(1, total + 1))[-max(n, 1) :] if total <= n else [total]
    n_log = n // 2
    n_lin = n - n_log
    lo, hi = max(1.0, total / 64), total / 4
    logs = [lo * (hi / lo) ** (i / max(n_log - 1, 1)) for i in range(n_log)]
    lins = [hi + (total - hi) * (i + 1) / n_lin for i in range(n_lin)]
    steps: list[int] = []
    for s in logs + lins:
        s = max(1, min(total, int(round(s))))
        while s in steps and s < total:
            s += 1
        if s not in steps:
            steps.append(s)
    return sorted(steps)


def build_model(spec: dict[str, Any], vocab_size: int, ids: SpecialIds):
    """A Llama-style decoder-only model of the variant's size (tied embeddings)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    size = spec["size_config"]
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size["hidden"],
        intermediate_size=size["intermediate"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        num_key_value_heads=size["heads"],
        max_position_embeddings=spec["seq_len"],
        pad_token_id=ids.pad,
        bos_token_id=ids.bos,
        eos_token_id=ids.eos,
        tie_word_embeddings=True,
        attention_dropout=0.0,
    )
    torch.manual_seed(spec["seed"])
    return LlamaForCausalLM(cfg)


def count_params(model) -> tuple[int, int]:
    """(all parameters, non-embedding parameters); tied embeddings count once."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    return total, total - emb


def token_stream(
    spec: dict[str, Any], tokenizer, cache_dir: str | Path | None = None
) -> np.ndarray:
    """The variant's pretraining corpus, tokenized, documents joined by ``</s>``.

    With ``cache_dir``, the stream is kept there as ``<key>.npy``, the key hashing everything
    the stream depends on (world, mixture, corpus size, length filter, domain tags, shuffle seed,
    the tokenizer's vocabulary), so variants that differ only in model, objective or learning
    rate build it once (the file is written atomically: parallel workers never read half)."""
    path = None
    if cache_dir is not None:
        from ..specs import spec_hash

        keys = ("world_seed", "world", "mixture_weights", "corpus_chars", "length_filter")
        key = {k: spec[k] for k in keys} | {"tags": spec["domain_tags"], "seed": spec["seed"]}
        key["vocab"] = spec_hash(sorted(tokenizer.get_vocab().items()))
        path = Path(cache_dir) / f"{spec_hash(key)}.npy"
        if path.is_file():
            return np.load(path)
    stream = _tokenize_corpus(spec, tokenizer)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, stream)
        os.replace(tmp, path)
    return stream


def _tokenize_corpus(spec: dict[str, Any], tokenizer) -> np.ndarray:
    from ..world import build_world

    world = build_world(spec["world_seed"], spec["world"])
    docs = world.corpus(
        weights=spec["mixture_weights"],
        total_chars=spec["corpus_chars"],
        length_filter=spec["length_filter"],
        domain_tags=spec["domain_tags"],
        shuffle_seed=spec["seed"],
    )
    enc = tokenizer([t for _, t in docs], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return np.fromiter((t for ids in enc for t in (*ids, eos)), dtype=np.int64)


class Windows:
    """Non-overlapping windows of ``seq_len`` tokens; batch *s* is a function of (seed, s)."""

    def __init__(self, stream: np.ndarray, seq_len: int, batch_size: int, seed: int):
        self.n = len(stream) // seq_len
        if self.n < 1:
            raise CheckpointError(f"corpus too small: {len(stream)} tokens < seq_len {seq_len}")
        self.data = stream[: self.n * seq_len].reshape(self.n, seq_len)
        self.batch_size, self.seed = batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def batch(self, step: int) -> np.ndarray:
        idx = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        rows = []
        for i in idx:
            epoch, pos = divmod(int(i), self.n)
            if epoch not in self._perms:
                self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
            rows.append(self.data[self._perms[epoch][pos]])
        return np.stack(rows)


def lr_at(step: int, spec: dict[str, Any]) -> float:
    """Linear warmup, then cosine decay to 10% of the peak learning rate."""
    total, warm = spec["steps"], max(1, int(spec["warmup"] * spec["steps"]))
    if step < warm:
        return spec["lr"] * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    return spec["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors = {
        f"{pid}.{k}": v.detach().cpu().clone().contiguous().reshape(v.shape if v.dim() else (1,))
        for pid, st in sd["state"].items()
        for k, v in st.items()
    }
    save_file(tensors, str(path / "optimizer.safetensors"))


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path / "optimizer.safetensors"))
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v.reshape(()) if name == "step" else v
    sd["state"] = state
    opt.load_state_dict(sd)


def _atomic_replace(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


#: spec keys that do not change the result (a run may resume with other values)
_VOLATILE = ("threads", "resume", "device")


def _same(a: dict | None, b: dict) -> bool:
    """Whether two variant specs describe the same training run."""
    if a is None:
        return False
    norm = lambda d: json.loads(json.dumps({k: v for k, v in d.items() if k not in _VOLATILE}))  # noqa: E731
    return norm(a) == norm(b)


def _load_weights(model, ckpt: Path) -> None:
    from safetensors.torch import load_file

    f = ckpt / "model.safetensors"
    if not f.is_file():
        raise CheckpointError(f"cannot resume: {f} is missing")
    missing, unexpected = model.load_state_dict(load_file(str(f)), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the input embedding
    if missing or unexpected:
        raise CheckpointError(
            f"cannot resume from {ckpt}: missing {missing}, unexpected {unexpected}"
        )


def _latest_state(run_dir: Path) -> dict | None:
    f = run_dir / STATE_DIR / "state.json"
    if not f.is_file():
        return None
    state = json.loads(f.read_text())
    if not (run_dir / f"checkpoint-{state['step']}" / "config.json").is_file():
        return None
    return state


def train_variant(spec: dict[str, Any], out_dir: str) -> list[dict[str, Any]]:
    """Pretrain one variant into ``out_dir/runs/<run>``; returns its manifest rows.

    Resumes from the last saved checkpoint if the run was interrupted; returns the stored rows
    at once if it already finished. ``spec`` is a resolved variant (see
    :func:`ckpt_toolkit.zoo.presets.resolve_variants`).
    """
    from transformers.utils import logging as hf_logging

    from .tokenizer import load_tokenizer

    hf_logging.disable_progress_bar()
    torch.set_num_threads(int(spec["threads"]))
    root = Path(out_dir)
    run = spec["run"]
    run_dir = root / "runs" / run
    done_file = run_dir / "rows.json"
    if done_file.is_file():
        done = json.loads(done_file.read_text())
        if _same(done.get("spec"), spec):
            return done["rows"]
    run_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = load_tokenizer(root / "tokenizer")
    ids = SpecialIds.from_tokenizer(tokenizer)
    seq_len, bsz, total = spec["seq_len"], spec["batch_size"], spec["steps"]
    stream = token_stream(spec, tokenizer, cache_dir=root / "world" / "streams")
    windows = Windows(stream, seq_len, bsz, spec["seed"])
    collate = Collator(spec["objective"], seq_len, ids)
    save_at = set(checkpoint_steps(total, spec["n_checkpoints"]))

    model = build_model(spec, len(tokenizer), ids)
    n_params, n_nonemb = count_params(model)
    state = _latest_state(run_dir) if spec.get("resume", True) else None
    start, rows, log, loss_tokens = 0, [], [], 0
    resumed = state is not None and _same(state.get("spec"), spec)
    if not resumed:  # a fresh start: drop what an earlier, different run left here
        for p in run_dir.iterdir():
            if p.name.startswith(("checkpoint-", STATE_DIR)):
                shutil.rmtree(p)
            elif p.name in ("rows.json", "train_log.csv"):
                p.unlink()
    if resumed:
        _load_weights(model, run_dir / f"checkpoint-{state['step']}")
        start, rows, log = state["step"], state["rows"], state["log"]
        loss_tokens = state["loss_tokens"]
    recent: list[float] = [entry[2] for entry in log[-10:]]
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": spec["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=spec["lr"],
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    if resumed:
        _load_optimizer(opt, run_dir / STATE_DIR)
    device = _device(spec.get("device", "cpu"))
    model.to(device)
    if resumed:  # moments were loaded on the CPU
        for st in opt.state.values():
            for k, v in st.items():
                if k != "step":
                    st[k] = v.to(device)
    model.train()

    autocast = spec.get("dtype", "float32") == "bf16"
    tokens_per_step = bsz * seq_len
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(start, total):
        batch = collate(windows.batch(step), np.random.default_rng([spec["seed"], step]))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, spec)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(input_ids=batch["input_ids"].to(device), labels=batch["labels"].to(device))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = out.loss.item()
        if not math.isfinite(loss):
            raise CheckpointError(f"run {run}: training loss is {loss} at step {step + 1}")
        loss_tokens += int((batch["labels"][:, 1:] != IGNORE).sum())
        recent = (recent + [loss])[-10:]
        done_steps = step + 1
        log.append([done_steps, done_steps * tokens_per_step, loss])
        if done_steps in save_at:
            rel = f"runs/{run}/checkpoint-{done_steps}"
            rows.append(
                _row(
                    spec, rel, done_steps, tokens_per_step, n_params, n_nonemb, loss_tokens, recent
                )
            )
            _save_checkpoint(model, tokenizer, spec, rows[-1], root / rel)
            _save_state(opt, run_dir, spec, done_steps, rows, log, loss_tokens)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    with (run_dir / "train_log.csv").open("w") as fh:
        fh.write("step,tokens,loss\n")
        fh.writelines(f"{s},{t},{v}\n" for s, t, v in log)
    done_file.write_text(
        json.dumps(
            {
                "spec": spec,
                "rows": rows,
                "seconds": round(elapsed, 2),
                "cpu_seconds": round(cpu, 2),
                "steps_this_session": total - start,
            },
            indent=1,
        )
    )
    return rows


def _row(spec, rel, step, tokens_per_step, n_params, n_nonemb, loss_tokens, recent) -> dict:
    return {
        "run": spec["run"],
        "objective": spec["objective"],
        "params": n_params,
        "non_embedding_params": n_nonemb,
        "step": step,
        "tokens": step * tokens_per_step,
        "path": rel,
        "tokens_per_step": tokens_per_step,
        "size": spec["size"],
        "mixture": spec["mixture"],
        "mixture_weights": json.dumps(spec["mixture_weights"], sort_keys=True),
        "lr": spec["lr"],
        "length_filter": spec["length_filter"],
        "domain_tags": spec["domain_tags"],
        "seed": spec["seed"],
        "seq_len": spec["seq_len"],
        "batch_size": spec["batch_size"],
        "loss_tokens": loss_tokens,
        "train_loss": round(sum(recent) / len(recent), 5),
    }


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _save_checkpoint(model, tokenizer, spec: dict, row: dict, final: Path) -> None:
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "zoo.json").write_text(json.dumps({"variant": spec, "row": row}, indent=1))
    _atomic_replace(tmp, final)


def _save_state(opt, run_dir: Path, spec, step, rows, log, loss_tokens) -> None:
    tmp = run_dir / (STATE_DIR + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    _save_optimizer(opt, tmp)
    (tmp / "state.json").write_text(
        json.dumps(
            {"spec": spec, "step": step, "rows": rows, "log": log, "loss_tokens": loss_tokens}
        )
    )
    _atomic_replace(tmp, run_dir / STATE_DIR)
