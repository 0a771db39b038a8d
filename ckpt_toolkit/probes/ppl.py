"""Perplexity probe: mean token NLL, perplexity and bits per byte on held-out text per domain."""

from __future__ import annotations

import math

from ..errors import ParameterError
from .engine import ROLLING_MODES, model_max_length, perplexity, resolve_prefix_token
from .metrics import ratio_stderr, token_stderr
from .registry import LANGUAGE_MODELING, PPL, Param, Probe, register_probe
from .specs import ProbeSpec

CAPABILITY = LANGUAGE_MODELING


def ppl_rows(
    model,
    tokenizer,
    spec: ProbeSpec,
    texts: list[str],
    batch_size: int = 8,
    item_log: list[dict] | None = None,
) -> list[dict]:
    """Rows ``ppl``, ``loss`` (nats/token) and ``bpb`` (bits/UTF-8 byte) for one domain.

    Aggregates are ratios of sums over documents (token-weighted loss, byte-weighted bpb); their
    stderr treats documents as the samples (delta method; token-level for a single document);
    ppl's stderr is ppl·stderr(loss). Parameters (``spec.params``): ``window``, ``stride``,
    ``rolling`` (``sliding`` or ``lmeval``) and ``prefix_token`` — see
    :func:`~ckpt_toolkit.probes.engine.perplexity`. ``item_log``, if given, receives one record per
    document (``--log-items``): its index, log-likelihood, scored tokens and bytes.
    """
    texts = texts[: spec.limit] if spec.limit else texts
    p = spec.params
    rolling = p.get("rolling") or "sliding"
    window = p.get("window") or model_max_length(model, tokenizer)
    stride = None if rolling == "lmeval" else (p.get("stride") or max(1, window // 2))
    prefix = resolve_prefix_token(tokenizer, p.get("prefix_token"))
    res = perplexity(
        model,
        tokenizer,
        texts,
        window=window,
        stride=stride,
        batch_size=batch_size,
        rolling=rolling,
        prefix=prefix,
    )
    if item_log is not None:
        for d, (nll, ntok, nbytes) in enumerate(zip(res.nll, res.tokens, res.bytes)):
            item_log.append(
                {
                    "item": str(d),
                    "loglik": -nll,
                    "n_tokens": ntok,
                    "n_bytes": nbytes,
                    "bpb": nll / math.log(2) / max(1, nbytes),
                }
            )
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
        "rolling": rolling,
        "prefix_token_id": prefix,
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


# -- registry declaration (see ckpt_toolkit/probes/registry.py) ------------------------------
def _check_ppl(params: dict) -> None:
    window, stride = params.get("window"), params.get("stride")
    if params.get("rolling") == "lmeval" and stride is not None:
        raise ParameterError("--stride does not apply to --rolling lmeval (lm-eval's own windows)")
    if window is not None and stride is not None and stride > window:
        raise ParameterError(f"--stride ({stride}) must not exceed --window ({window})")


def _run_ppl(
    model,
    tokenizer,
    spec: ProbeSpec,
    texts: list[str],
    batch_size: int = 8,
    item_log: list[dict] | None = None,
):
    """:func:`ppl_rows`, after checking a given stride against the model's own window (which
    is only known once the model is loaded: a stride above it would skip tokens)."""
    stride = spec.params.get("stride")
    if stride is not None and not spec.params.get("window"):
        window = model_max_length(model, tokenizer)
        if stride > window:
            raise ParameterError(
                f"--stride ({stride}) must not exceed the window, here the model's ({window})"
            )
    return ppl_rows(model, tokenizer, spec, texts, batch_size, item_log=item_log)


PROBE = register_probe(
    Probe(
        name=PPL,
        description="perplexity, mean token NLL and bits per byte of held-out text per domain",
        needs="heldout",
        params=(
            Param(
                "window",
                int,
                None,
                "tokens per window (default: the model's)",
                minimum=1,
                nullable=True,
                option="--window",
            ),
            Param(
                "stride",
                int,
                None,
                "sliding-window stride, <= window (default: window // 2)",
                minimum=1,
                nullable=True,
                option="--stride",
            ),
            Param(
                "rolling",
                str,
                "sliding",
                "window layout: sliding (strided, HF's recipe) or lmeval (lm-eval's "
                "loglikelihood_rolling, exactly)",
                choices=ROLLING_MODES,
                option="--rolling",
            ),
            Param(
                "prefix_token",
                str,
                None,
                "token (string or id) before each document (default: BOS, else EOS)",
                nullable=True,
                option="--prefix-token",
            ),
        ),
        metrics=("loss", "ppl", "bpb"),
        run=_run_ppl,
        capability=CAPABILITY,
        check=_check_ppl,
    )
)
