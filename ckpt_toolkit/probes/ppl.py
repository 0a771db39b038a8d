"""Perplexity probe: mean token NLL, perplexity and bits per byte on held-out text per domain."""

from __future__ import annotations

import math

from .engine import model_max_length, perplexity
from .metrics import ratio_stderr, token_stderr
from .specs import ProbeSpec

CAPABILITY = "language_modeling"


def ppl_rows(
    model, tokenizer, spec: ProbeSpec, texts: list[str], batch_size: int = 8
) -> list[dict]:
    """Rows ``ppl``, ``loss`` (nats/token) and ``bpb`` (bits/UTF-8 byte) for one domain.

    Aggregates are ratios of sums over documents (token-weighted loss, byte-weighted bpb); their
    stderr treats documents as the samples (delta method; token-level for a single document);
    ppl's stderr is ppl·stderr(loss).
    """
    texts = texts[: spec.limit] if spec.limit else texts
    window = spec.params.get("window") or model_max_length(model, tokenizer)
    stride = spec.params.get("stride") or max(1, window // 2)
    res = perplexity(model, tokenizer, texts, window=window, stride=stride, batch_size=batch_size)
    loss, loss_se = ratio_stderr(res.nll, res.tokens)
    bits = [x / math.log(2) for x in res.nll]
    bpb, bpb_se = ratio_stderr(bits, res.bytes)
    stderr_unit = "document"
    if loss_se is None:  # one document: fall back to the token-level stderr
        stderr_unit = "token"
        loss_se = token_stderr(sum(res.nll), sum(res.sq), sum(res.tokens))
        if loss_se is not None:
            bpb_se = loss_se * sum(res.tokens) / math.log(2) / max(1, sum(res.bytes))
    prov = {
        "stderr_unit": stderr_unit,
        "window": window,
        "stride": stride,
        "documents": len(texts),
        "tokens": sum(res.tokens),
        "bytes": sum(res.bytes),
    }
    n = len(texts)
    ppl = math.exp(loss)
    return [
        {"metric": "loss", "value": loss, "stderr": loss_se, "n": n, "provenance": prov},
        {
            "metric": "ppl",
            "value": ppl,
            "stderr": None if loss_se is None else ppl * loss_se,
            "n": n,
            "provenance": prov,
        },
        {"metric": "bpb", "value": bpb, "stderr": bpb_se, "n": n, "provenance": prov},
    ]
