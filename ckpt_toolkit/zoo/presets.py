"""Zoo presets (``smoke``, ``quick``, ``paper``), YAML overrides, and variant resolution.

A preset is a dict::

    world:     WorldConfig options (sizes of the world, default mixture, corpus size)
    tokenizer: {vocab_size, n_sentinels}
    sizes:     {name: {hidden, layers, heads, intermediate}}
    mixtures:  {name: {domain: weight}}
    defaults:  options every variant starts from (objective, size, lr, mixture, length_filter,
               domain_tags, seq_len, batch_size, steps, warmup, n_checkpoints, weight_decay,
               corpus_chars, dtype, threads)
    variants:  [{name, <any default overridden>}, ...]

Overrides (a dict or a YAML file) are merged into the preset recursively; a ``variants`` list
replaces the preset's. ``steps_scale`` (a top-level number) multiplies every variant's steps.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from ..errors import ParameterError
from ..world import DEFAULT_WEIGHTS, normalize_weights
from ..yamlfiles import deep_merge, read_yaml_mapping
from .objectives import OBJECTIVES

MIXTURES: dict[str, dict[str, float]] = {
    "default": dict(DEFAULT_WEIGHTS),
    "knowledge_heavy": {"wiki": 0.6, "stories": 0.1, "concepts": 0.1, "math": 0.1, "code": 0.1},
    "code_heavy": {"wiki": 0.15, "stories": 0.1, "concepts": 0.1, "math": 0.2, "code": 0.45},
    "narrative_heavy": {"wiki": 0.15, "stories": 0.45, "concepts": 0.2, "math": 0.1, "code": 0.1},
    "no_code": {"wiki": 0.35, "stories": 0.25, "concepts": 0.15, "math": 0.25},
}

DEFAULTS: dict[str, Any] = {
    "objective": "clm",
    "size": "s",
    "lr": 3e-3,
    "mixture": "default",
    "length_filter": 0,
    "domain_tags": False,
    "seq_len": 128,
    "batch_size": 32,
    "steps": 100,
    "warmup": 0.05,
    "n_checkpoints": 8,
    "weight_decay": 0.01,
    "corpus_chars": 1_000_000,
    "dtype": "float32",
    "threads": 1,  # torch threads per variant (docs/threads.md)
    "device": "cpu",  # cpu, cuda or auto (cuda when available)
}

SMOKE: dict[str, Any] = {
    "workers": 1,
    "world": {
        "n_countries": 6,
        "n_people": 16,
        "corpus_chars": 60_000,
        "heldout_docs": 12,
        "items": {"train": 12, "validation": 6, "test": 12},
    },
    "tokenizer": {"vocab_size": 384, "n_sentinels": 24},
    "sizes": {"xs": {"hidden": 32, "layers": 2, "heads": 2, "intermediate": 64}},
    "mixtures": MIXTURES,
    "defaults": {
        **DEFAULTS,
        "size": "xs",
        "seq_len": 128,
        "batch_size": 8,
        "steps": 30,
        "n_checkpoints": 3,
        "corpus_chars": 60_000,
        "lr": 1e-2,
    },
    "variants": [
        {"name": "clm-xs"},
        {"name": "span-xs", "objective": "span"},
        {"name": "prefix-xs", "objective": "prefix"},
        {"name": "clm-xs-code", "mixture": "code_heavy"},
    ],
}

QUICK_SIZES = {
    "xs": {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 176},
    "s": {"hidden": 96, "layers": 3, "heads": 4, "intermediate": 256},
    "m": {"hidden": 128, "layers": 4, "heads": 4, "intermediate": 352},
}

QUICK: dict[str, Any] = {
    "workers": 2,
    # more people and countries than the default world: larger knowledge test splits
    "world": {"corpus_chars": 2_500_000, "n_countries": 32, "n_people": 160},
    "tokenizer": {"vocab_size": 1024, "n_sentinels": 48},
    "sizes": QUICK_SIZES,
    "mixtures": MIXTURES,
    "defaults": {
        **DEFAULTS,
        "size": "xs",
        # 256 positions: room for k-shot prompts (the model never sees positions beyond seq_len)
        "seq_len": 256,
        "batch_size": 16,
        "steps": 300,
        "n_checkpoints": 8,
        "corpus_chars": 2_500_000,
    },
    # nine variants, one or two per axis of the proxy paper's Table 4 (size, objective, learning
    # rate, data mixture, length filter, domain tags), chosen so that fine-tuned scores differ:
    # fewer, more telling variants buy the largest model the tokens it needs for capabilities
    # to emerge, and the probes the items they need to see it, within the demo's budget (a
    # code-heavy mixture variant added cost and no signal: docs/zoo.md)
    "variants": [
        # model size (dynamics across sizes: same data, same objective; the largest trains
        # longer so that capabilities emerge before its last checkpoint)
        {"name": "clm-xs"},
        {"name": "clm-s", "size": "s"},
        {"name": "clm-m", "size": "m", "steps": 500},
        # objective
        {"name": "span-xs", "objective": "span"},
        {"name": "prefix-xs", "objective": "prefix"},
        # learning rate
        {"name": "clm-xs-lr1e-3", "lr": 1e-3},
        # data mixture
        {"name": "clm-xs-knowledge", "mixture": "knowledge_heavy"},
        # length filtering, domain tags
        {"name": "clm-xs-len100", "length_filter": 100},
        {"name": "clm-xs-tags", "domain_tags": True},
    ],
}

PAPER_OBJECTIVES = ["clm", "span", "span_long", "span_x", "prefix", "ul2", "span_clm"]
PAPER_LRS = [3e-4, 1e-3, 3e-3, 6e-3, 1e-2]


def _paper_variants() -> list[dict[str, Any]]:
    """The proxy paper's 50-variant design at toy scale: 7 objectives x 5 learning rates,
    5 mixtures x 2 objectives, 5 length-filter / domain-tag settings."""
    v: list[dict[str, Any]] = []
    for obj in PAPER_OBJECTIVES:
        for lr in PAPER_LRS:
            v.append({"name": f"{obj}-lr{lr:g}", "objective": obj, "lr": lr})
    for mix in MIXTURES:
        for obj in ("clm", "span_clm"):
            v.append({"name": f"{obj}-mix-{mix}", "objective": obj, "mixture": mix})
    for lf, tags in [(50, False), (100, False), (150, False), (0, True), (100, True)]:
        v.append(
            {
                "name": f"clm-len{lf}{'-tags' if tags else ''}",
                "length_filter": lf,
                "domain_tags": tags,
            }
        )
    return v


PAPER: dict[str, Any] = {
    "workers": max(1, (os.cpu_count() or 2) // 2),
    "world": {"n_countries": 48, "n_people": 300, "corpus_chars": 20_000_000},
    "tokenizer": {"vocab_size": 2048, "n_sentinels": 64},
    "sizes": {
        **QUICK_SIZES,
        "l": {"hidden": 256, "layers": 6, "heads": 8, "intermediate": 704},
        "xl": {"hidden": 512, "layers": 8, "heads": 8, "intermediate": 1376},
    },
    "mixtures": MIXTURES,
    "defaults": {
        **DEFAULTS,
        "size": "l",
        "seq_len": 256,
        "batch_size": 32,
        "steps": 2000,
        "n_checkpoints": 16,
        "corpus_chars": 20_000_000,
        "device": "auto",
    },
    "variants": _paper_variants()
    + [{"name": f"clm-size-{s}", "size": s} for s in ("xs", "s", "m", "xl")],
}

PRESETS: dict[str, dict[str, Any]] = {"smoke": SMOKE, "quick": QUICK, "paper": PAPER}
TOP_KEYS = {
    "workers",
    "world",
    "tokenizer",
    "sizes",
    "mixtures",
    "defaults",
    "variants",
    "steps_scale",
}


def _merge(base: dict, over: dict) -> dict:
    return deep_merge(base, over)


def load_overrides(path: str | Path) -> dict[str, Any]:
    """Read a YAML overrides file (a mapping of preset keys)."""
    return read_yaml_mapping(path, "overrides file")


def resolve_preset(preset: str | dict[str, Any], overrides: dict[str, Any] | None = None) -> dict:
    """A preset (by name or as a dict) with ``overrides`` merged in, validated."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ParameterError(f"unknown zoo preset {preset!r}; choose one of {sorted(PRESETS)}")
        cfg = copy.deepcopy(PRESETS[preset])
        cfg["name"] = preset
    else:
        cfg = _merge(PRESETS["smoke"], preset)
        cfg.setdefault("name", "custom")
    over = dict(overrides or {})
    bad = sorted(set(over) - TOP_KEYS - {"name"})
    if bad:
        raise ParameterError(f"unknown zoo option(s) {bad}; known: {sorted(TOP_KEYS)}")
    cfg = _merge(cfg, over)
    bad_defaults = sorted(set(cfg["defaults"]) - set(DEFAULTS))
    if bad_defaults:
        raise ParameterError(
            f"unknown variant option(s) {bad_defaults} in defaults; known: {sorted(DEFAULTS)}"
        )
    return cfg


def resolve_variants(cfg: dict[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """Fully specified, JSON-serializable variant specs (what :func:`train_variant` takes)."""
    specs: list[dict[str, Any]] = []
    names: set[str] = set()
    scale = float(cfg.get("steps_scale", 1.0))
    for v in cfg["variants"]:
        if "name" not in v:
            raise ParameterError(f"zoo variant {v} has no 'name'")
        bad = sorted(set(v) - set(DEFAULTS) - {"name"})
        if bad:
            raise ParameterError(f"variant {v['name']!r}: unknown option(s) {bad}")
        if v["name"] in names:
            raise ParameterError(f"duplicate variant name {v['name']!r}")
        names.add(v["name"])
        s = {**cfg["defaults"], **v}
        if s["objective"] not in OBJECTIVES:
            raise ParameterError(
                f"variant {v['name']!r}: unknown objective {s['objective']!r}; "
                f"choose one of {sorted(OBJECTIVES)}"
            )
        if s["size"] not in cfg["sizes"]:
            raise ParameterError(
                f"variant {v['name']!r}: unknown size {s['size']!r}; sizes: {sorted(cfg['sizes'])}"
            )
        mix = s["mixture"]
        if isinstance(mix, dict):
            weights, mix = normalize_weights(mix), "custom"
        elif mix in cfg["mixtures"]:
            weights = normalize_weights(cfg["mixtures"][mix])
        else:
            raise ParameterError(
                f"variant {v['name']!r}: unknown mixture {mix!r}; mixtures: {sorted(cfg['mixtures'])}"
            )
        if s["dtype"] not in ("float32", "bf16"):
            raise ParameterError(f"variant {v['name']!r}: dtype must be 'float32' or 'bf16'")
        steps = max(1, int(round(s["steps"] * scale)))
        specs.append(
            {
                "run": v["name"],
                "objective": s["objective"],
                "size": s["size"],
                "size_config": dict(cfg["sizes"][s["size"]]),
                "lr": float(s["lr"]),
                "mixture": mix,
                "mixture_weights": weights,
                "length_filter": int(s["length_filter"]),
                "domain_tags": bool(s["domain_tags"]),
                "seq_len": int(s["seq_len"]),
                "batch_size": int(s["batch_size"]),
                "steps": steps,
                "warmup": float(s["warmup"]),
                "n_checkpoints": int(s["n_checkpoints"]),
                "weight_decay": float(s["weight_decay"]),
                "corpus_chars": int(s["corpus_chars"]),
                "dtype": s["dtype"],
                "threads": int(s["threads"] or 1),
                "device": str(s["device"]),
                "seed": int(seed),
                "world_seed": int(seed),
                "world": copy.deepcopy(cfg["world"]),
            }
        )
    return specs
