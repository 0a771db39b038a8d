"""Tokens per optimizer step: explicit per-run values, and family defaults only where they hold.

Tokens seen = step x tokens per step. The value comes, in order, from ``--tokens-per-step``
(``N`` for every run or ``run=N,...``), the mapping file's ``tokens_per_step`` (a number or a
mapping run → N), and last from a known family default — recorded as an *assumption*: every run
whose tokens were assumed gets a warning in the import report.

Family defaults: Pythia trains with 1024 sequences x 2048 tokens = 2,097,152 tokens per step,
except its batch-size ablations (``pythia-160m-0.5MtokBS`` ...), whose name gives the batch in
tokens (M = 2^20, so 0.5M = 524,288); a batch-size marker that cannot be read gives no default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import ImportFormatError
from .common import MAX_INT

#: ``N`` for every run, or run → N.
TokensPerStep = int | Mapping[str, int] | None

PYTHIA_TOKENS_PER_STEP = 1024 * 2048
_PYTHIA_BS_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([km])tok[-_]?bs", re.IGNORECASE)
_BS_MARKER_RE = re.compile(r"(tok[-_]?bs|batch|(?<![a-z])bs\d*(?![a-z]))", re.IGNORECASE)


def _positive_int(text: str, where: str) -> int:
    try:
        n = int(text.strip())
    except ValueError:
        raise ImportFormatError(f"{where}: {text.strip()!r} is not a whole number") from None
    if n <= 0 or n > MAX_INT:
        raise ImportFormatError(f"{where}: {n} must be between 1 and 2^63 - 1")
    return n


def parse_tokens_per_step(
    value: str | int | None, option: str = "--tokens-per-step"
) -> TokensPerStep:
    """``"2097152"`` (every run) or ``"runA=1024,runB=2048"`` (per run) → int or dict.

    Raises :class:`ImportFormatError` naming ``option`` for ``abc``, ``runA=x``, ``=5``, 0 or a
    negative number.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ImportFormatError(f"{option}: {value!r} is not a whole number")
    if isinstance(value, int):
        return _positive_int(str(value), option)
    text = str(value)
    if "=" not in text:
        return _positive_int(text, f"{option} {text!r}")
    out: dict[str, int] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        run, sep, n = part.partition("=")
        if not sep or not run.strip():
            raise ImportFormatError(f"{option}: {part!r} is not RUN=N")
        out[run.strip()] = _positive_int(n, f"{option} {part.strip()!r}")
    return out


def mapping_tokens_per_step(value: object, where: str) -> TokensPerStep:
    """The ``tokens_per_step`` of a mapping file: a number, or a mapping run → number."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): _positive_int(str(v), f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return _positive_int(str(value), where)
    raise ImportFormatError(f"{where}: must be a whole number or a mapping run → number")


def family_tokens_per_step(name: str) -> tuple[int | None, str]:
    """(tokens per step, why) of a known family named in ``name``; (None, why) if unknown.

    >>> family_tokens_per_step("pythia-160m-0.5MtokBS")[0]
    524288
    """
    low = name.lower()
    if "pythia" not in low:
        return None, "no family default"
    m = _PYTHIA_BS_RE.search(low)
    if m:
        scale = 2**20 if m.group(2).lower() == "m" else 2**10
        tps = float(m.group(1)) * scale
        if tps.is_integer() and tps > 0 and int(tps) % 2048 == 0:
            return int(tps), f"Pythia batch-size variant: {m.group(0)} = {int(tps):,} tokens/step"
        return None, f"batch size {m.group(0)!r} in the name is not a whole number of sequences"
    if _BS_MARKER_RE.search(low):
        return None, "the name marks a batch-size variant whose batch cannot be read"
    return PYTHIA_TOKENS_PER_STEP, "Pythia default: 1024 x 2048 = 2,097,152 tokens/step"


def tokens_per_step_for(
    run: str,
    explicit: TokensPerStep,
    from_mapping: TokensPerStep = None,
    family_name: str | None = None,
) -> tuple[int | None, str | None]:
    """(tokens per step, warning) for ``run``: explicit, then mapping, then the family default
    of ``family_name`` (default: the run name, e.g. ``pythia-160m``).

    The warning is None when the value was given; it names the run and the assumption (or says
    that tokens stay empty) otherwise.
    """
    for given in (explicit, from_mapping):
        if isinstance(given, Mapping):
            if run in given:
                return int(given[run]), None
        elif given is not None:
            return int(given), None
    tps, why = family_tokens_per_step(family_name or run)
    if tps is not None:
        return tps, (
            f"tokens of run {run!r} assumed from its name ({why}); "
            f"pass --tokens-per-step {run}=N if that is wrong"
        )
    return None, (
        f"tokens of run {run!r} unknown ({why}): tokens left empty; pass --tokens-per-step {run}=N"
    )
