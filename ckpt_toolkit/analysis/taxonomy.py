"""Capability taxonomy: benchmark → category, chance level and score metric.

Defaults live in ``taxonomy.yaml`` next to this module; a user YAML of the same shape is merged
over them (``load_taxonomy(path)``). Categories follow "The Fine Line" (arXiv 2404.01204):
knowledge/examination, reading comprehension, commonsense, reasoning/math, code, plus language
modelling. Scores are normalised against chance, ``(s − chance) / (1 − chance)``, so that 0 means
"no better than guessing" and 1 means perfect, and benchmarks can be averaged within a category.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ParameterError
from ..probes.registry import (
    HELDOUT_PROBES,
    KSHOT,
    LANGUAGE_MODELING,
    higher_is_better,
    lower_is_better_metrics,
    metric_info,
)
from ..yamlfiles import deep_merge, read_yaml_mapping

DEFAULT_TAXONOMY_PATH = Path(__file__).with_name("taxonomy.yaml")
UNKNOWN_CATEGORY = "other"


@dataclass(frozen=True)
class BenchmarkInfo:
    """What the taxonomy knows about one task name."""

    task: str
    benchmark: str  # the benchmark it is reported under (its group, e.g. "mmlu", or itself)
    category: str
    chance: float | None
    metric: str | None  # preferred score metric, None = the taxonomy's score_metrics order
    known: bool = True


@dataclass
class Taxonomy:
    """Benchmark → category mapping with chance levels; see ``taxonomy.yaml`` for the shape."""

    categories: dict[str, str]
    benchmarks: dict[str, dict[str, Any]]
    patterns: dict[str, dict[str, Any]]
    capability_aliases: dict[str, str]
    score_metrics: list[str]
    lower_is_better: list[str]
    loss_metrics: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Taxonomy:
        """Build from a parsed YAML mapping; raises :class:`ParameterError` naming ``source``."""
        tax = cls(
            categories=dict(data.get("categories") or {}),
            benchmarks={str(k): dict(v or {}) for k, v in (data.get("benchmarks") or {}).items()},
            patterns={str(k): dict(v or {}) for k, v in (data.get("patterns") or {}).items()},
            capability_aliases=dict(data.get("capability_aliases") or {}),
            score_metrics=list(data.get("score_metrics") or ["acc"]),
            lower_is_better=_lower_is_better(data.get("lower_is_better"), source),
            loss_metrics=list(data.get("loss_metrics") or []),
        )
        tax.validate(source)
        return tax

    def validate(self, source: str) -> None:
        """Check categories and chance levels; raise :class:`ParameterError` on the first issue."""
        for kind, entries in (("benchmarks", self.benchmarks), ("patterns", self.patterns)):
            for name, entry in entries.items():
                unknown = set(entry) - {"category", "chance", "metric", "group"}
                if unknown:
                    raise ParameterError(
                        f"taxonomy {source}: {kind}.{name} has unknown key(s) {sorted(unknown)}"
                    )
                cat = entry.get("category")
                if cat is None or cat not in self.categories:
                    raise ParameterError(
                        f"taxonomy {source}: {kind}.{name} has category {cat!r}; "
                        f"known categories: {sorted(self.categories)}"
                    )
                ch = entry.get("chance")
                if ch is not None and not (isinstance(ch, (int, float)) and 0 <= ch < 1):
                    raise ParameterError(
                        f"taxonomy {source}: {kind}.{name} has chance {ch!r}; need 0 <= chance < 1"
                    )
        for alias, cat in self.capability_aliases.items():
            if cat not in self.categories:
                raise ParameterError(
                    f"taxonomy {source}: capability_aliases.{alias} → unknown category {cat!r}"
                )

    # -- lookups ---------------------------------------------------------------------------
    def _entry(self, name: str) -> dict[str, Any] | None:
        entry: dict[str, Any] | None = self.benchmarks.get(name)
        if entry is None:
            low = name.lower()
            entry = next((e for k, e in self.benchmarks.items() if k.lower() == low), None)
        if entry is None:
            entry = next((e for p, e in self.patterns.items() if fnmatch.fnmatch(name, p)), None)
        return entry

    def lookup(self, task: str, capability: str | None = None) -> BenchmarkInfo:
        """Category, chance and group of ``task``; ``capability`` (a probe row's own label)
        decides the category when the task is not in the taxonomy.

        The name is looked up as given, then normalised (:func:`normalize_task_name`: split and
        format suffixes stripped, so ``hellaswag_val_rc_5shot`` is ``hellaswag``)."""
        entry = self._entry(task)
        if entry is None:
            norm = normalize_task_name(task)
            entry = self._entry(norm) if norm != task else None
        if entry is not None:
            group = entry.get("group")
            return BenchmarkInfo(
                task=task,
                benchmark=str(group or task),
                category=str(entry["category"]),
                chance=None if entry.get("chance") is None else float(entry["chance"]),
                metric=entry.get("metric"),
            )
        category = self.category_of_capability(capability)
        return BenchmarkInfo(task, task, category, None, None, known=capability is not None)

    def category_of_capability(self, capability: str | None) -> str:
        """Map a capability label (e.g. the zoo's ``world_knowledge``) onto a category."""
        if capability is None or (isinstance(capability, float) and math.isnan(capability)):
            return UNKNOWN_CATEGORY
        cap = str(capability)
        if cap in self.categories:
            return cap
        return self.capability_aliases.get(cap, self.capability_aliases.get(cap.lower(), "other"))

    def is_loss_metric(self, metric: str) -> bool:
        """Whether ``metric`` is lower-is-better (perplexity, loss, bits per byte, ...): the
        registry's direction (:mod:`ckpt_toolkit.probes.registry`), or a name the taxonomy YAML
        adds under ``lower_is_better``."""
        base = str(metric).split(",")[0].strip()
        if base.lower() in {m.lower() for m in self.lower_is_better}:
            return True
        return higher_is_better(base) is False

    def is_loss_series(self, task: str, metric: str) -> bool:
        """Whether (``task``, ``metric``) is a language-modelling loss series: an eval-loss
        metric (cross-entropy, bits per byte, loss) on any task, or a perplexity-like metric
        on a language-modelling task (``lambada`` with ``ppl``)."""
        base = metric.split(",")[0]
        info = metric_info(base)
        if info is not None and info.kind == "loss":  # an eval loss on whatever task carries it
            return True
        return self.is_loss_metric(base) and self.lookup(task).category == LANGUAGE_MODELING


def _lower_is_better(extra: Any, source: str) -> list[str]:
    """The registry's lower-is-better metric names, plus names a taxonomy YAML adds (a metric
    the registry declares higher-is-better cannot be listed: one declared direction)."""
    names = lower_is_better_metrics()
    for m in extra or []:
        m = str(m)
        known = metric_info(m)
        if known is not None and known.name.lower() == m.lower() and known.higher_is_better:
            raise ParameterError(
                f"taxonomy {source}: lower_is_better lists {m!r}, which "
                "ckpt_toolkit.probes.registry.METRICS declares higher-is-better"
            )
        if m.lower() not in {n.lower() for n in names}:
            names.append(m)
    return names


#: Split and format suffixes stripped (repeatedly, from the end) before a taxonomy lookup.
_TASK_SUFFIX_RE = re.compile(
    r"[_-](val|validation|valid|test|dev|train|rc|mc|mcf|cf|gen|olmes|var|"
    r"\d+[_-]?shots?|len[_-]?norm|length[_-]?normalized|bpb|ce)$"
)


def normalize_task_name(task: str) -> str:
    """The benchmark name under split/format decorations, for taxonomy lookups.

    Lower-cases, keeps the last ``/`` component, drops OLMES ``::suite`` and ``:mc`` / ``:rc``
    style variants, then strips suffixes such as ``_val``, ``_test``, ``_rc``, ``_mc``,
    ``_5shot``, ``_len_norm``, ``-validation`` from the end, repeatedly:
    ``hellaswag_val_rc_5shot_len_norm`` → ``hellaswag``; ``arc_challenge:mc::olmes`` →
    ``arc_challenge``; ``c4_en-validation`` → ``c4_en``.
    """
    name = str(task).strip().lower().rsplit("/", 1)[-1]
    name = name.split("::", 1)[0].split(":", 1)[0]
    while True:
        stripped = _TASK_SUFFIX_RE.sub("", name)
        if stripped == name or not stripped:
            return name
        name = stripped


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path, "taxonomy file")


def load_taxonomy(path: str | Path | None = None, extra: dict[str, Any] | None = None) -> Taxonomy:
    """The default taxonomy, with the YAML at ``path`` and the mapping ``extra`` merged over it.

    A user file only needs the entries it adds or changes, e.g.::

        categories: {safety: "refusals and toxicity"}
        benchmarks:
          my_qa: {category: knowledge, chance: 0.25}
    """
    data = _read_yaml(DEFAULT_TAXONOMY_PATH)
    source = str(DEFAULT_TAXONOMY_PATH)
    if path is not None:
        data = deep_merge(data, _read_yaml(Path(path)))
        source = str(path)
    if extra:
        data = deep_merge(data, extra)
    return Taxonomy.from_dict(data, source)


def normalize_score(value: Any, chance: Any) -> Any:
    """Chance-normalised score ``(s − chance) / (1 − chance)`` (works on scalars and arrays).

    0 = chance level, 1 = perfect; negative = below chance. A missing chance is treated as 0.
    """
    ch = 0.0 if chance is None else chance
    if isinstance(ch, pd.Series):
        ch = ch.fillna(0.0)
    return (value - ch) / (1.0 - ch)


def _provenance_chance(prov: Any) -> float | None:
    if not isinstance(prov, str) or not prov:
        return None
    try:
        data = json.loads(prov)
    except ValueError:
        return None
    ch = data.get("chance") if isinstance(data, dict) else None
    return float(ch) if isinstance(ch, (int, float)) else None


def annotate(df: pd.DataFrame, taxonomy: Taxonomy | None = None) -> pd.DataFrame:
    """Add ``benchmark``, ``category``, ``chance`` and ``lower_is_better`` columns to the tidy table.

    Rows that already carry a capability (the toolkit's own ``kshot`` probe) keep it, mapped onto
    a category; their chance level comes from the row's provenance JSON (``"chance"``) when
    present, else from the taxonomy. ``ppl``/``sc_ppl`` probe rows are language modelling.
    """
    tax = taxonomy or load_taxonomy()
    out = df.copy()
    infos = {}
    benchmark, category, chance = [], [], []
    caps = out["capability"] if "capability" in out else pd.Series([None] * len(out))
    provs = out["provenance"] if "provenance" in out else pd.Series([None] * len(out))
    for task, cap, probe, prov in zip(out["task"], caps, out["probe"], provs):
        cap = None if cap is None or (isinstance(cap, float) and math.isnan(cap)) else cap
        key = (task, cap, probe)
        if key not in infos:
            info = tax.lookup(str(task), cap)
            cat = info.category
            if probe in HELDOUT_PROBES:
                cat = LANGUAGE_MODELING
            elif probe == KSHOT and cap is not None:
                cat = tax.category_of_capability(cap)
            infos[key] = (info.benchmark, cat, info.chance)
        b, c, ch = infos[key]
        pch = _provenance_chance(prov)
        benchmark.append(b)
        category.append(c)
        chance.append(pch if pch is not None else ch)
    out["benchmark"] = benchmark
    out["category"] = category
    out["chance"] = pd.to_numeric(pd.Series(chance, index=out.index, dtype="float64"))
    out["lower_is_better"] = [tax.is_loss_metric(str(m)) for m in out["metric"]]
    return out
