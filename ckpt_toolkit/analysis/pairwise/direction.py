"""Which way a metric points, as the pairwise analysis needs it.

The analysis declares no direction of its own: whether a metric is lower-is-better comes from the
project's one metric-direction table, :data:`ckpt_toolkit.probes.registry.METRICS` (with its
documented name patterns, :func:`~ckpt_toolkit.probes.registry.metric_info`). This module only
reads it and applies it to column names:

* :func:`is_lower_better` — a metric name (``ppl``, ``bpb``, ``likelihood_difference``, ...);
* :func:`lower_better_metric_in` — the lower-is-better metric a *column name* mentions
  (``lambada_ppl`` → ``ppl``), if any;
* :func:`looks_oriented` — the column name says it was already flipped (``inv_ppl``,
  ``neg_bpb``, ``1/ppl``, ``ppl_inverse``, ``-loss``);
* :func:`orientation_warnings` — the messages ``evaluate_pairwise`` raises: a raw
  lower-is-better proxy used as given, or ``invert`` asked for a column already oriented. A
  warning never suggests inverting a column that is already oriented.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

#: name tokens saying a column was already turned into higher = better
ORIENTED_TOKENS = frozenset(
    {"inv", "inverse", "inverted", "neg", "negative", "negated", "minus", "recip", "reciprocal"}
)


@lru_cache(maxsize=1)
def lower_is_better_metrics() -> frozenset[str]:
    """The declared lower-is-better metric names (lower-cased)."""
    from ...probes.registry import lower_is_better_metrics as declared

    return frozenset(m.lower() for m in declared())


def is_lower_better(metric: str) -> bool:
    """Whether ``metric`` (a store metric name; lm-eval's ``ppl,none`` filter suffix ignored) is
    declared lower-is-better (unknown names: False, i.e. taken as given)."""
    from ...probes.registry import higher_is_better

    return higher_is_better(str(metric), default=True) is False


def is_perplexity(metric: str) -> bool:
    """A lower-is-better metric that is a perplexity (enters as 1/x rather than −x)."""
    from ...probes.registry import metric_info

    info = metric_info(str(metric))
    return info is not None and not info.higher_is_better and info.kind == "perplexity"


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9@]+", name.lower()) if t]


def looks_oriented(name: str) -> bool:
    """The column name says higher = better already: an ``inv``/``neg``/``inverse``/...
    token, a leading ``-`` or a ``1/`` (``inv_ppl``, ``neg_bpb:wiki``, ``1/ppl``, ``ppl_inv``)."""
    s = str(name).strip().lower()
    if s.startswith("-") or "1/" in s or "one_over" in s:
        return True
    return any(t in ORIENTED_TOKENS for t in _tokens(s))


def lower_better_metric_in(name: str) -> str | None:
    """The declared lower-is-better metric a column name mentions (whole name, or a run of its
    ``_``/``:``/``-``-separated tokens: ``lambada_ppl`` → ``ppl``, ``word_perplexity:wikitext``
    → ``word_perplexity``), else None. Already-oriented names are not looked at."""
    if looks_oriented(name):
        return None
    declared = lower_is_better_metrics()
    tokens = _tokens(str(name))
    for size in range(len(tokens), 0, -1):  # longest match first
        for start in range(len(tokens) - size + 1):
            cand = "_".join(tokens[start : start + size])
            if cand in declared:
                return cand
    return None


def orientation_warnings(proxies: Sequence[str], invert: Iterable[str]) -> list[str]:
    """Warnings about proxy orientation (every proxy must be higher = better after ``invert``)."""
    inv = set(invert)
    msgs = []
    for p in proxies:
        metric = lower_better_metric_in(p)
        oriented = looks_oriented(p)
        if p in inv and oriented:
            msgs.append(
                f"proxy {p!r} is named as already oriented (higher = better), yet it is "
                f"inverted (--invert {p}), so lower now counts as better; drop --invert {p} "
                "unless the column holds the raw values"
            )
        elif p not in inv and metric is not None and not oriented:
            msgs.append(
                f"proxy {p!r} names {metric!r}, which is lower-is-better, but is used as given "
                f"(higher = better); pass --invert {p} (API invert=[{p!r}]) if it holds raw "
                f"{metric} values"
            )
    return msgs
