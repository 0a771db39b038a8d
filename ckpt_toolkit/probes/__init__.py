"""Probes: perplexity, span-corruption perplexity and k-shot capability scores of checkpoints.

High level: :func:`run_probes` (the sweep the ``ckpt probe`` command runs). Lower level, for
notebooks and benchmarks: :func:`score_choices`, :func:`loglikelihood`, :func:`greedy_generate`,
:func:`perplexity` and the per-probe row builders. The probe registry
(:mod:`ckpt_toolkit.probes.registry`: probe names, parameters, metric directions) is torch-free,
so this package imports its submodules lazily: ``from ckpt_toolkit.probes.registry import ...``
in an analysis does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> submodule that defines it
_EXPORTS = {
    "ChoiceScore": "engine",
    "PerplexityResult": "engine",
    "encode_pair": "engine",
    "greedy_generate": "engine",
    "loglikelihood": "engine",
    "model_max_length": "engine",
    "perplexity": "engine",
    "score_choices": "engine",
    "sliding_windows": "engine",
    "token_nll": "engine",
    "build_prompt": "kshot",
    "kshot_rows": "kshot",
    "select_shots": "kshot",
    "ppl_rows": "ppl",
    "noise_mask": "sc_ppl",
    "sc_ppl_rows": "sc_ppl",
    "PROBES": "specs",
    "ProbeSpec": "specs",
    "ProbeData": "sweep",
    "ProbeSweepReport": "sweep",
    "build_specs": "sweep",
    "probe_checkpoint": "sweep",
    "run_probes": "sweep",
    "Probe": "registry",
    "Param": "registry",
    "get_probe": "registry",
    "all_probes": "registry",
    "metric_info": "registry",
    "higher_is_better": "registry",
}


def __getattr__(name: str) -> Any:
    # lazy public API: importing the registry (or this package) does not import torch
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ckpt_toolkit.probes' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = sorted(_EXPORTS)
