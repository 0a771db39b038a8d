"""``train_zoo``: world + tokenizer + every variant (through an executor) + the manifest."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import CkptError, ParameterError
from ..executors import WorkUnit
from ..sweep import plan_executor, run_sweep
from ..threads import parse_threads
from .presets import load_overrides, resolve_preset, resolve_variants
from .train import _same as same_spec
from .train import train_variant

#: manifest columns, in order (architecture.md, "The zoo's output folder")
MANIFEST_COLUMNS = [
    "run", "objective", "params", "step", "tokens", "path", "tokens_per_step", "size",
    "mixture", "lr", "length_filter", "domain_tags", "seed", "non_embedding_params",
    "mixture_weights", "seq_len", "batch_size", "loss_tokens", "train_loss",
]  # fmt: skip


class ZooError(CkptError):
    """A zoo variant failed to train."""


def prepare_world(cfg: dict[str, Any], seed: int, out: Path) -> Path:
    """Build and write the world, train the tokenizer (if not already there); returns DIR/world."""
    from ..world import build_world
    from .tokenizer import train_tokenizer

    world = build_world(seed, cfg["world"])
    world_dir = world.write(out / "world")
    tok_dir = out / "tokenizer"
    stamp = json.dumps(
        {"seed": seed, "world": cfg["world"], "tokenizer": cfg["tokenizer"]}, sort_keys=True
    )
    stamp_file = tok_dir / "zoo_tokenizer.json"
    if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
        texts = [t for _, t in world.corpus()]
        train_tokenizer(texts, out_dir=tok_dir, **cfg["tokenizer"])
        stamp_file.write_text(stamp)
    return world_dir


def _cost(spec: dict[str, Any]) -> float:
    """Rough training cost of a variant (tokens x per-token FLOPs) for scheduling."""
    size = spec["size_config"]
    per_token = size["layers"] * size["hidden"] * (4 * size["hidden"] + 3 * size["intermediate"])
    return spec["steps"] * spec["batch_size"] * spec["seq_len"] * per_token


def variant_unit(spec: dict[str, Any], out: str | Path) -> WorkUnit:
    """The work unit that trains one variant into ``out``.

    It reserves the variant's threads as CPUs, and its device decides the GPU request (the GPU
    rule, :func:`ckpt_toolkit.executors.gpus_for_device`: ``cuda`` and ``auto`` ask Ray for a
    GPU). The unit writes ``out`` directly, so ``out`` must be on a filesystem the workers share.
    """
    return WorkUnit(
        key=spec["run"],
        fn=train_variant,
        args=(spec, str(out)),
        resources={"num_cpus": spec["threads"]},
        device=spec["device"],
    )


def write_manifest(out: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``DIR/manifest.csv`` (rows sorted by run, then step)."""
    path = out / "manifest.csv"
    rows = sorted(rows, key=lambda r: (r["run"], r["step"]))
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path


def train_zoo(
    preset: str | dict[str, Any] = "smoke",
    out: str | Path | None = None,
    overrides: dict[str, Any] | str | Path | None = None,
    seed: int = 0,
    executor: str | None = None,
    progress: bool = True,
    runs: list[str] | None = None,
    workers: int | None = None,
    executor_options: dict[str, Any] | None = None,
    threads: int | str | None = None,
) -> Path:
    """Pretrain a zoo of small models on the built-in world; returns ``DIR/manifest.csv``.

    ``preset`` is ``smoke``, ``quick``, ``paper`` or a dict; ``overrides`` (a dict or a YAML
    path) is merged into it. ``out`` defaults to ``zoo/<preset>``. ``runs`` trains only the
    named variants (the manifest lists every finished variant found in DIR). Finished variants
    are skipped and interrupted ones resume from their last checkpoint, so rerunning the same
    command after a kill completes the zoo.

    ``executor``: ``processes`` (variants side by side in worker processes), ``local`` (one after
    another in this process) or ``ray``; default ``processes`` when more than one variant may
    run at once, else ``local``. ``workers`` (default: the preset's ``workers``) caps the worker
    processes; ``threads`` (default ``auto``: the preset's ``threads``, 1) is torch's threads per
    variant. Workers × threads never exceed the cores this process may use (docs/threads.md).
    ``executor_options``: ``max_retries``, ``timeout``, ``num_cpus``, ``num_gpus``, ``memory``,
    ``address`` (see :mod:`ckpt_toolkit.executors`). A variant on device ``cuda`` or ``auto``
    asks Ray for a GPU (:func:`ckpt_toolkit.executors.gpus_for_device`).
    """
    n_threads = parse_threads(threads)
    n_workers = workers
    if isinstance(overrides, (str, Path)):
        overrides = load_overrides(overrides)
    cfg = resolve_preset(preset, overrides)
    out = Path(out) if out is not None else Path("zoo") / cfg["name"]
    out.mkdir(parents=True, exist_ok=True)
    specs = resolve_variants(cfg, seed)
    if runs:
        unknown = sorted(set(runs) - {s["run"] for s in specs})
        if unknown:
            raise ParameterError(
                f"unknown run(s) {unknown}; variants of this preset: {[s['run'] for s in specs]}"
            )
        todo = [s for s in specs if s["run"] in runs]
    else:
        todo = specs

    if workers is not None and executor is not None and executor != "processes" and workers > 1:
        raise ParameterError(f"--workers {workers}: only with --executor processes")
    n_workers = int(n_workers or cfg.get("workers") or 1)
    if executor is None:
        executor = "processes" if n_workers > 1 and len(todo) > 1 else "local"
    opts = {k: v for k, v in (executor_options or {}).items() if v is not None}
    if executor == "processes":
        opts.setdefault("workers", n_workers)
    # torch threads per variant: --threads, else --num-cpus, else the preset's (1)
    per_variant = n_threads or (int(opts["num_cpus"]) if opts.get("num_cpus") else None)
    ex = plan_executor(
        executor, opts, threads=n_threads, progress=progress, desc=f"zoo {cfg['name']}"
    )

    t0 = time.perf_counter()
    prepare_world(cfg, seed, out)
    (out / "zoo.json").write_text(
        json.dumps(
            {"preset": cfg["name"], "seed": seed, "config": cfg, "variants": specs}, indent=1
        )
    )
    # longest first, so that side-by-side workers finish together
    todo = sorted(todo, key=_cost, reverse=True)
    if per_variant:  # "threads" is a volatile field: changing it does not retrain a variant
        for spec in todo:
            spec["threads"] = max(1, per_variant)
    units = [variant_unit(s, out) for s in todo]
    results: dict[str, list[dict]] = {}
    report = run_sweep(ex, units, lambda unit, rows: results.__setitem__(unit.key, rows))

    # the manifest lists every finished variant of this config found in DIR
    rows: list[dict[str, Any]] = []
    for s in specs:
        if s["run"] in results:
            rows.extend(results[s["run"]])
            continue
        f = out / "runs" / s["run"] / "rows.json"
        if f.is_file():
            done = json.loads(f.read_text())
            if same_spec(done.get("spec"), s):
                rows.extend(done["rows"])
    manifest = write_manifest(out, rows)
    if not report.ok:
        raise ZooError(f"zoo training failed ({manifest} lists what finished):\n{report.summary()}")
    if progress:
        print(
            f"zoo {cfg['name']}: {len(todo)} variant(s) in {time.perf_counter() - t0:.1f}s -> {manifest}"
        )
    return manifest
