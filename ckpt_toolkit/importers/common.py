"""Shared pieces of the importers: the report, model-size parsing, row helpers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Total parameter counts of the Pythia suite (Biderman et al. 2023, Table 1 / model cards).
PYTHIA_PARAMS: dict[str, int] = {
    "14m": 14_067_712,
    "31m": 30_494_720,
    "70m": 70_426_624,
    "160m": 162_322_944,
    "410m": 405_334_016,
    "1b": 1_011_781_632,
    "1.4b": 1_414_647_808,
    "2.8b": 2_775_208_960,
    "6.9b": 6_857_302_016,
    "12b": 11_846_072_320,
}
#: Tokens per optimizer step of known model families (Pythia: 1024 sequences x 2048 tokens).
TOKENS_PER_STEP: dict[str, int] = {"pythia": 2_097_152}

_SIZE_RE = re.compile(r"(?<![0-9a-z.])(\d+(?:\.\d+)?)\s*([kmbt])(?![a-z])", re.IGNORECASE)
_SCALE = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
_STEP_RE = re.compile(r"step[-_]?(\d+)", re.IGNORECASE)


@dataclass
class ImportReport:
    """What an import did: rows written, checkpoints seen, and every skipped item with a reason."""

    files: list[str] = field(default_factory=list)
    rows_written: int = 0
    checkpoints: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, file: str | Path, item: str, reason: str) -> None:
        """Record one skipped item (a metric, task or file) and why."""
        self.skipped.append({"file": str(file), "item": item, "reason": reason})

    def merge(self, other: ImportReport) -> None:
        """Add another report's counts and lists to this one."""
        self.files += other.files
        self.rows_written += other.rows_written
        self.checkpoints += [c for c in other.checkpoints if c not in self.checkpoints]
        self.runs += [r for r in other.runs if r not in self.runs]
        self.skipped += other.skipped

    def summary(self) -> str:
        """One human-readable paragraph (the CLI prints it)."""
        reasons: dict[str, int] = {}
        for s in self.skipped:
            reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        lines = [
            f"imported {self.rows_written} rows from {len(self.files)} file(s): "
            f"{len(self.runs)} run(s), {len(self.checkpoints)} checkpoint(s)"
        ]
        if reasons:
            lines.append(f"skipped {len(self.skipped)} item(s):")
            lines += [f"  {n} x {r}" for r, n in sorted(reasons.items(), key=lambda t: -t[1])]
        return "\n".join(lines)


def parse_size(text: str) -> int | None:
    """Parameter count from a model name: "pythia-1.4b" → 1.4e9, "pythia-70m" → 7e7.

    Known Pythia sizes return the exact published count rather than the rounded name.
    """
    name = text.lower()
    matches = _SIZE_RE.findall(name)
    if not matches:
        return None
    num, unit = matches[-1]
    if "pythia" in name and f"{num}{unit}" in PYTHIA_PARAMS:
        return PYTHIA_PARAMS[f"{num}{unit}"]
    return int(round(float(num) * _SCALE[unit.lower()]))


def parse_step(text: str | None) -> int | None:
    """The N of "stepN" / "step-N" / "step_N" in a revision string, else None."""
    if not text:
        return None
    m = _STEP_RE.search(str(text))
    return int(m.group(1)) if m else None


def family_tokens_per_step(model: str) -> int | None:
    """Tokens per step of a known model family named in ``model`` (e.g. Pythia), else None."""
    low = model.lower()
    return next((t for fam, t in TOKENS_PER_STEP.items() if fam in low), None)


def checkpoint_name(run: str, step: int | None) -> str:
    """The store's checkpoint name, ``"<run>@step<N>"`` (just ``run`` when the step is unknown)."""
    return f"{run}@step{step}" if step is not None else run


def as_number(value: Any) -> float | None:
    """A finite float, or None for non-numbers, "N/A", NaN and infinities."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return v if math.isfinite(v) else None
