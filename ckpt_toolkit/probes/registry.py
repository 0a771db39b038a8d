"""The probe registry: probe names, their parameters, the data they need, and metric directions.

Torch-free on purpose: the analyses (taxonomy, dynamics, pairwise) and the reports read probe
names and metric directions from here without importing a model library.

* **Probe names** — :data:`PPL`, :data:`SC_PPL`, :data:`KSHOT` (the probes of this package),
  :data:`SFT` (fine-tuning ground truth, ``ckpt finetune``) and :data:`IMPORTED_PROBES` (rows the
  importers write). Code that filters store rows by probe uses these constants, never literals.
* **Metric directions** — :data:`METRICS` is the one declared place saying which way each metric
  points (``higher_is_better``) and whether it is a loss-like series; it covers the probes'
  metrics and the usual imported ones (lm-eval, OLMo/OLMES, BigScience). :func:`metric_info`
  also understands lm-eval's ``metric,filter`` names and a few documented name patterns.
* **Probes** — each probe module (``ppl.py``, ``sc_ppl.py``, ``kshot.py``, …) declares one
  :class:`Probe` with :func:`register_probe`: its name, validated :class:`Param` s, the data it
  needs (held-out text or tasks), the metrics it writes (names in :data:`METRICS`) and the
  function that computes its rows. :func:`get_probe` / :func:`all_probes` import every module of
  this package once, so adding a probe is one new module (plus its test) — see docs/probes.md.
* **Sweep options** — :func:`validate_sweep_options` checks the options every probe shares
  (dtype, device, batch size, item limit, shots) before any checkpoint is loaded.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ParameterError

# -- probe names -----------------------------------------------------------------------------
PPL = "ppl"
SC_PPL = "sc_ppl"
KSHOT = "kshot"
#: fine-tuning ground truth rows (``ckpt finetune``): metric ``score`` per task, ``acc`` per dataset
SFT = "sft"
#: probe names of imported rows: lm-eval JSON, and CSV/other imports
LM_EVAL = "lm-eval"
IMPORT = "import"
IMPORTED_PROBES = (LM_EVAL, IMPORT)
#: the built-in probes, in the order they are listed and run by default
PROBE_ORDER = (PPL, SC_PPL, KSHOT)
#: probes whose rows measure held-out text (language modelling), not a capability task
HELDOUT_PROBES = (PPL, SC_PPL)
#: the capability label of held-out-text probes
LANGUAGE_MODELING = "language_modeling"


# -- metrics and their direction -------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """A metric name and which way it points.

    ``kind``: ``score`` (accuracy-like, higher is better), ``logprob`` (a log-likelihood, higher
    is better), ``loss`` (a mean NLL / cross-entropy / bits per byte: lower is better, a loss
    series), ``perplexity`` (exp of a loss: lower is better, a loss series; a proxy enters as
    1/x), ``error`` and ``bias`` (lower is better, not a loss series).
    """

    name: str
    higher_is_better: bool
    kind: str
    description: str

    @property
    def is_loss(self) -> bool:
        """Whether the metric is a loss-like series (loss, cross-entropy, bpb, perplexity)."""
        return self.kind in ("loss", "perplexity")

    @property
    def orientation(self) -> str:
        """How to make it higher-is-better: ``identity``, ``inverse`` (1/x) or ``negate``."""
        if self.higher_is_better:
            return "identity"
        return "inverse" if self.kind == "perplexity" else "negate"


def _m(name: str, higher: bool, kind: str, description: str) -> Metric:
    return Metric(name, higher, kind, description)


#: the one table of metric directions (names are matched case-insensitively)
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        # the toolkit's probes
        _m("loss", False, "loss", "mean token NLL of held-out text (nats)"),
        _m("ppl", False, "perplexity", "perplexity, exp(loss)"),
        _m("bpb", False, "loss", "bits per UTF-8 byte (held-out text, or the gold answer)"),
        _m("sc_loss", False, "loss", "span-corruption NLL of the target tokens (nats)"),
        _m("sc_ppl", False, "perplexity", "span-corruption perplexity, exp(sc_loss)"),
        _m("acc", True, "score", "accuracy"),
        _m("acc_norm", True, "score", "accuracy, log-likelihood per character of the choice"),
        _m("gold_logprob", True, "logprob", "mean log-likelihood of the gold answer (nats)"),
        _m("exact_match", True, "score", "greedy output equals the gold answer"),
        _m("score", True, "score", "fine-tuning test score (mean over the task's datasets)"),
        # imported: lm-eval, OLMo/OLMES, BigScience, trackers
        _m("acc_mutual_info", True, "score", "accuracy by mutual information (lm-eval)"),
        _m("em", True, "score", "exact match"),
        _m("f1", True, "score", "F1"),
        _m("mcc", True, "score", "Matthews correlation"),
        _m("mc1", True, "score", "TruthfulQA single-true accuracy"),
        _m("mc2", True, "score", "TruthfulQA multi-true score"),
        _m("pass@1", True, "score", "code: share of problems solved at one sample"),
        _m("pass@10", True, "score", "code: share of problems solved within ten samples"),
        _m("bleu", True, "score", "BLEU"),
        _m("rouge1", True, "score", "ROUGE-1"),
        _m("rouge2", True, "score", "ROUGE-2"),
        _m("rougeL", True, "score", "ROUGE-L"),
        _m("perplexity", False, "perplexity", "perplexity"),
        _m("word_perplexity", False, "perplexity", "perplexity per word (lm-eval)"),
        _m("byte_perplexity", False, "perplexity", "perplexity per byte (lm-eval)"),
        _m("bits_per_byte", False, "loss", "bits per byte (lm-eval)"),
        _m("ce_loss", False, "loss", "cross-entropy loss (nats)"),
        _m("CrossEntropyLoss", False, "loss", "cross-entropy loss (OLMo in-loop evaluation)"),
        _m("cross_entropy", False, "loss", "cross-entropy loss"),
        _m("xent", False, "loss", "cross-entropy loss"),
        _m("nll", False, "loss", "negative log-likelihood"),
        _m("brier_score", False, "error", "Brier score of the choice probabilities"),
        # crows_pairs: the log-likelihood gap between the stereotyped and the anti-stereotyped
        # sentence, and the share preferring the stereotype — smaller means less bias (lm-eval
        # declares both higher_is_better: false)
        _m("likelihood_difference", False, "bias", "crows_pairs: |Δ log-likelihood|"),
        _m("likelihood_diff", False, "bias", "crows_pairs: |Δ log-likelihood| (lm-eval 0.4)"),
        _m("pct_stereotype", False, "bias", "crows_pairs: share preferring the stereotype"),
    )
}
_BY_LOWER = {k.lower(): v for k, v in METRICS.items()}

#: name patterns for metrics not in the table, first match wins (matched on the lower-cased
#: name without an lm-eval ``,filter`` suffix). Already-oriented proxies (``inv_``/``neg_``
#: prefixes, e.g. ``inv_ppl``) are higher-is-better.
METRIC_PATTERNS: tuple[tuple[str, Metric], ...] = (
    (r"(^|[_:/])(inv|neg)_", _m("oriented", True, "score", "already oriented (1/x or -x)")),
    (r"perplexity|(^|[_/\-.])ppl($|[_/\-.])", _m("perplexity", False, "perplexity", "perplexity")),
    (r"bits_per_byte|(^|[_/\-.])bpb($|[_/\-.])", _m("bpb", False, "loss", "bits per byte")),
    (
        r"crossentropy|cross_entropy|(^|[_/\-.])(ce_)?loss($|[_/\-.])|(^|[_/\-.])(nll|xent)($|[_/\-.])",
        _m("loss", False, "loss", "a loss"),
    ),
    (
        r"^(acc|accuracy|exact_match|em|f1|pass@\d+)($|[_/\-.])",
        _m("score", True, "score", "an accuracy-like score"),
    ),
)


def _base_name(metric: str) -> str:
    return str(metric).split(",")[0].strip()


def metric_info(metric: str) -> Metric | None:
    """What the registry knows about ``metric`` (``acc,none`` → ``acc``), or ``None``.

    Looks the name up in :data:`METRICS`, then tries :data:`METRIC_PATTERNS`.
    """
    base = _base_name(metric)
    known = METRICS.get(base) or _BY_LOWER.get(base.lower())
    if known is not None:
        return known
    low = base.lower()
    for pattern, info in METRIC_PATTERNS:
        if re.search(pattern, low):
            return info
    return None


def higher_is_better(metric: str, default: bool | None = None) -> bool | None:
    """Direction of ``metric``; ``default`` when the registry does not know the name."""
    info = metric_info(metric)
    return default if info is None else info.higher_is_better


def is_loss_metric(metric: str) -> bool:
    """Whether ``metric`` is a loss-like series (loss, cross-entropy, bits per byte, perplexity)."""
    info = metric_info(metric)
    return bool(info and info.is_loss)


def lower_is_better_metrics() -> list[str]:
    """Names in :data:`METRICS` that are lower-is-better."""
    return [name for name, m in METRICS.items() if not m.higher_is_better]


# -- parameters ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One probe parameter: type, default, allowed range or choices, and its CLI option."""

    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False  # None allowed (meaning given in ``help``, e.g. "the model's")
    option: str | None = None  # the ``ckpt probe`` option that sets it

    def label(self, probe: str) -> str:
        """How errors name this parameter: its CLI option, else ``probe.name``."""
        return self.option or f"{probe}.{self.name}"

    def check(self, value: Any, probe: str) -> Any:
        """``value`` converted to the parameter's type; :class:`ParameterError` if invalid."""
        where = self.label(probe)
        if value is None:
            if self.nullable:
                return None
            raise ParameterError(f"{where} needs a value ({self.help})")
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                elif isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
                    value = int(value)
                else:
                    raise ParameterError(f"{where} must be an integer, got {value!r}")
        elif self.type is float:
            if isinstance(value, bool):
                raise ParameterError(f"{where} must be a number, got {value!r}")
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ParameterError(f"{where} must be a number, got {value!r}") from None
            if not math.isfinite(value):
                raise ParameterError(f"{where} must be finite, got {value!r}")
        elif self.type is str:
            if not isinstance(value, str):
                raise ParameterError(f"{where} must be a string, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ParameterError(
                f"{where} must be one of {', '.join(map(str, self.choices))}; got {value!r}"
            )
        lo, hi = self.minimum, self.maximum
        if lo is not None and (value <= lo if self.exclusive_minimum else value < lo):
            raise ParameterError(
                f"{where} must be {'>' if self.exclusive_minimum else '>='} {lo:g}, got {value!r}"
            )
        if hi is not None and (value >= hi if self.exclusive_maximum else value > hi):
            raise ParameterError(
                f"{where} must be {'<' if self.exclusive_maximum else '<='} {hi:g}, got {value!r}"
            )
        return value

    def describe(self) -> str:
        """One line for ``ckpt probe --list``: type, default, range."""
        default = "none" if self.default is None else repr(self.default)
        parts = [f"{self.type.__name__}", f"default {default}"]
        if self.choices is not None:
            parts.append("one of " + "/".join(map(str, self.choices)))
        if self.minimum is not None:
            parts.append(f"{'>' if self.exclusive_minimum else '>='} {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"{'<' if self.exclusive_maximum else '<='} {self.maximum:g}")
        if self.option:
            parts.append(f"option {self.option}")
        return ", ".join(parts)


# -- probes ----------------------------------------------------------------------------------
#: what a probe reads: held-out text per domain, or task items per task
NEEDS = ("heldout", "tasks")


@dataclass(frozen=True)
class Probe:
    """A probe's declaration.

    ``run(model, tokenizer, spec, inputs, batch_size) -> rows`` computes the rows of one spec,
    where ``inputs`` is the list of held-out texts of ``spec.task`` (``needs="heldout"``) or its
    task items (``needs="tasks"``); each row has ``metric``, ``value``, ``stderr``, ``n`` and
    ``provenance``. ``capability`` is a fixed label or a function of the inputs. ``check``
    validates relations between parameters (e.g. stride ≤ window) on the merged parameters.
    ``uses_shots``: one spec per number of shots (else only 0 shots). ``version``: raise it when
    the probe's numbers change for the same parameters, so stores recompute its rows (it enters
    the spec hash when above 1).
    """

    name: str
    description: str
    needs: str
    params: tuple[Param, ...]
    metrics: tuple[str, ...]
    run: Callable[..., list[dict[str, Any]]]
    capability: str | Callable[[Any], str] = LANGUAGE_MODELING
    uses_shots: bool = False
    check: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)
    version: int = 1

    def __post_init__(self) -> None:
        if self.needs not in NEEDS:
            raise ParameterError(f"probe {self.name!r}: needs must be one of {NEEDS}")
        unknown = [m for m in self.metrics if metric_info(m) is None]
        if unknown:
            raise ParameterError(
                f"probe {self.name!r} declares metric(s) {unknown} without a direction; "
                "add them to ckpt_toolkit.probes.registry.METRICS"
            )

    @property
    def defaults(self) -> dict[str, Any]:
        """Default value of every parameter."""
        return {p.name: p.default for p in self.params}

    def param(self, name: str) -> Param:
        """The declared parameter ``name``."""
        for p in self.params:
            if p.name == name:
                return p
        raise ParameterError(
            f"unknown parameter {name!r} for probe {self.name!r}; "
            f"known: {', '.join(p.name for p in self.params) or 'none'}"
        )

    def validate(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults with ``overrides`` merged over them, every value checked and converted."""
        overrides = dict(overrides or {})
        for name in overrides:
            self.param(name)  # unknown names raise
        merged = {p.name: p.check(overrides.get(p.name, p.default), self.name) for p in self.params}
        if self.check is not None:
            self.check(merged)
        return merged

    def capability_of(self, inputs: Any) -> str:
        """The capability label of this probe's rows for ``inputs``."""
        return self.capability(inputs) if callable(self.capability) else self.capability


_PROBES: dict[str, Probe] = {}
_discovered = False


def register_probe(probe: Probe) -> Probe:
    """Add ``probe`` to the registry (a module's ``PROBE = register_probe(Probe(...))``)."""
    old = _PROBES.get(probe.name)
    if old is not None and old.run.__module__ != probe.run.__module__:
        raise ParameterError(
            f"probe {probe.name!r} is declared twice ({old.run.__module__} "
            f"and {probe.run.__module__})"
        )
    _PROBES[probe.name] = probe
    return probe


def _discover() -> None:
    """Import every public module of this package once, so each registers its probe."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module(__package__)
    for mod in pkgutil.iter_modules(package.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__package__}.{mod.name}")
    _discovered = True


def all_probes() -> dict[str, Probe]:
    """Every registered probe by name, in declaration order of :data:`PROBE_ORDER` then name."""
    _discover()
    order = {n: i for i, n in enumerate(PROBE_ORDER)}
    return dict(sorted(_PROBES.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def probe_names() -> list[str]:
    """Names of every registered probe."""
    return list(all_probes())


def get_probe(name: str) -> Probe:
    """The probe called ``name``; :class:`ParameterError` listing the known ones otherwise."""
    probes = all_probes()
    if name not in probes:
        raise ParameterError(f"unknown probe {name!r}; choose from {', '.join(probes)}")
    return probes[name]


def validate_probe_params(
    probes: Sequence[str], overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Validated parameters of each probe in ``probes`` (defaults + ``overrides``).

    ``overrides`` may only name probes among ``probes`` or registered ones; every value is
    checked (types, ranges, relations) and errors name the CLI option when there is one.
    """
    overrides = dict(overrides or {})
    for name in overrides:
        get_probe(name)
    return {name: get_probe(name).validate(overrides.get(name)) for name in probes}


# -- options every probe shares ----------------------------------------------------------------
DEVICE_PATTERN = r"cpu|cuda|cuda:\d+|mps|auto"


def validate_device(device: str, option: str = "--device") -> str:
    """``device`` if it is cpu, cuda, cuda:N, mps or auto; :class:`ParameterError` otherwise."""
    if not isinstance(device, str) or not re.fullmatch(DEVICE_PATTERN, device.strip()):
        raise ParameterError(f"{option} must be cpu, cuda, cuda:N, mps or auto; got {device!r}")
    return device.strip()


def validate_dtype(dtype: str, option: str = "--dtype") -> str:
    """``dtype`` if the checkpoint loader knows it; :class:`ParameterError` otherwise."""
    from ..checkpoints.loading import DTYPES

    if dtype not in DTYPES:
        raise ParameterError(f"{option} must be one of {', '.join(DTYPES)}; got {dtype!r}")
    return dtype


def validate_sweep_options(
    dtype: str = "float32",
    device: str = "cpu",
    batch_size: int = 64,
    limit: int | None = None,
) -> None:
    """Check the options every probe shares; errors name the ``ckpt probe`` option."""
    validate_dtype(dtype)
    validate_device(device)
    Param(
        "batch_size", int, 64, "contexts per forward pass", minimum=1, option="--batch-size"
    ).check(batch_size, "")
    Param("limit", int, None, "all items", minimum=1, nullable=True, option="--limit").check(
        limit, ""
    )


def params_from_options(
    probes: Sequence[str], options: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Probe parameter overrides from CLI options (``{"--window": 64}``) for the chosen probes.

    Each option goes to every chosen probe with a parameter declaring it; ``None`` means "not
    given". An option given that no chosen probe takes raises :class:`ParameterError` (it would
    otherwise be silently ignored).
    """
    out: dict[str, dict[str, Any]] = {}
    for option, value in options.items():
        if value is None:
            continue
        takers = [
            (name, p.name)
            for name in probes
            if name in all_probes()
            for p in get_probe(name).params
            if p.option == option
        ]
        if not takers:
            users = [
                n for n, pr in all_probes().items() if any(p.option == option for p in pr.params)
            ]
            raise ParameterError(
                f"{option} applies to probe(s) {', '.join(users) or 'none'}, "
                f"none of which is in --probes {','.join(probes)}"
            )
        for name, param in takers:
            out.setdefault(name, {})[param] = value
    return out


def _direction(metric: str) -> str:
    info = metric_info(metric)
    if info is None:
        return "direction unknown"
    text = "higher is better" if info.higher_is_better else "lower is better"
    return f"{text}, loss series" if info.is_loss else text


def format_probe_list() -> str:
    """The text ``ckpt probe --list`` prints: each probe, its parameters and its metrics."""
    from ..checkpoints.loading import DTYPES

    needs = {"heldout": "held-out text (--heldout)", "tasks": "task items (--tasks)"}
    lines: list[str] = []
    for probe in all_probes().values():
        lines.append(f"{probe.name}: {probe.description}")
        shots = ", one spec per --shots value" if probe.uses_shots else ""
        lines.append(f"  reads: {needs[probe.needs]}{shots}")
        lines.append(
            "  parameters (--param PROBE.NAME=VALUE; API: probe_params):"
            if probe.params
            else "  parameters: none"
        )
        for p in probe.params:
            lines.append(f"    {p.name}: {p.help} [{p.describe()}]")
        lines.append("  metrics:")
        for m in probe.metrics:
            info = metric_info(m)
            desc = f" — {info.description}" if info is not None else ""
            lines.append(f"    {m} ({_direction(m)}){desc}")
    lines.append("options of every probe:")
    lines.append(f"  --dtype: one of {', '.join(DTYPES)} (default float32)")
    lines.append("  --device: cpu, cuda, cuda:N, mps or auto (default cpu)")
    lines.append("  --batch-size: integer >= 1 (default 16); --limit: integer >= 1 (default all)")
    lines.append("  --shots: comma-separated integers >= 0 (default 0)")
    return "\n".join(lines)


def parse_param_options(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["sc_ppl.seed=3", "kshot.separator=\\n"]`` → ``{"sc_ppl": {"seed": "3"}, ...}``.

    Values stay strings (each :class:`Param` converts and checks its own); ``\\n`` and ``\\t``
    in a value become a newline and a tab. Errors name the ``--param`` value.
    """
    out: dict[str, dict[str, Any]] = {}
    for raw in values:
        key, sep, value = str(raw).partition("=")
        probe, dot, name = key.strip().partition(".")
        if not sep or not dot or not probe or not name:
            raise ParameterError(f"--param {raw!r}: expected PROBE.NAME=VALUE, e.g. sc_ppl.seed=3")
        get_probe(probe).param(name)  # unknown probe / parameter raise, naming the known ones
        out.setdefault(probe, {})[name] = value.replace("\\n", "\n").replace("\\t", "\t")
    return out


def probe_parameters(
    probes: Sequence[str] | str, options: Mapping[str, Any], param_values: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """The ``probe_params`` of a ``ckpt probe`` call: CLI options (``--window``) for the chosen
    probes (:func:`params_from_options`), then ``--param PROBE.NAME=VALUE`` values over them."""
    names = (
        [p.strip() for p in probes.split(",") if p.strip()]
        if isinstance(probes, str)
        else list(probes)
    )
    unknown = [n for n in names if n not in all_probes()]
    if unknown or not names:
        raise ParameterError(
            f"--probes: unknown probe(s) {unknown or names}; choose from {', '.join(all_probes())}"
        )
    out = params_from_options(names, options)
    for probe, values in parse_param_options(param_values).items():
        out.setdefault(probe, {}).update(values)
    return out
