"""What the pairwise analysis runs on: models, targets, proxies — chosen in one place.

* :func:`pairwise_inputs` — from the results store's tidy rows: the per-model table, the targets,
  the proxies and the ground truth's own signal. ``ckpt pairwise --store``, ``ckpt demo`` and
  the proxies notebook all call it, so they analyse the same models with the same columns.
* :func:`table_inputs` — the same for a user's per-model table (``ckpt pairwise --table``).
* :func:`prepare_table` — the cleaned, oriented table :func:`~.evaluate.evaluate_pairwise` reads
  (model names, NaN / outlier flags, ``invert``, combined proxies).

Defaults (store):

* **pool** ``targets`` — every checkpoint that has a value for at least one target (after
  fine-tuning the final checkpoints, the final checkpoints; with stand-in targets, every
  checkpoint that has them). ``final`` keeps each run's last checkpoint, ``all`` every one.
* **targets** — every ``sft:<task>``; a store without fine-tuning rows uses task accuracies
  as *stand-in* targets (:func:`stand_in_targets`) and says so (``stand_in``).
* **proxies** — the aggregates of :func:`~.model_table.summary_proxies` (stand-in: held-out
  perplexity and the *other* tasks' accuracies). A default proxy is kept only when it is
  measured on every model of the pool (a store mixing probe rows and imported rows measures
  different things on different checkpoints); what was left out is listed in ``notes``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...errors import ParameterError
from .core import flag_rows, minmax
from .direction import orientation_warnings
from .model_table import POOLS, model_table_from_store, summary_proxies, task_targets
from .signal import SIGNAL_COLUMNS, ground_truth_signal

#: columns that name a model, in the order they are looked for (``--model-col`` overrides)
MODEL_COLUMNS = ("model", "id", "name", "checkpoint")
#: columns of a per-model table that are metadata, never proxies by default
META_COLUMNS = ("model", "id", "name", "run", "checkpoint", "step", "tokens", "params", "family")
#: pools of :func:`pairwise_inputs` (``targets`` + :data:`.model_table.POOLS`)
INPUT_POOLS = ("targets",) + POOLS
#: stand-in target tasks of a store without fine-tuning rows (when present)
FALLBACK_TARGETS = ("arc_easy", "piqa", "sciq")

_TASK_ACC = ("ext_acc:", "kshot_acc:")
_SKIP_TASKS = ("hendrycksTest", "crows_pairs")  # sub-tasks of suites: too many, too noisy


class PairwiseWarning(UserWarning):
    """A suspicious value or setting in a pairwise analysis (the analysis still runs)."""


# -- choosing targets and proxies ----------------------------------------------------------
def _split_names(x: Sequence[str] | str | None) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        x = x.split(",")
    return list(dict.fromkeys(s.strip() for s in x if s and s.strip()))


def stand_in_targets(table: pd.DataFrame, preferred: Iterable[str] = (), k: int = 3) -> list[str]:
    """Task-accuracy columns (``ext_acc:<task>`` / ``kshot_acc:<task>``) standing in for
    fine-tuning targets: the ``preferred`` tasks that exist, else the ``k`` tasks whose accuracy
    varies most across the models (a flat task has no order to predict)."""
    cols = [
        c
        for c in table.columns
        if c.startswith(_TASK_ACC) and not c.split(":", 1)[1].startswith(_SKIP_TASKS)
    ]
    chosen = [c for t in preferred for c in cols if c.split(":", 1)[1] == t]
    if chosen:
        return chosen
    spread = table[cols].std(numeric_only=True).sort_values(ascending=False)
    return [c for c in spread.index if spread[c] > 0][:k]


def stand_in_proxies(table: pd.DataFrame, targets: Sequence[str], k: int = 8) -> list[str]:
    """Proxies for stand-in targets that do not contain them: held-out perplexity / bits per
    byte aggregates and the accuracies of the *other* tasks (never an average that includes a
    target task)."""
    tasks = {t.split(":", 1)[1] for t in targets}
    agg = [c for c in ("inv_ppl", "neg_bpb", "inv_sc_ppl") if c in table.columns]
    other = [
        c
        for c in table.columns
        if c.startswith(_TASK_ACC + ("ext_inv_ppl:",))
        and c.split(":", 1)[1] not in tasks
        and not c.split(":", 1)[1].startswith(_SKIP_TASKS)
        and table[c].std() > 0
    ]
    return (agg + other)[: max(k, len(agg))]


@dataclass
class PairwiseInputs:
    """Models, targets and proxies of one pairwise analysis.

    Attributes:
        table: one row per model (columns of :func:`~.model_table.model_table_from_store`).
        targets: target columns (``sft:<task>``, or stand-ins).
        proxies: proxy columns, every one higher = better.
        pool: which checkpoints are the models (:data:`INPUT_POOLS`).
        stand_in: True when task accuracies stand in for missing fine-tuning targets.
        signal: :func:`~.signal.ground_truth_signal` over the pool (empty for stand-ins).
        notes: what was chosen or left out, and why (for the CLI and the report).
    """

    table: pd.DataFrame
    targets: list[str]
    proxies: list[str]
    pool: str
    stand_in: bool = False
    signal: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SIGNAL_COLUMNS))
    notes: list[str] = field(default_factory=list)


def _runs_of(table: pd.DataFrame, mask: pd.Series) -> str:
    col = "run" if "run" in table.columns else "model"
    names = sorted(map(str, table.loc[mask, col].dropna().unique()))
    return ", ".join(names[:4]) + (" ..." if len(names) > 4 else "") if names else "none"


def pairwise_inputs(
    rows: pd.DataFrame,
    checkpoints: pd.DataFrame | None = None,
    *,
    pool: str = "targets",
    targets: Sequence[str] | str | None = None,
    proxies: Sequence[str] | str | None = None,
    fallback_targets: Sequence[str] = FALLBACK_TARGETS,
    shots: int | None = None,
    source: str = "the store",
) -> PairwiseInputs:
    """The inputs of a pairwise analysis from the store's tidy rows (defaults: module docstring).

    Args:
        rows: ``ResultsStore.to_pandas()``; ``checkpoints``: ``ResultsStore.checkpoints()``
            (adds ``config:<key>`` columns).
        pool: ``targets`` (default), ``final`` or ``all``.
        targets / proxies: column names (comma-separated string or list); default as above.
        fallback_targets: preferred stand-in tasks when the store has no ``sft`` rows.
        shots: k-shot count of the ``kshot_*`` proxies (default: the largest per task).
        source: how error messages name the rows (e.g. the store's path).
    """
    if pool not in INPUT_POOLS:
        raise ParameterError(f"pool must be one of {INPUT_POOLS}, not {pool!r}")
    table = model_table_from_store(
        rows, checkpoints, pool="all" if pool == "targets" else pool, shots=shots
    )
    notes: list[str] = []
    tg = _split_names(targets)
    stand_in = False
    if tg:
        missing = [t for t in tg if t not in table.columns]
        if missing:
            raise ParameterError(
                f"target(s) {missing} not in {source}; targets there: {task_targets(table)}"
            )
    else:
        tg = task_targets(table)
        if not tg:
            tg = stand_in_targets(table, fallback_targets)
            stand_in = True
            notes.append(f"no fine-tuning (sft) rows in {source}: {tg} stand in as targets")
    if not tg:
        raise ParameterError(
            f"no targets: {source} has no fine-tuning (sft) rows and no task-level accuracy "
            "to stand in for them; run `ckpt finetune` first"
        )
    if pool == "targets":
        has_target = table[tg].notna().any(axis=1)
        table = table[has_target].reset_index(drop=True)
    px = _split_names(proxies)
    if px:
        missing = [p for p in px if p not in table.columns]
        if missing:
            raise ParameterError(f"proxy column(s) {missing} not in the table built from {source}")
    else:
        px = stand_in_proxies(table, tg) if stand_in else summary_proxies(table)
        measured = [p for p in px if table[p].notna().all()]
        left_out = [p for p in px if p not in measured]
        if left_out and measured:
            notes.append(f"proxies left out because some models of the pool lack them: {left_out}")
        if not measured:
            with_proxy = table[px].notna().any(axis=1) if px else table["model"].isna()
            raise ParameterError(
                f"no proxy is measured on every model that has the targets {tg} in {source}: "
                f"the targets come from runs {_runs_of(table, ~with_proxy)} and the proxies "
                f"{px or '(none)'} from runs {_runs_of(table, with_proxy)}. Probe the "
                "checkpoints that have targets (or import their results), or name --proxies"
            )
        px = measured
    signal = (
        ground_truth_signal(rows, table["checkpoint"])
        if not stand_in
        else pd.DataFrame(columns=SIGNAL_COLUMNS)
    )
    if len(signal):
        signal = signal[signal["target"].isin(tg)].reset_index(drop=True)
    return PairwiseInputs(table, tg, px, pool, stand_in, signal, notes)


def table_inputs(
    table: pd.DataFrame,
    targets: Sequence[str] | str | None = None,
    proxies: Sequence[str] | str | None = None,
    *,
    source: str = "the table",
) -> PairwiseInputs:
    """Inputs from a user's per-model table: targets default to its ``sft:<task>`` columns;
    proxies stay None (``evaluate_pairwise`` then takes every numeric non-metadata column)."""
    tg = _split_names(targets) or task_targets(table)
    if not tg:
        raise ParameterError(f"--targets is required: {source} has no sft:<task> column")
    px = _split_names(proxies)
    return PairwiseInputs(table, tg, px, pool="table")


# -- model names ---------------------------------------------------------------------------
def detect_model_column(table: pd.DataFrame, model_col: str | None = None) -> str | None:
    """The column naming the models: ``model_col`` if given, else the first of
    :data:`MODEL_COLUMNS` present; None when the table has none."""
    if model_col is not None:
        if model_col not in table.columns:
            raise ParameterError(
                f"model column {model_col!r} not in the table; columns: {list(table.columns)}"
            )
        return model_col
    return next((c for c in MODEL_COLUMNS if c in table.columns), None)


def model_ids(table: pd.DataFrame, model_col: str | None) -> pd.Series:
    """Model names as strings from ``model_col`` (already detected); ``row<i>`` when None."""
    if model_col is None:
        ids = pd.Series([f"row{i}" for i in range(len(table))])
    else:
        ids = table[model_col].astype(str).reset_index(drop=True)
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].unique()[:3].tolist()
        raise ParameterError(f"model names in column {model_col!r} must be unique; repeated: {dup}")
    return ids


# -- the cleaned, oriented table -----------------------------------------------------------
def parse_combine(spec: str) -> tuple[str, dict[str, float]]:
    """Parse ``"name=+a,-b,c"`` into ``("name", {"a": 1.0, "b": -1.0, "c": 1.0})``.

    A combined proxy is the signed sum of the min-max normalised members; a member may carry a
    weight, ``"name=+0.5*a,-b"``.
    """
    if "=" not in spec:
        raise ParameterError(f"combined proxy {spec!r} must look like 'name=+a,-b'")
    name, _, members = spec.partition("=")
    name = name.strip()
    out: dict[str, float] = {}
    for raw in members.split(","):
        m = raw.strip()
        if not m:
            continue
        sign = -1.0 if m.startswith("-") else 1.0
        m = m.lstrip("+-").strip()
        weight = 1.0
        if "*" in m:
            w, _, m = m.partition("*")
            try:
                weight = float(w)
            except ValueError:
                raise ParameterError(f"combined proxy {spec!r}: bad weight {w!r}") from None
        out[m.strip()] = sign * weight
    if not name or not out:
        raise ParameterError(f"combined proxy {spec!r} needs a name and at least one member")
    return name, out


def default_ppl_proxy(proxies: Sequence[str]) -> str | None:
    """The perplexity proxy errors are compared against: ``inv_ppl`` if present, else the first
    proxy whose name starts with ``ppl``, else the first starting with ``inv_ppl``."""
    if "inv_ppl" in proxies:
        return "inv_ppl"
    for prefix in ("ppl", "inv_ppl"):
        for p in proxies:
            if p.startswith(prefix):
                return p
    return None


def _numeric(table: pd.DataFrame, col: str, what: str) -> np.ndarray:
    if col not in table.columns:
        raise ParameterError(
            f"{what} column {col!r} not in the table; columns: {list(table.columns)}"
        )
    x = pd.to_numeric(table[col], errors="coerce")
    bad = table[col].notna() & x.isna()
    if bad.any():
        raise ParameterError(
            f"{what} column {col!r} holds non-numeric values, e.g. {table[col][bad].iloc[0]!r}"
        )
    return x.to_numpy(dtype=float)


@dataclass
class PreparedTable:
    """The table the analysis steps read.

    Attributes:
        table: ``model`` + oriented proxies + combined proxies + targets, usable models only.
        proxies: base proxy columns; ``combined``: combined-proxy columns; ``targets``.
        flags: flagged cells (:func:`~.core.flag_rows` columns).
        messages: warnings raised as :class:`PairwiseWarning` by the caller.
        model_col: the column the model names came from (None: row numbers).
    """

    table: pd.DataFrame
    proxies: list[str]
    combined: list[str]
    targets: list[str]
    flags: pd.DataFrame
    messages: list[str]
    model_col: str | None


def _default_proxies(table: pd.DataFrame, targets: Sequence[str], model_col: str | None):
    skip = set(targets) | set(META_COLUMNS) | {model_col}
    return [
        c
        for c in table.columns
        if c not in skip
        and pd.api.types.is_numeric_dtype(table[c])
        and not pd.api.types.is_bool_dtype(table[c])
        and not str(c).startswith(("sft:", "config:"))
    ]


def prepare_table(
    table: pd.DataFrame,
    targets: Sequence[str] | str,
    proxies: Sequence[str] | str | None = None,
    *,
    invert: Iterable[str] = (),
    combine: Mapping[str, Mapping[str, float]] | Iterable[str] | None = None,
    model_col: str | None = None,
    z_max: float = 5.0,
    drop_flagged: bool = False,
    auto_combine: bool = True,
) -> PreparedTable:
    """Name the models, select and orient the proxies, flag bad values, add combined proxies.

    The model-name column (:func:`detect_model_column`) is never a proxy; naming it in
    ``proxies`` is an error. Fewer than 2 usable models is an error naming why.
    """
    targets = _split_names(targets)
    if not targets:
        raise ParameterError("no target column given")
    model_col = detect_model_column(table, model_col)
    ids = model_ids(table, model_col)
    table = table.reset_index(drop=True)
    msgs: list[str] = []
    if model_col is None:
        msgs.append(
            "no model-name column (model, id, name or checkpoint): models are named row0, row1, "
            "... by row number; pass --model-col (API model_col=) to name them"
        )
    proxies = (
        _default_proxies(table, targets, model_col)
        if proxies is None or (not isinstance(proxies, str) and len(proxies) == 0)
        else _split_names(proxies)
    )
    if model_col is not None and model_col in proxies:
        raise ParameterError(
            f"column {model_col!r} names the models and cannot be a proxy; "
            "pass --model-col to name them by another column"
        )
    if not proxies:
        raise ParameterError("no proxy column given or found in the table")
    overlap = set(proxies) & set(targets)
    if overlap:
        raise ParameterError(f"column(s) {sorted(overlap)} given both as proxy and as target")
    invert = list(dict.fromkeys(invert or ()))
    unknown = [p for p in invert if p not in proxies]
    if unknown:
        raise ParameterError(f"invert names {unknown}, which are not proxies {proxies}")
    msgs += orientation_warnings(proxies, invert)

    out = pd.DataFrame({"model": ids})
    for p in proxies:
        out[p] = _numeric(table, p, "proxy")
    for t in targets:
        out[t] = _numeric(table, t, "target")
    # flags report the values as given (before orientation); robust z is sign-symmetric
    cols = proxies + targets
    flags = flag_rows(out, cols, out["model"], z_max=z_max)
    nan_flags = flags[flags["action"] == "excluded"]
    # outliers are judged within the models that stay (not against rows excluded for NaN)
    ok = out[~out["model"].isin(set(nan_flags["model"]))]
    out_flags = flag_rows(ok, cols, ok["model"], z_max=z_max) if len(ok) else flags.iloc[:0]
    flags = pd.concat([nan_flags, out_flags[out_flags["action"] == "kept"]], ignore_index=True)
    for p in invert:
        out[p] = -out[p]
    excluded = sorted(set(flags.loc[flags["action"] == "excluded", "model"]))
    why = _exclusion_message(out, flags, targets, excluded) if excluded else ""
    if why:
        msgs.append(why)
    outliers = flags[flags["action"] == "kept"]
    if len(outliers):
        if drop_flagged:
            flags.loc[flags["action"] == "kept", "action"] = "excluded"
            excluded = sorted(set(excluded) | set(outliers["model"]))
        msgs.append(
            f"{len(outliers)} suspicious value(s) far outside the pool's range "
            f"({'dropped' if drop_flagged else 'kept'}): "
            + "; ".join(f"{r.model}: {r.reason}" for r in outliers.head(5).itertuples())
        )
    out = out[~out["model"].isin(excluded)].reset_index(drop=True)
    if len(out) < 2:
        raise ParameterError(
            f"need at least 2 usable models for pairs; {len(out)} of {len(ids)} left"
            + (f": {why}" if why else "")
        )
    combos = _combined(out, proxies, combine, auto_combine)
    return PreparedTable(out, proxies, combos, targets, flags, msgs, model_col)


def _exclusion_message(out, flags, targets, excluded) -> str:
    bad = flags[flags["action"] == "excluded"]
    no_target = out.loc[out[targets].isna().all(axis=1), "model"]
    no_target = sorted(set(no_target) & set(excluded))
    other = [m for m in excluded if m not in set(no_target)]
    reasons = bad.groupby("model")["reason"].first()
    parts = []
    if no_target:
        parts.append(
            f"{len(no_target)} without any target value (not fine-tuned?): "
            + ", ".join(no_target[:5])
            + (" ..." if len(no_target) > 5 else "")
        )
    if other:
        parts.append(
            f"{len(other)} with missing or non-finite values: "
            + "; ".join(f"{m} ({reasons[m]})" for m in other[:5])
            + (" ..." if len(other) > 5 else "")
        )
    return f"{len(excluded)} model(s) excluded (see flags.csv): " + "; ".join(parts)


def _combined(out, proxies, combine, auto_combine) -> list[str]:
    """Add combined proxies to ``out`` in place: signed sums of min-max normalised (oriented)
    proxies over the pool; returns their names."""
    combos: dict[str, dict[str, float]] = {}
    if combine:
        items = combine.items() if isinstance(combine, Mapping) else map(parse_combine, combine)
        for name, members in items:
            combos[name] = dict(members)
    if auto_combine and len(proxies) >= 2 and "combo:all" not in combos:
        combos["combo:all"] = {p: 1.0 for p in proxies}
    for name, members in combos.items():
        if name in out.columns:
            raise ParameterError(f"combined proxy name {name!r} clashes with a column")
        missing = [m for m in members if m not in proxies]
        if missing:
            raise ParameterError(
                f"combined proxy {name!r} uses {missing}, which are not proxies {proxies}"
            )
        out[name] = sum(w * minmax(out[m].to_numpy()) for m, w in members.items())
    return list(combos)


def warn_all(messages: Iterable[str]) -> None:
    """Raise each message as a :class:`PairwiseWarning` (shown by the CLI as ``warning: ...``)."""
    for m in messages:
        warnings.warn(m, PairwiseWarning, stacklevel=3)
