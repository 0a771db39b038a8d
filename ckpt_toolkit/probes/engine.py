"""The scoring engine: log-likelihoods of answer choices, greedy generation and token NLLs.

Conventions follow lm-evaluation-harness 0.4 so that per-item numbers agree with it:

* the tokenizer's own default for special tokens (``tokenizer.encode(text)``);
* trailing whitespace of the context moves to the continuation; context + continuation are
  tokenized together and the continuation is what follows the context's own tokens;
* the sequence fed to the model is ``(context + continuation)[:-1]``, left-truncated to the window.

What differs is the cost: for one context with C answer choices lm-eval forwards the whole
context C times. Here the context (shots + question) is forwarded once per batch of contexts, its
keys/values are kept in a ``DynamicCache``, the cache rows are repeated for every choice, and only
the choice tokens are forwarded on top of it. Contexts are right-padded (causal attention makes
right padding invisible to real tokens, so no mask is needed for the context pass); the choice pass
then attends to the cache through a 2-D mask with holes where the shorter contexts were padded,
with explicit position ids that continue each context's own length.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..errors import ParameterError

DEFAULT_MAX_LENGTH = 2048


@dataclass(frozen=True)
class ChoiceScore:
    """Log-likelihood of one continuation given its context."""

    logprob: float  #: sum of token log-probabilities (nats)
    is_greedy: bool  #: every continuation token is the argmax
    n_tokens: int  #: continuation tokens scored


def model_max_length(model, tokenizer=None, default: int = DEFAULT_MAX_LENGTH) -> int:
    """The model's window, found as lm-eval finds it (config attributes, then the tokenizer)."""
    cfg = model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        val = getattr(cfg, attr, None)
        if isinstance(val, int) and val > 0:
            return val
    tml = getattr(tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < 10**9:
        return tml
    return default


def tok_encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with the tokenizer's default special tokens (as lm-eval does)."""
    return list(tokenizer.encode(text))


def prefix_token_id(tokenizer) -> int:
    """The token lm-eval puts before an empty context: BOS, else EOS."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    raise ParameterError("tokenizer has neither a BOS nor an EOS token to start an empty context")


def resolve_prefix_token(
    tokenizer, prefix: str | int | None, option: str = "--prefix-token"
) -> int:
    """The id of the token that starts every document: ``prefix`` as a token id (an int or a
    string of digits), a token string (``"<|endoftext|>"``, looked up in the vocabulary, else
    text that encodes to exactly one token), or ``None`` for :func:`prefix_token_id` (BOS, else
    EOS). For tokenizers whose BOS is a chat marker (an instruct model's ``<|im_start|>``)."""
    if prefix is None:
        return prefix_token_id(tokenizer)
    size = len(tokenizer)
    if isinstance(prefix, int) or (isinstance(prefix, str) and prefix.strip().isdigit()):
        tid = int(prefix)
        if not 0 <= tid < size:
            raise ParameterError(f"{option} {prefix!r}: token id out of range 0..{size - 1}")
        return tid
    tid = tokenizer.convert_tokens_to_ids(prefix)
    if isinstance(tid, int) and tid != tokenizer.unk_token_id and 0 <= tid < size:
        return tid
    ids = tokenizer.encode(prefix, add_special_tokens=False)
    if len(ids) == 1:
        return int(ids[0])
    raise ParameterError(
        f"{option} {prefix!r} is not one token of this tokenizer (it encodes to {len(ids)} "
        "tokens); give a token string from its vocabulary or a token id"
    )


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Split ``context + continuation`` into token ids exactly as lm-eval 0.4 does."""
    if not context:
        return [prefix_token_id(tokenizer)], tok_encode(tokenizer, continuation)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok_encode(tokenizer, context + continuation)
    ctx = tok_encode(tokenizer, context)
    return ctx, whole[len(ctx) :]


class _Heads:
    """Run the transformer body and project only the positions we need onto the vocabulary.

    Computing logits for every context position costs ``seq × hidden × vocab`` for nothing; the
    body + gathered head gives the same numbers. A one-time check against ``model(...).logits``
    falls back to full logits for models with extra logit transforms (soft-capping, scaling).
    """

    def __init__(self, model):
        self.model = model
        self.body = getattr(model, "base_model", None)
        self.head = (
            model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        )
        self.split = False
        if self.body is not None and self.head is not None and self.body is not model:
            device = next(model.parameters()).device
            ids = torch.tensor([[1, 2, 3, 4]], device=device) % model.config.vocab_size
            with torch.inference_mode():
                full = model(input_ids=ids, use_cache=False).logits
                mine = self.head(self.body(input_ids=ids, use_cache=False).last_hidden_state)
            self.split = full.shape == mine.shape and torch.allclose(full, mine, atol=1e-5)
        self.cache_keyword = _cache_keyword(self.body if self.split else model)

    def __call__(self, cache=None, **kwargs) -> tuple[torch.Tensor, object]:
        """Hidden states (or logits if not split) and the returned KV cache. ``cache`` goes to
        the model under the keyword its ``forward`` takes (:func:`_cache_keyword`)."""
        target = self.body if self.split else self.model
        if cache is not None:
            kwargs[self.cache_keyword] = cache
        out = target(**kwargs)
        states = out.last_hidden_state if self.split else out.logits
        return states, getattr(out, self.cache_keyword, None)  # the output uses the same name

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        return self.head(states).float() if self.split else states.float()


def _cache_keyword(module) -> str:
    """``cache`` where ``module.forward`` takes it (transformers 5 renamed the argument and
    drops the old name in 5.40), else ``past_key_values`` (transformers 4)."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


_HEADS_ATTR = "_ckpt_probe_heads"


def _heads(model) -> _Heads:
    h = getattr(model, _HEADS_ATTR, None)
    if h is None:
        h = _Heads(model)
        setattr(model, _HEADS_ATTR, h)
    return h


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _pad(seqs: Sequence[Sequence[int]], pad: int, device) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
    return out.to(device)


def _new_cache(model):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:  # older transformers
        return DynamicCache()


def _encode_group(
    tokenizer, context: str, choices: Sequence[str], max_length: int
) -> tuple[list[int], list[list[int]]]:
    """Context tokens (shared) and continuation tokens per choice, left-truncated so that
    ``context + longest continuation - 1`` fits the window (lm-eval truncates the same way for
    the longest choice)."""
    if not context:
        ctx = [prefix_token_id(tokenizer)]
        conts = [tok_encode(tokenizer, c) for c in choices]
    else:  # encode_pair for every choice, with the context encoded once and one batch call
        n_spaces = len(context) - len(context.rstrip())
        head, moved = (context[:-n_spaces], context[-n_spaces:]) if n_spaces else (context, "")
        ctx = tok_encode(tokenizer, head)
        wholes = tokenizer([head + moved + c for c in choices])["input_ids"]
        conts = [list(w[len(ctx) :]) for w in wholes]
    for choice, k in zip(choices, conts):
        if not k:
            raise ParameterError(
                f"answer choice {choice!r} encodes to no tokens after context {context[-40:]!r}"
            )
    longest = max(len(k) for k in conts)
    if longest > max_length:
        raise ParameterError(
            f"an answer choice is {longest} tokens long, longer than the model window {max_length}"
        )
    overflow = len(ctx) + longest - 1 - max_length
    if overflow > 0:
        ctx = ctx[overflow:]
    return ctx, conts


def _score_cached(
    model,
    tokenizer,
    encoded: list[tuple[list[int], list[list[int]]]],
    batch_size: int,
    progress: bool = False,
) -> list[list[ChoiceScore]]:
    """KV-cache path: one pass per context batch, then all choices over the repeated cache."""
    heads = _heads(model)
    device = _device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # longest first (lm-eval's order): memory problems show at once, padding stays small
    order = sorted(
        range(len(encoded)),
        key=lambda i: -(len(encoded[i][0]) + max(len(k) for k in encoded[i][1])),
    )
    results: list[list[ChoiceScore] | None] = [None] * len(encoded)
    bar = tqdm(total=len(order), desc="scoring", unit="item", disable=not progress, leave=False)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ctxs = [encoded[i][0] for i in idx]
        lens = torch.tensor([len(c) for c in ctxs], device=device)
        ids = _pad(ctxs, pad_id, device)
        width = ids.shape[1]
        cache = _new_cache(model)
        pos = torch.arange(width, device=device).unsqueeze(0).expand(len(idx), -1)
        states, cache = heads(input_ids=ids, position_ids=pos, cache=cache, use_cache=True)
        last = heads.logits(states[torch.arange(len(idx), device=device), lens - 1])
        first_lp = torch.log_softmax(last, dim=-1)  # predicts every choice's first token
        # one row per (context, choice)
        rows: list[tuple[int, int, list[int]]] = []  # (batch row, choice index, tokens)
        for b, i in enumerate(idx):
            for c, k in enumerate(encoded[i][1]):
                rows.append((b, c, k))
        row_src = torch.tensor([b for b, _, _ in rows], device=device)
        lp_rows = [first_lp[b, k[0]].item() for b, _, k in rows]
        greedy_rows = [bool(first_lp[b].argmax().item() == k[0]) for b, _, k in rows]
        rest_width = max(len(k) for _, _, k in rows) - 1
        if rest_width > 0:
            cache.batch_select_indices(row_src)
            inp = _pad([k[:-1] if len(k) > 1 else [pad_id] for _, _, k in rows], pad_id, device)
            inp = inp[:, :rest_width] if inp.shape[1] > rest_width else inp
            if inp.shape[1] < rest_width:  # all rows shorter: cannot happen, kept for safety
                raise RuntimeError("internal padding error")
            ctx_mask = (torch.arange(width, device=device)[None, :] < lens[:, None]).long()
            choice_mask = torch.zeros((len(rows), rest_width), dtype=torch.long, device=device)
            for r, (_, _, k) in enumerate(rows):
                choice_mask[r, : len(k) - 1] = 1
            mask = torch.cat([ctx_mask[row_src], choice_mask], dim=1)
            cpos = lens[row_src][:, None] + torch.arange(rest_width, device=device)[None, :]
            states, _ = heads(
                input_ids=inp,
                attention_mask=mask,
                position_ids=cpos,
                cache=cache,
                use_cache=True,
            )
            logp = torch.log_softmax(heads.logits(states), dim=-1)  # (rows, rest, vocab)
            for r, (_, _, k) in enumerate(rows):
                if len(k) < 2:
                    continue
                tgt = torch.tensor(k[1:], device=device)
                lp = logp[r, : len(k) - 1]
                lp_rows[r] += lp.gather(1, tgt[:, None]).sum().item()
                greedy_rows[r] = greedy_rows[r] and bool((lp.argmax(-1) == tgt).all().item())
        per_item: dict[int, list[ChoiceScore]] = {}
        for r, (b, _, k) in enumerate(rows):
            per_item.setdefault(b, []).append(ChoiceScore(lp_rows[r], greedy_rows[r], len(k)))
        for b, i in enumerate(idx):
            results[i] = per_item[b]
        bar.update(len(idx))
        del cache
    bar.close()
    return [r for r in results if r is not None]


def _tree_rows(
    encoded: list[tuple[list[int], list[list[int]]]], idx: list[int]
) -> tuple[list[list[int]], list[list[int]], list[list[tuple[int, int]]]]:
    """Pack each context with all its choices into one row: ``ctx | c1[:-1] | c2[:-1] | ...``.

    Returns token rows, position ids and, per row, the (start, length) of each choice segment.
    """
    rows, positions, segments = [], [], []
    for i in idx:
        ctx, conts = encoded[i]
        row, pos, seg = list(ctx), list(range(len(ctx))), []
        for k in conts:
            seg.append((len(row), len(k) - 1))
            row.extend(k[:-1])
            pos.extend(range(len(ctx), len(ctx) + len(k) - 1))
        rows.append(row)
        positions.append(pos)
        segments.append(seg)
    return rows, positions, segments


def _tree_mask(
    lens_row: list[int], segments: list[list[tuple[int, int]]], width: int, device
) -> torch.Tensor:
    """Boolean (B, 1, W, W) mask: context tokens attend causally to the context; a choice token
    attends to the whole context and causally within its own choice (never to other choices)."""
    block = torch.zeros((len(lens_row), width), dtype=torch.long)  # 0 = context
    for b, (n, seg) in enumerate(zip(lens_row, segments)):
        for j, (begin, length) in enumerate(seg):
            block[b, begin : begin + length] = j + 1
        block[b, n:] = -1  # padding: its own block, never attended by real tokens
    block = block.to(device)
    ar = torch.arange(width, device=device)
    causal = ar[None, :] <= ar[:, None]
    same = block[:, :, None] == block[:, None, :]
    to_ctx = (block[:, None, :] == 0) & (block[:, :, None] >= 0)
    return (causal[None] & (same | to_ctx))[:, None]


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all ``seqs``."""
    if not seqs:
        return 0
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
        if n == 0:
            break
    return n


def _prefix_cache(model, heads: _Heads, prefix: list[int]):
    """Keys/values of a shared prompt prefix (e.g. the k shots), computed once."""
    device = _device(model)
    ids = torch.tensor([prefix], device=device)
    pos = torch.arange(len(prefix), device=device)[None]
    _, cache = heads(input_ids=ids, position_ids=pos, cache=_new_cache(model), use_cache=True)
    return [(layer.keys, layer.values) for layer in cache.layers]


def _expand_cache(model, kv: list[tuple[torch.Tensor, torch.Tensor]], n: int):
    cache = _new_cache(model)
    for li, (k, v) in enumerate(kv):
        cache.update(k.expand(n, -1, -1, -1).contiguous(), v.expand(n, -1, -1, -1).contiguous(), li)
    return cache


MIN_SHARED_PREFIX = 8


def _score_packed(
    model,
    tokenizer,
    encoded: list[tuple[list[int], list[list[int]]]],
    batch_size: int,
    progress: bool = False,
    share_prefix: bool = True,
    max_tokens: int | None = None,
) -> list[list[ChoiceScore]]:
    """Tree-attention path: context and every choice in ONE forward pass per row.

    The context's tokens are forwarded once; each choice's tokens see the context and themselves
    through a custom 4-D mask, with position ids that continue the context. A token prefix common
    to all contexts (k-shot examples) is forwarded once and shared through a KV cache. Identical
    in exact arithmetic to running ``context + choice`` separately (tested against full passes).
    """
    heads = _heads(model)
    device = _device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eager = getattr(model.config, "_attn_implementation", "sdpa") == "eager"
    # A prompt prefix shared by every context (the k shots) is forwarded once for all items;
    # each row keeps at least its last context token (it predicts the first answer token).
    shared = min(common_prefix_length([c for c, _ in encoded]), min(len(c) for c, _ in encoded) - 1)
    kv = None
    if share_prefix and shared >= MIN_SHARED_PREFIX:
        kv = _prefix_cache(model, heads, encoded[0][0][:shared])
        encoded = [(c[shared:], k) for c, k in encoded]
    else:
        shared = 0
    results: list[list[ChoiceScore] | None] = [None] * len(encoded)
    bar = tqdm(total=len(encoded), desc="scoring", unit="item", disable=not progress, leave=False)
    row_len = [len(c) + sum(len(k) - 1 for k in conts) for c, conts in encoded]
    for idx in token_batches(row_len, batch_size, token_budget(model, max_tokens)):
        rows, positions, segments = _tree_rows(encoded, idx)
        ids = _pad(rows, pad_id, device)
        width = ids.shape[1]
        pos = torch.zeros_like(ids)
        for b, p in enumerate(positions):
            pos[b, : len(p)] = torch.tensor(p)
            pos[b, len(p) :] = torch.arange(len(p), width)
        pos += shared
        mask = _tree_mask([len(r) for r in rows], segments, width, device)
        cache = None
        if kv is not None:  # every row sees the whole shared prefix
            full = torch.ones((len(idx), 1, width, shared), dtype=torch.bool, device=device)
            mask = torch.cat([full, mask], dim=-1)
            cache = _expand_cache(model, kv, len(idx))
        if eager:  # eager attention adds the mask: 0 where allowed, dtype-min elsewhere
            dt = next(model.parameters()).dtype
            mask = torch.zeros(mask.shape, dtype=dt, device=device).masked_fill(
                ~mask, torch.finfo(dt).min
            )
        states, _ = heads(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            cache=cache,
            use_cache=cache is not None,
        )
        # gather (row, position, target) for every scored token of every choice
        brow, bpos, tgt, owner = [], [], [], []
        n_choice = 0
        spans: list[list[tuple[int, int]]] = []
        for b, i in enumerate(idx):
            ctx, conts = encoded[i]
            per = []
            for (s, _), k in zip(segments[b], conts):
                first = len(brow)
                brow.extend([b] * len(k))
                bpos.extend([len(ctx) - 1] + list(range(s, s + len(k) - 1)))
                tgt.extend(k)
                owner.extend([n_choice] * len(k))
                per.append((first, len(k)))
                n_choice += 1
            spans.append(per)
        sel = states[torch.tensor(brow, device=device), torch.tensor(bpos, device=device)]
        logp = torch.log_softmax(heads.logits(sel), dim=-1)
        t = torch.tensor(tgt, device=device)
        tok_lp = logp.gather(1, t[:, None])[:, 0].double().cpu()
        hit = (logp.argmax(-1) == t).cpu()
        own = torch.tensor(owner)
        sums = torch.zeros(n_choice, dtype=torch.float64).index_add_(0, own, tok_lp).tolist()
        misses = torch.zeros(n_choice, dtype=torch.long).index_add_(0, own, (~hit).long()).tolist()
        c = 0
        for b, i in enumerate(idx):
            out = []
            for _, n in spans[b]:
                out.append(ChoiceScore(sums[c], misses[c] == 0, n))
                c += 1
            results[i] = out
        bar.update(len(idx))
    bar.close()
    return [r for r in results if r is not None]


_METHOD_ATTR = "_ckpt_probe_method"


def _choose_method(model, tokenizer) -> str:
    """``packed`` where the model honours a custom 4-D mask (checked once per model against the
    KV-cache path on a small request), else ``cache``."""
    method = getattr(model, _METHOD_ATTR, None)
    if method is not None:
        return method
    method = "cache"
    if getattr(model.config, "_attn_implementation", None) in ("sdpa", "eager"):
        probe = [_encode_group(tokenizer, "a b c d e f", [" g h", " i", " j k l"], 64)]
        try:
            a = _score_packed(model, tokenizer, probe, 1)[0]
            b = _score_cached(model, tokenizer, probe, 1)[0]
            if all(abs(x.logprob - y.logprob) < 1e-3 for x, y in zip(a, b)):
                method = "packed"
        except Exception:  # a model that rejects 4-D masks keeps the cache path
            method = "cache"
    setattr(model, _METHOD_ATTR, method)
    return method


@torch.inference_mode()
def score_choices(
    model,
    tokenizer,
    requests: Sequence[tuple[str, Sequence[str]]],
    batch_size: int = 16,
    max_length: int | None = None,
    progress: bool = False,
    method: str = "auto",
    share_prefix: bool = True,
    max_tokens: int | None = None,
) -> list[list[ChoiceScore]]:
    """Log-likelihood of every answer choice of every ``(context, choices)`` request.

    The context is forwarded once per request, never once per choice. ``method``:

    * ``packed`` — context and all choices in one row with a tree-shaped 4-D attention mask
      (one forward pass, no cache copies; the default where the model supports custom masks);
    * ``cache`` — one pass over the contexts, then all choices over the repeated KV cache;
    * ``auto`` — ``packed`` if a one-time check on this model agrees with ``cache``.

    With ``share_prefix`` (packed path), a token prefix common to all contexts (the k shots) is
    forwarded once for all requests. Packed rows are batched by :func:`token_batches` (at most
    ``batch_size`` rows and ``max_tokens`` tokens, default :func:`token_budget`).

    Returns, per request, one :class:`ChoiceScore` per choice (in the given order).
    """
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
    if method not in ("auto", "packed", "cache"):
        raise ParameterError(f"method must be auto, packed or cache, not {method!r}")
    max_length = max_length or model_max_length(model, tokenizer)
    encoded = [_encode_group(tokenizer, ctx, ch, max_length) for ctx, ch in requests]
    if method == "auto":
        method = _choose_method(model, tokenizer)
    if method == "packed":
        # a packed row is longer than the window, but its position ids never exceed it
        return _score_packed(
            model, tokenizer, encoded, batch_size, progress, share_prefix, max_tokens
        )
    return _score_cached(model, tokenizer, encoded, batch_size, progress)


def loglikelihood(
    model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 16
) -> list[ChoiceScore]:
    """Flat ``(context, continuation)`` pairs (lm-eval's request type), sharing equal contexts."""
    groups: dict[str, list[int]] = {}
    for i, (ctx, _) in enumerate(pairs):
        groups.setdefault(ctx, []).append(i)
    reqs = [(ctx, [pairs[i][1] for i in members]) for ctx, members in groups.items()]
    scored = score_choices(model, tokenizer, reqs, batch_size=batch_size)
    out: list[ChoiceScore | None] = [None] * len(pairs)
    for members, scores in zip(groups.values(), scored):
        for i, s in zip(members, scores):
            out[i] = s
    return [s for s in out if s is not None]


@torch.inference_mode()
def greedy_generate(
    model,
    tokenizer,
    contexts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    stop: Sequence[str] = ("\n",),
    max_length: int | None = None,
    give_up_chars: int | None = None,
    max_tokens: int | None = None,
) -> list[str]:
    """Greedy continuations, cut at the first ``stop`` string (batched, with a KV cache).

    Contexts are left-truncated to ``window - max_new_tokens`` tokens and batched by
    :func:`token_batches` (at most ``batch_size`` rows and ``max_tokens`` prompt tokens per
    batch, default ``GENERATE_BUDGET_FACTOR`` × :func:`token_budget`). With ``give_up_chars``,
    a row stops once its output, stripped of surrounding whitespace, is longer than that many
    characters and holds no stop string: more tokens can only make it longer, so an exact-match
    scorer whose longest answer has ``give_up_chars`` characters already knows it failed (the
    returned text is then that truncated output).
    """
    max_length = max_length or model_max_length(model, tokenizer)
    budget = max(1, max_length - max_new_tokens)
    heads = _heads(model)
    device = _device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = tokenizer.eos_token_id
    enc = [(tok_encode(tokenizer, c) or [prefix_token_id(tokenizer)])[-budget:] for c in contexts]
    out: list[str] = [""] * len(enc)
    prefill = token_budget(model, max_tokens) * (
        GENERATE_BUDGET_FACTOR if max_tokens is None else 1
    )
    for idx in token_batches([len(e) for e in enc], batch_size, prefill):
        ctxs = [enc[i] for i in idx]
        n = len(idx)
        lens = torch.tensor([len(c) for c in ctxs], device=device)
        ids = _pad(ctxs, pad_id, device)
        width = ids.shape[1]
        pos = torch.arange(width, device=device).unsqueeze(0).expand(n, -1)
        states, cache = heads(
            input_ids=ids, position_ids=pos, cache=_new_cache(model), use_cache=True
        )
        logits = heads.logits(states[torch.arange(n, device=device), lens - 1])
        mask = (torch.arange(width, device=device)[None, :] < lens[:, None]).long()
        gen: list[list[int]] = [[] for _ in range(n)]
        finished = [False] * n
        for step in range(max_new_tokens):
            nxt = logits.argmax(-1)
            for r in range(n):
                if finished[r]:
                    continue
                t = int(nxt[r])
                if eos is not None and t == eos:
                    finished[r] = True
                    continue
                gen[r].append(t)
                text = tokenizer.decode(gen[r], skip_special_tokens=True)
                if any(s in text for s in stop):
                    finished[r] = True
                elif give_up_chars is not None and len(text.strip()) > give_up_chars:
                    finished[r] = True  # no continuation can shorten it to an answer
            if all(finished) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones((n, 1), dtype=torch.long, device=device)], dim=1)
            states, cache = heads(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=(lens + step)[:, None],
                cache=cache,
                use_cache=True,
            )
            logits = heads.logits(states[:, -1])
        for r, i in enumerate(idx):
            text = tokenizer.decode(gen[r], skip_special_tokens=True)
            for s in stop:
                if s and s in text:
                    text = text.split(s, 1)[0]
            out[i] = text
    return out


#: tokens per forward pass by device type when no budget is given (see :func:`token_budget`)
TOKEN_BUDGET = {"cpu": 2048, "cuda": 65536, "mps": 16384}
#: a decode step forwards one token per row, so generation batches may hold this many times a
#: scoring pass's budget of prompt tokens (their prefill is the only wide pass)
GENERATE_BUDGET_FACTOR = 4


def token_budget(model, max_tokens: int | None = None) -> int:
    """Tokens (rows × longest row) per forward pass: ``max_tokens``, else the device default.

    On a CPU a forward pass is compute-bound from a few hundred tokens on: larger batches only
    add padding and cache misses (activations, attention scores and vocabulary logits of every
    row), so the default is one window's worth of tokens. A GPU wants wide batches."""
    if max_tokens is not None:
        if max_tokens < 1:
            raise ParameterError(f"max_tokens must be >= 1, got {max_tokens}")
        return int(max_tokens)
    return TOKEN_BUDGET.get(_device(model).type, TOKEN_BUDGET["cpu"])


def token_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Indices grouped into batches, longest first: a batch takes rows while it has at most
    ``batch_size`` rows and ``rows × its longest row <= max_tokens`` (always at least one row).

    Sorting keeps the padding small (rows of a batch have similar lengths) and the token budget
    keeps short windows in wide batches and long ones in narrow batches."""
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        width = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) >= batch_size or (len(cur) + 1) * width > max_tokens):
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


@torch.inference_mode()
def token_nll(
    model,
    tokenizer,
    sequences: Sequence[Sequence[int]],
    score_from: Sequence[int],
    batch_size: int = 8,
    max_tokens: int | None = None,
) -> list[torch.Tensor]:
    """Per-token NLL (nats, float64) of ``seq[t]`` for ``t >= score_from[i]`` given ``seq[:t]``.

    Sequences are sorted by length and batched by :func:`token_batches` (at most ``batch_size``
    rows and ``max_tokens`` tokens per pass, default per device: :func:`token_budget`). They are
    right-padded and no attention mask is passed: under causal attention pad tokens after the
    real ones cannot change them, and padded positions are never scored. A sequence's last
    token is a target only, so it is not forwarded: a sequence of ``window + 1`` tokens fits a
    model of ``window`` positions.
    """
    heads = _heads(model)
    device = _device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[torch.Tensor | None] = [None] * len(sequences)
    lengths = [max(1, len(s) - 1) for s in sequences]
    for idx in token_batches(lengths, batch_size, token_budget(model, max_tokens)):
        ids = _pad([sequences[i] for i in idx], pad_id, device)
        if ids.shape[1] > 1:
            ids = ids[:, :-1]  # the longest row's last token predicts nothing
        pos = torch.arange(ids.shape[1], device=device).unsqueeze(0).expand(len(idx), -1)
        states, _ = heads(input_ids=ids, position_ids=pos, use_cache=False)
        for b, i in enumerate(idx):
            seq = sequences[i]
            s = max(1, int(score_from[i]))
            if s >= len(seq):
                out[i] = torch.zeros(0, dtype=torch.float64)
                continue
            logp = torch.log_softmax(heads.logits(states[b, s - 1 : len(seq) - 1]), dim=-1)
            tgt = torch.tensor(list(seq[s:]), device=device)
            out[i] = (-logp.gather(1, tgt[:, None])[:, 0]).double().cpu()
    return [t if t is not None else torch.zeros(0, dtype=torch.float64) for t in out]


def sliding_windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows ``(begin, end, score_from)`` over a sequence of ``n_tokens`` (position 0 is the
    BOS/prefix and is never a target). Every target position 1..n-1 is scored exactly once;
    each window after the first keeps at least ``window - stride`` tokens of context."""
    if window < 2:
        raise ParameterError(f"window must be >= 2 tokens, got {window}")
    if not 1 <= stride <= window:
        raise ParameterError(f"stride must be in 1..window ({window}), got {stride}")
    out: list[tuple[int, int, int]] = []
    scored_to = 1
    begin = 0
    while scored_to < n_tokens:
        end = min(begin + window, n_tokens)
        if end > scored_to:
            out.append((begin, end, scored_to - begin))
            scored_to = end
        if end == n_tokens:
            break
        begin += stride
        # with stride == window the next window starts at the last scored token so it has
        # one token of context (unlike lm-eval's: see :func:`lmeval_rolling_windows`)
        if begin >= scored_to:
            begin = scored_to - 1
    return out


def lmeval_rolling_windows(n_tokens: int, window: int) -> list[tuple[int, int, int]]:
    """lm-evaluation-harness's ``loglikelihood_rolling`` windows, as ``(begin, end,
    score_from)`` over a sequence of ``n_tokens`` whose position 0 is the prefix token.

    lm-eval forwards ``window`` tokens per window and scores every one of them: the first window
    is ``[prefix] + t[:window - 1]`` and predicts ``t[:window]``; each next window predicts the
    next (up to) ``window`` tokens with one token of context — except the last, shorter one,
    which is filled on the left with earlier tokens up to ``window`` (its
    ``get_rolling_token_windows`` with ``context_len=1`` and ``make_disjoint_window``). Here a
    window is ``seq[begin:end]`` (up to ``window + 1`` tokens; its last token is a target only,
    see :func:`token_nll`) scored from ``score_from``.
    """
    if window < 1:
        raise ParameterError(f"window must be >= 1 token, got {window}")
    n = n_tokens - 1  # tokens to predict (seq[1:])
    if n <= 0:
        return []
    first = min(window, n)
    out = [(0, first + 1, 1)]
    predicted = first
    while predicted < n:
        step = min(n - predicted, window)
        end = predicted + step  # in text-token coordinates; the sequence is shifted by one
        out.append((end - window, end + 1, window + 1 - step))
        predicted = end
    return out


@dataclass
class PerplexityResult:
    """Per-document sums: NLL (nats), scored tokens and UTF-8 bytes; plus the aggregate."""

    nll: list[float]
    tokens: list[int]
    bytes: list[int]
    sq: list[float] = field(default_factory=list)  #: per document, Σ (token NLL)²

    @property
    def loss(self) -> float:
        """Mean token NLL in nats (token-weighted over all documents)."""
        return sum(self.nll) / max(1, sum(self.tokens))

    @property
    def ppl(self) -> float:
        return math.exp(self.loss)

    @property
    def bpb(self) -> float:
        """Bits per UTF-8 byte: total NLL in bits / total bytes (comparable across tokenizers)."""
        return sum(self.nll) / math.log(2) / max(1, sum(self.bytes))


ROLLING_MODES = ("sliding", "lmeval")


def perplexity(
    model,
    tokenizer,
    texts: Sequence[str],
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    rolling: str = "sliding",
    prefix: str | int | None = None,
    max_tokens: int | None = None,
) -> PerplexityResult:
    """Token NLL of each text, window by window.

    Each document is ``[prefix] + tokens(text)``; the prefix (``prefix``, see
    :func:`resolve_prefix_token`; default BOS, else EOS) is never scored, every text token is
    scored exactly once. ``window`` defaults to the model window. ``rolling``:

    * ``sliding`` — the strided sliding window of the transformers perplexity guide: windows of
      ``window`` tokens (prefix included) every ``stride`` tokens (default ``window // 2``), each
      token scored with at least ``window - stride`` tokens of context; the text is tokenized
      without special tokens;
    * ``lmeval`` — lm-evaluation-harness's ``loglikelihood_rolling`` exactly
      (:func:`lmeval_rolling_windows`; ``stride`` does not apply): the text is tokenized as
      lm-eval tokenizes it (the tokenizer's default special tokens), and per-document
      log-likelihoods equal lm-eval's ``--model hf ... max_length=window`` to float rounding.

    Windows of all documents are sorted by length and batched by tokens (``batch_size`` rows
    and ``max_tokens`` tokens at most per pass; :func:`token_budget`), so padding stays small.
    """
    if rolling not in ROLLING_MODES:
        raise ParameterError(f"rolling must be one of {', '.join(ROLLING_MODES)}, not {rolling!r}")
    window = window or model_max_length(model, tokenizer)
    if rolling == "lmeval" and stride is not None:
        raise ParameterError("stride does not apply to rolling='lmeval' (lm-eval's own windows)")
    stride = stride or max(1, window // 2)
    seqs: list[list[int]] = []
    starts: list[int] = []
    owner: list[int] = []
    pre = resolve_prefix_token(tokenizer, prefix)
    for d, text in enumerate(texts):
        if rolling == "lmeval":
            seq = [pre] + tok_encode(tokenizer, text)
            spans = lmeval_rolling_windows(len(seq), window)
        else:
            seq = [pre] + list(tokenizer.encode(text, add_special_tokens=False))
            spans = sliding_windows(len(seq), window, stride)
        for b, e, s in spans:
            seqs.append(seq[b:e])
            starts.append(s)
            owner.append(d)
    nlls = token_nll(model, tokenizer, seqs, starts, batch_size=batch_size, max_tokens=max_tokens)
    nll = [0.0] * len(texts)
    ntok = [0] * len(texts)
    sq = [0.0] * len(texts)
    for d, t in zip(owner, nlls):
        nll[d] += float(t.sum())
        ntok[d] += int(t.numel())
        sq[d] += float((t * t).sum())
    return PerplexityResult(nll, ntok, [len(t.encode("utf-8")) for t in texts], sq)
