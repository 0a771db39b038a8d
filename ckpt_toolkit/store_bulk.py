"""Bulk writes into the results store, and the checkpoint-metadata merge rule.

:meth:`ResultsStore.bulk_upsert <ckpt_toolkit.store.ResultsStore.bulk_upsert>` writes a whole
DataFrame of measurement rows in one transaction with the vectorised checks of
:func:`normalize_frame` (no per-row Python work), keyed like ``upsert``: re-writing the same rows
replaces them. This module holds its pure helpers (it imports nothing from the store).

:func:`merge_checkpoints` is the metadata rule: a write never erases what the store already knows
about a checkpoint. A missing (None) value never overwrites a stored one; with
``prefer="existing"`` (imports) stored values win and the write only fills gaps; with
``prefer="incoming"`` (probes, fine-tuning) the new values win. ``config`` mappings are merged
key by key, and their ``imports`` lists (one provenance entry per import) are unioned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from ._version import __version__
from .errors import StoreError

Prefer = Literal["existing", "incoming"]
_INT_COLS = ("step", "tokens", "params", "n")
_MAX_INT = 2**63 - 1


def _decode_config(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str) and value:
        try:
            out = json.loads(value)
        except ValueError:
            return {"config": value}
        return out if isinstance(out, dict) else {"config": out}
    return {}


def merge_config(old: Any, new: Any, prefer: Prefer) -> dict[str, Any]:
    """Merge two variant configurations (dicts or JSON text): keys of both are kept; on a
    conflict ``prefer`` decides; ``imports`` lists are unioned (no duplicates)."""
    a, b = _decode_config(old), _decode_config(new)
    imports = [i for i in a.pop("imports", []) or []]
    for item in b.pop("imports", []) or []:
        if item not in imports:
            imports.append(item)
    b = {k: v for k, v in b.items() if v is not None}
    out = {**b, **a} if prefer == "existing" else {**a, **b}
    if imports:
        out["imports"] = imports
    return out


def merge_checkpoint_row(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], prefer: Prefer
) -> dict[str, Any]:
    """One checkpoint's metadata after a write (see the module docstring for the rule)."""
    if old is None:
        out = dict(new)
        out["config"] = merge_config(None, new.get("config"), prefer)
        return out
    out = {}
    for key in set(old) | set(new):
        o, n = old.get(key), new.get(key)
        o = None if o is not None and not isinstance(o, (str, dict)) and pd.isna(o) else o
        if key == "config":
            out[key] = merge_config(o, n, prefer)
        elif n is None:
            out[key] = o
        elif o is None:
            out[key] = n
        else:
            out[key] = o if prefer == "existing" else n
    return out


def merge_checkpoints(
    con: Any, rows: Iterable[Mapping[str, Any]], names: list[str], now: Any, prefer: Prefer
) -> int:
    """Write checkpoint metadata ``rows`` over what ``con``'s ``checkpoints`` table holds,
    following the merge rule; call inside the caller's transaction. Returns rows written."""
    incoming: dict[str, dict[str, Any]] = {}
    for r in rows:
        if not r.get("checkpoint"):
            raise StoreError("checkpoint metadata needs a 'checkpoint' name")
        prev = incoming.get(str(r["checkpoint"]))
        incoming[str(r["checkpoint"])] = merge_checkpoint_row(prev, dict(r), "incoming")
    if not incoming:
        return 0
    keys = pd.DataFrame({"checkpoint": list(incoming)})
    con.register("ck_keys", keys)
    try:
        existing = con.execute(
            "SELECT c.* FROM checkpoints c JOIN ck_keys k ON c.checkpoint = k.checkpoint"
        ).df()
    finally:
        con.unregister("ck_keys")
    old = {r["checkpoint"]: r for r in existing.to_dict(orient="records")}
    out = []
    for name, new in incoming.items():
        merged = merge_checkpoint_row(old.get(name), new, prefer)
        row = {n: merged.get(n) for n in names}
        row["config"] = json.dumps(row["config"] or {}, sort_keys=True, default=str)
        row["updated_at"] = now
        for col in ("step", "tokens", "params"):
            v = row.get(col)
            row[col] = None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v)
        out.append(row)
    frame = pd.DataFrame(out, columns=names)
    for col in ("step", "tokens", "params"):
        frame[col] = frame[col].astype("Int64")
    con.register("ck_incoming", frame)
    try:
        con.execute(
            f"INSERT OR REPLACE INTO checkpoints ({', '.join(names)}) "
            f"SELECT {', '.join(names)} FROM ck_incoming"
        )
    finally:
        con.unregister("ck_incoming")
    return len(out)


def _int_column(frame: pd.DataFrame, col: str) -> pd.Series:
    s = frame[col]
    if s.dtype == object:
        s = pd.to_numeric(s, errors="coerce")
    if s.dtype.kind == "f":
        bad = s.notna() & ((s != np.floor(s)) | (s.abs() > _MAX_INT))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise StoreError(f"row {i}: {col} {float(s.iloc[i])} is not a whole number in range")
    return s.astype("Int64")


def _text(s: pd.Series) -> pd.Series:
    """Text with missing values as "" — categories and string dtypes stay as they are (no
    per-row Python strings are made)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        if s.isna().any():
            if "" not in s.cat.categories:
                s = s.cat.add_categories([""])
            s = s.fillna("")
        return s
    if s.dtype == object:
        return s.fillna("").astype(str)
    return s.fillna("")


def compact_text_columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Turn repetitive text ``columns`` (provenance, task, metric, ...) into categories, in
    place: Arrow then carries each distinct string once (a dictionary) instead of once per
    row. Returns ``frame``."""
    for c in columns:
        if c in frame.columns and not isinstance(frame[c].dtype, pd.CategoricalDtype):
            if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c].dtype):
                frame[c] = frame[c].astype("category")
    return frame


def normalize_frame(
    frame: pd.DataFrame,
    columns: tuple[str, ...],
    required: tuple[str, ...],
    key: tuple[str, ...],
    now: Any,
) -> pd.DataFrame:
    """Vectorised :func:`~ckpt_toolkit.store.normalize_row` for a whole frame (a new frame
    with every store column, in order); raises :class:`StoreError` naming the first bad row."""
    unknown = set(frame.columns) - set(columns)
    if unknown:
        raise StoreError(f"unknown column(s) {sorted(unknown)}; known: {columns}")
    out = pd.DataFrame(index=frame.index)
    n = len(frame)
    for c in columns:
        out[c] = frame[c] if c in frame.columns else pd.Series([None] * n, index=frame.index)
    for col in required:
        miss = out[col].isna() | out[col].isin([""])
        if miss.any():
            i = int(np.flatnonzero(miss.to_numpy())[0])
            raise StoreError(f"row {i}: required column '{col}' is missing")
    value = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    bad = ~np.isfinite(value.to_numpy())
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise StoreError(
            f"row {i} ({out['checkpoint'].iloc[i]} / {out['task'].iloc[i]} / "
            f"{out['metric'].iloc[i]}): value {frame['value'].iloc[i]!r} is not a finite number"
        )
    out["value"] = value
    se = pd.to_numeric(out["stderr"], errors="coerce").astype("float64")
    out["stderr"] = se.where(np.isfinite(se.to_numpy()))
    out["task"] = _text(out["task"])
    out["shots"] = pd.to_numeric(out["shots"].fillna(0)).astype("int64")
    out["spec_hash"] = _text(out["spec_hash"])
    for col in _INT_COLS:
        out[col] = _int_column(out, col)
    version = out["toolkit_version"]
    if version.isna().all():  # one shared category: no per-row string reaches Arrow
        codes = np.zeros(n, dtype=np.int8)
        version = pd.Series(pd.Categorical.from_codes(codes, [__version__]), index=out.index)
    out["toolkit_version"] = version.fillna(__version__)
    out["created_at"] = pd.to_datetime(out["created_at"].fillna(now))
    dup = out.duplicated(list(key), keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())[:2]
        k = {c: out[c].iloc[int(rows[0])] for c in key}
        raise StoreError(f"rows {int(rows[0])} and {int(rows[1])} share the key {k}")
    return out.reset_index(drop=True)


def arrow_table(norm: pd.DataFrame) -> pa.Table:
    """A normalised frame as an Arrow table: DuckDB's native scan format, faster and leaner
    than scanning pandas."""
    return pa.Table.from_pandas(norm, preserve_index=False)
