"""Probes: perplexity, span-corruption perplexity and k-shot capability scores of checkpoints.

High level: :func:`run_probes` (the sweep the ``ckpt probe`` command runs). Lower level, for
notebooks and benchmarks: :func:`score_choices`, :func:`loglikelihood`, :func:`greedy_generate`,
:func:`perplexity` and the per-probe row builders.
"""

from .engine import (
    ChoiceScore,
    PerplexityResult,
    encode_pair,
    greedy_generate,
    loglikelihood,
    model_max_length,
    perplexity,
    score_choices,
    sliding_windows,
    token_nll,
)
from .kshot import build_prompt, kshot_rows, select_shots
from .ppl import ppl_rows
from .sc_ppl import noise_mask, sc_ppl_rows
from .specs import PROBES, ProbeSpec
from .sweep import ProbeData, ProbeSweepReport, build_specs, probe_checkpoint, run_probes

__all__ = [
    "PROBES",
    "ChoiceScore",
    "PerplexityResult",
    "ProbeData",
    "ProbeSpec",
    "ProbeSweepReport",
    "build_prompt",
    "build_specs",
    "encode_pair",
    "greedy_generate",
    "kshot_rows",
    "loglikelihood",
    "model_max_length",
    "noise_mask",
    "perplexity",
    "ppl_rows",
    "probe_checkpoint",
    "run_probes",
    "sc_ppl_rows",
    "score_choices",
    "select_shots",
    "sliding_windows",
    "token_nll",
]
