"""Shared pieces of the importers: the report, model-size and step parsing, checked numbers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ImportFormatError

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
#: Largest value a store integer column (BIGINT) holds.
MAX_INT = 2**63 - 1
#: Detailed skip entries kept per reason (all are counted; the rest are summarised).
MAX_DETAILS_PER_REASON = 200

_SIZE_RE = re.compile(r"(?<![0-9a-z.])(\d+(?:\.\d+)?)\s*([kmbt])(\d*)(?![a-z])", re.IGNORECASE)
_SCALE = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
_STEP_RE = re.compile(r"step[-_]?(\d+)", re.IGNORECASE)


@dataclass
class ImportReport:
    """What an import did: rows written, checkpoints seen, every skipped item with its reason,
    tasks the taxonomy does not know ("other"), and warnings (e.g. tokens assumed, not read)."""

    files: list[str] = field(default_factory=list)
    rows_written: int = 0
    checkpoints: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    skip_counts: dict[str, int] = field(default_factory=dict)
    other_tasks: dict[str, bool] = field(default_factory=dict)  # task → in the taxonomy?
    warnings: list[str] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)

    def skip(self, file: str | Path, item: str, reason: str, count: int = 1) -> None:
        """Record ``count`` skipped items (a metric, row, column or file) sharing one reason."""
        n = self.skip_counts.get(reason, 0)
        self.skip_counts[reason] = n + count
        if n < MAX_DETAILS_PER_REASON:
            self.skipped.append({"file": str(file), "item": item, "reason": reason})

    def warn(self, message: str) -> None:
        """Record a warning once (the CLI prints it; nothing was skipped because of it)."""
        if message not in self.warnings:
            self.warnings.append(message)

    def note_other(self, task: str, known: bool) -> None:
        """Record a task whose category is "other" (``known``: the taxonomy says so; else the
        taxonomy does not know the task)."""
        self.other_tasks[task] = known

    def add_file(self, file: str | Path, fmt: str) -> None:
        """Record one file read, in format ``fmt``."""
        self.files.append(str(file))
        self.formats[fmt] = self.formats.get(fmt, 0) + 1

    def merge(self, other: ImportReport) -> None:
        """Add another report's counts and lists to this one."""
        self.files += other.files
        self.rows_written += other.rows_written
        self.checkpoints += [c for c in other.checkpoints if c not in self.checkpoints]
        self.runs += [r for r in other.runs if r not in self.runs]
        self.skipped += other.skipped
        for r, n in other.skip_counts.items():
            self.skip_counts[r] = self.skip_counts.get(r, 0) + n
        self.other_tasks.update(other.other_tasks)
        for w in other.warnings:
            self.warn(w)
        for f, n in other.formats.items():
            self.formats[f] = self.formats.get(f, 0) + n

    @property
    def n_skipped(self) -> int:
        """Total number of skipped items (counted, including those without a detail entry)."""
        return sum(self.skip_counts.values())

    def summary(self) -> str:
        """A human-readable report (the CLI prints it)."""
        fmts = ", ".join(f"{n} {f}" for f, n in sorted(self.formats.items()))
        lines = [
            f"imported {self.rows_written} rows from {len(self.files)} file(s)"
            + (f" ({fmts})" if fmts else "")
            + f": {len(self.runs)} run(s), {len(self.checkpoints)} checkpoint(s)"
        ]
        if self.skip_counts:
            lines.append(f"skipped {self.n_skipped} item(s):")
            for reason, n in sorted(self.skip_counts.items(), key=lambda t: (-t[1], t[0])):
                examples = [s["item"] for s in self.skipped if s["reason"] == reason][:3]
                lines.append(f"  {n} x {reason}" + (f"  (e.g. {', '.join(examples)})"))
        unknown = sorted(t for t, known in self.other_tasks.items() if not known)
        other = sorted(t for t, known in self.other_tasks.items() if known)
        if unknown:
            more = f" (+{len(unknown) - 20} more)" if len(unknown) > 20 else ""
            lines.append(
                f"{len(unknown)} task(s) not in the taxonomy, so in category 'other' (not "
                f"averaged; add them with --taxonomy): {', '.join(unknown[:20])}{more}"
            )
        if other:
            more = f" (+{len(other) - 3} more)" if len(other) > 3 else ""
            lines.append(
                f"{len(other)} task(s) in category 'other' by the taxonomy (not averaged): "
                f"{', '.join(other[:3])}{more}"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def parse_size(text: str) -> int | None:
    """Parameter count from a model name: "pythia-1.4b" → 1.4e9, "pythia-70m" → 7e7,
    "tr3d-1B3-oscar" → 1.3e9 (BigScience style). Known Pythia sizes return the published count.
    """
    name = str(text).lower()
    matches = _SIZE_RE.findall(name)
    if not matches:
        return None
    num, unit, frac = matches[-1]
    if frac and "." not in num:
        num = f"{num}.{frac}"
    if "pythia" in name and f"{num}{unit}" in PYTHIA_PARAMS:
        return PYTHIA_PARAMS[f"{num}{unit}"]
    return int(round(float(num) * _SCALE[unit.lower()]))


def parse_step(text: str | None) -> int | None:
    """The N of "stepN" / "step-N" / "step_N" in a revision string, else None."""
    if not text:
        return None
    m = _STEP_RE.search(str(text))
    return int(m.group(1)) if m else None


def checkpoint_name(run: str, step: int | None) -> str:
    """The store's checkpoint name, ``"<run>@step<N>"`` (just ``run`` when the step is unknown)."""
    return f"{run}@step{step}" if step is not None else run


def as_number(value: Any) -> float | None:
    """A finite float, or None for non-numbers, "N/A", NaN and infinities."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            v = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str):
        try:
            v = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return v if math.isfinite(v) else None


def checked_int(value: Any, where: str, *, minimum: int = 0, allow_none: bool = True) -> int | None:
    """``value`` as a whole number in ``[minimum, 2**63)``; None for missing values.

    Accepts ints, integral floats (``2.0``) and strings of them; anything else — ``1.7``,
    ``"ten"``, a list, a number out of range — raises :class:`ImportFormatError` naming
    ``where`` (the file and row or key) and the value.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        if allow_none:
            return None
        raise ImportFormatError(f"{where}: a value is required")
    if isinstance(value, bool):
        raise ImportFormatError(f"{where}: {value!r} is not a whole number")
    if isinstance(value, int):
        out = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ImportFormatError(f"{where}: {value!r} is not a whole number")
        out = int(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            out = int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                raise ImportFormatError(f"{where}: {value!r} is not a whole number") from None
            if not math.isfinite(f) or f != int(f):
                raise ImportFormatError(f"{where}: {value!r} is not a whole number") from None
            out = int(f)
    else:
        raise ImportFormatError(
            f"{where}: expected a whole number, got {type(value).__name__} {value!r:.60}"
        )
    if out < minimum or out > MAX_INT:
        hi = "2^63 - 1"
        raise ImportFormatError(f"{where}: {out} is out of range (allowed: {minimum} .. {hi})")
    return out
