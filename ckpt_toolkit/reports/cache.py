"""Analysis tables computed once per store content, kept as Parquet beside the store.

A report notebook asks for an analysis through :func:`dynamics_tables` or
:func:`pairwise_tables`. The first call computes it and writes its tables to
``<store>.cache/<analysis>/<entry>/`` (one Parquet file per table, ``meta.json`` for the rest);
every later call with the same rows, parameters and toolkit code reads them back instead.

The entry's key hashes

* the rows the analysis reads: an aggregate hash computed inside DuckDB over every column of
  the ``measurements`` rows but ``created_at`` (per run, so an analysis restricted to some runs
  is not invalidated by rows of other runs), and the ``checkpoints`` table where the analysis
  reads it (pairwise: the variants' configuration);
* the analysis parameters, and the content of any file a parameter names (a taxonomy YAML);
* the toolkit version, a digest of the toolkit's own source files, and the DuckDB version.

A new or changed row changes the key, so the next call recomputes; an entry whose parameters
match but whose rows are older is deleted when the new one is written. Entries are written to
a temporary folder and renamed into place, so a reader never sees half an entry; an entry that
cannot be read (a truncated or corrupt file) is logged, deleted and recomputed, never an error.
A store folder that cannot be written only costs the reuse.

``$CKPT_ANALYSIS_CACHE``: ``on`` (default), ``off`` (neither read nor write), ``refresh``
(recompute and overwrite; ``ckpt report --force`` sets it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from .._version import __version__

log = logging.getLogger(__name__)

#: Environment variable: ``on`` (default), ``off`` or ``refresh``.
CACHE_ENV = "CKPT_ANALYSIS_CACHE"
CACHE_MODES = ("on", "off", "refresh")
#: Bumped when the layout of an entry changes.
FORMAT = 1
#: Measurement columns left out of the content hash (a re-import of equal values keeps the key).
_UNHASHED = {"created_at"}
_CHECKPOINT_UNHASHED = {"updated_at"}


# -- store content ---------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreDigest:
    """Content hashes of a results store: per run (``None`` for rows without a run) and of the
    ``checkpoints`` table. Computed by :func:`store_digest`."""

    runs: Mapping[str | None, str]
    checkpoints: str
    rows: int

    def of_runs(self, names: Sequence[str | None] | None = None) -> str:
        """One hash over the rows of ``names`` (default: every run)."""
        chosen = self.runs if names is None else {n: self.runs[n] for n in names if n in self.runs}
        items = sorted(((str(k) if k is not None else "\0"), v) for k, v in chosen.items())
        return _sha(json.dumps(items))

    @property
    def total(self) -> str:
        """One hash over every measurement row and the checkpoints table."""
        return _sha(self.of_runs() + self.checkpoints)


def _sha(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def _row_hash_sql(columns: Sequence[str], skip: set[str]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns if c not in skip)
    return f"hash({cols})"


def store_digest(store_path: str | Path) -> StoreDigest:
    """Hash the store's rows inside DuckDB (milliseconds for 100k rows): per run, the row count,
    the sum and the XOR of one 64-bit hash per row (order-independent; a changed value, a new
    or a deleted row changes them). Waits for a writer's lock like every store read."""
    from ..store import CHECKPOINT_SCHEMA, COLUMNS
    from ..store_files import connect_duckdb, lock_timeout_s

    con = connect_duckdb(Path(store_path), read_only=True, timeout=lock_timeout_s())
    try:
        h = _row_hash_sql(COLUMNS, _UNHASHED)
        per_run = con.execute(
            f"SELECT run, count(*), sum({h}::HUGEINT)::VARCHAR, bit_xor({h})::VARCHAR "
            "FROM measurements GROUP BY run"
        ).fetchall()
        ck_cols = [c for c, _ in CHECKPOINT_SCHEMA]
        hc = _row_hash_sql(ck_cols, _CHECKPOINT_UNHASHED)
        ck = con.execute(
            f"SELECT count(*), sum({hc}::HUGEINT)::VARCHAR, bit_xor({hc})::VARCHAR FROM checkpoints"
        ).fetchone()
    finally:
        con.close()
    runs = {run: _sha(f"{n}:{s}:{x}") for run, n, s, x in per_run}
    return StoreDigest(runs, _sha(":".join(map(str, ck))), sum(int(r[1]) for r in per_run))


#: The toolkit code the cached analysis tables depend on (package-relative files and folders):
#: the analyses, the store, what they import, and this module.
CODE_PARTS = (
    "__init__.py",
    "errors.py",
    "specs.py",
    "store.py",
    "store_bulk.py",
    "store_files.py",
    "probes/registry.py",
    "yamlfiles.py",
    "analysis",
    "reports/cache.py",
)
#: The code a rendered report depends on: the above and the report helpers (figures, tables).
REPORT_CODE_PARTS = (*CODE_PARTS, "reports")


@lru_cache(maxsize=4)
def code_digest(parts: tuple[str, ...] = CODE_PARTS) -> str:
    """A hash of the toolkit source in ``parts`` (``*.py``, ``*.yaml``, templates) and of the
    toolkit and DuckDB versions: an edited analysis never serves tables computed by the old
    code."""
    import duckdb

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(f"{__version__}|duckdb {duckdb.__version__}|{FORMAT}".encode())
    files: list[Path] = []
    for part in dict.fromkeys(parts):
        p = root / part
        files.extend(sorted(p.rglob("*")) if p.is_dir() else [p])
    for p in files:
        if p.is_file() and p.suffix in (".py", ".yaml", ".yml", ".j2", ".json", ".css"):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def file_digest(path: str | Path | None) -> str | None:
    """The content hash of a file a parameter names (``None`` for no file)."""
    if not path:
        return None
    p = Path(path)
    return _sha(p.read_bytes()) if p.is_file() else f"missing:{p}"


# -- entries ---------------------------------------------------------------------------------
def cache_mode() -> str:
    """``on``, ``off`` or ``refresh`` from ``$CKPT_ANALYSIS_CACHE`` (unknown values: ``on``,
    with a warning)."""
    mode = os.environ.get(CACHE_ENV, "on").strip().lower() or "on"
    if mode not in CACHE_MODES:
        log.warning("%s=%r is not one of %s; using 'on'", CACHE_ENV, mode, CACHE_MODES)
        return "on"
    return mode


def cache_dir(store_path: str | Path) -> Path:
    """The cache folder of a store: ``<store>.cache`` beside it."""
    p = Path(store_path).resolve()
    return p.with_name(p.name + ".cache")


@dataclass
class Cached:
    """Tables read from or written to the cache: ``frames`` by name, ``meta`` (JSON values
    the analysis returned besides its tables), ``hit`` (read back, not computed) and the
    entry folder (``None`` when nothing was written)."""

    frames: dict[str, pd.DataFrame]
    meta: dict[str, Any] = field(default_factory=dict)
    hit: bool = False
    entry: Path | None = None


#: Object columns of these kinds (``pandas.api.types.infer_dtype``) go to Parquet as they are;
#: any other (mixed values, dicts, lists) is stored as JSON text, which round-trips exactly.
_PLAIN_KINDS = {
    "empty", "string", "bytes", "boolean", "integer", "floating", "mixed-integer-float",
    "decimal", "datetime", "datetime64", "date", "timedelta", "timedelta64",
}  # fmt: skip


def _encode(df: pd.DataFrame) -> tuple[Any, list[str]]:
    """``df`` as an Arrow table, and the object columns stored as JSON text (see
    :data:`_PLAIN_KINDS`)."""
    import pyarrow as pa

    if not all(isinstance(c, str) for c in df.columns):
        raise TypeError(f"column names must be text, not {list(df.columns)[:5]}")
    json_cols = [
        c
        for c in df.columns
        if df[c].dtype == object
        and pd.api.types.infer_dtype(df[c], skipna=True) not in _PLAIN_KINDS
    ]
    if json_cols:
        df = df.copy()
        for c in json_cols:
            df[c] = [None if _isna(v) else json.dumps(v, default=_json_default) for v in df[c]]
    return pa.Table.from_pandas(df, preserve_index=True), json_cols


def _json_default(v: Any) -> Any:
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # lists, arrays
        return False


def _write_entry(final: Path, frames: Mapping[str, pd.DataFrame], meta: dict[str, Any]) -> bool:
    """Write an entry atomically (temporary folder, then rename); False if it could not be."""
    import pyarrow.parquet as pq

    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        tables: dict[str, dict[str, Any]] = {}
        for name, df in frames.items():
            table, json_cols = _encode(df)
            pq.write_table(table, tmp / f"{name}.parquet")
            tables[name] = {
                "file": f"{name}.parquet",
                "json_columns": json_cols,
                # read back as object, not as the reader's default string dtype
                "object_columns": [c for c in df.columns if df[c].dtype == object],
            }
        doc = {"format": FORMAT, "tables": tables, "meta": meta}
        (tmp / "meta.json").write_text(json.dumps(doc, default=str))
        try:
            os.rename(tmp, final)
        except OSError:  # another process wrote the same entry first: theirs is as good
            if not (final / "meta.json").is_file():
                raise
        return True
    except Exception as exc:  # noqa: BLE001 - the cache is an optimisation, never an error
        log.warning("analysis cache: could not write %s (%s); tables not kept", final, exc)
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_entry(entry: Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    doc = json.loads((entry / "meta.json").read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
    frames = {}
    for name, info in doc["tables"].items():
        df = pd.read_parquet(entry / info["file"])
        for c in info.get("object_columns", []):
            if df[c].dtype != object:
                df[c] = df[c].astype(object)
        for c in info.get("json_columns", []):
            df[c] = [json.loads(v) if isinstance(v, str) else None for v in df[c]]
        frames[name] = df
    return frames, doc.get("meta", {})


def cached(
    store_path: str | Path,
    analysis: str,
    params: Mapping[str, Any],
    compute: Callable[[], tuple[Mapping[str, pd.DataFrame], dict[str, Any]]],
    *,
    runs: Sequence[str | None] | None = None,
    uses_checkpoints: bool = False,
) -> Cached:
    """Tables of ``analysis`` on ``store_path`` with ``params``: read from the cache when an
    entry for the same rows exists, else ``compute()`` (→ ``(frames, meta)``) and write one.

    ``runs``: the only runs whose rows the analysis reads (default: all); ``uses_checkpoints``:
    whether it reads the ``checkpoints`` table too. ``params`` must be JSON-able.
    """
    mode = cache_mode()
    if mode == "off":
        frames, meta = compute()
        return Cached(dict(frames), meta)
    digest = store_digest(store_path)
    params_key = _sha(json.dumps({"analysis": analysis, "params": params}, sort_keys=True))
    rows_key = digest.of_runs(runs) + (digest.checkpoints if uses_checkpoints else "")
    content_key = _sha(rows_key + code_digest())
    folder = cache_dir(store_path) / analysis
    entry = folder / f"{params_key[:16]}-{content_key[:24]}"
    if mode == "on" and (entry / "meta.json").is_file():
        try:
            frames, meta = _read_entry(entry)
            return Cached(frames, meta, hit=True, entry=entry)
        except Exception as exc:  # noqa: BLE001 - unreadable entry: recompute it
            log.warning("analysis cache: entry %s unreadable (%s); recomputing", entry, exc)
    shutil.rmtree(entry, ignore_errors=True)
    frames, meta = compute()
    if store_digest(store_path) != digest:  # rows changed while computing: do not label
        return Cached(dict(frames), meta)  # these tables with the newer content
    if not _write_entry(entry, frames, meta):
        return Cached(dict(frames), meta)
    for old in folder.glob(f"{params_key[:16]}-*"):  # same parameters, older rows
        if old != entry:
            shutil.rmtree(old, ignore_errors=True)
    return Cached(dict(frames), meta, entry=entry)


# -- the analyses the report notebooks read --------------------------------------------------
def _load_rows(store_path: str | Path) -> pd.DataFrame:
    from ..store import ResultsStore

    return ResultsStore(store_path, read_only=True).to_pandas()


def _as_list(v: Any) -> list[Any] | None:
    if v is None or (isinstance(v, (list, tuple)) and not v):
        return None
    return [v] if isinstance(v, (str, int)) else list(v)


def dynamics_tables(
    store_path: str | Path,
    *,
    taxonomy: str | Path | None = None,
    x: str = "tokens",
    runs: str | Sequence[str] | None = None,
    shots: int | Sequence[int] | None = None,
    tasks: str | Sequence[str] | None = None,
    last_n: int = 5,
    target: str | None = None,
    x_tolerance: float = 0.0,
) -> dict[str, pd.DataFrame]:
    """:func:`~ckpt_toolkit.analysis.dynamics.run_dynamics` on the store's rows, computed once
    per store content (see the module doc); the arguments are ``run_dynamics``'s."""
    import fnmatch

    run_list, shot_list, task_list = _as_list(runs), _as_list(shots), _as_list(tasks)
    selected = None
    if run_list:
        names = store_digest(store_path).runs
        selected = [n for n in names if any(fnmatch.fnmatchcase(str(n), p) for p in run_list)]
    params = {
        "taxonomy": str(taxonomy) if taxonomy else None,
        "taxonomy_content": file_digest(taxonomy),
        "x": x,
        "runs": run_list,
        "shots": shot_list,
        "tasks": task_list,
        "last_n": last_n,
        "target": target,
        "x_tolerance": x_tolerance,
    }

    def compute() -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
        from ..analysis.dynamics import run_dynamics

        tables = run_dynamics(
            _load_rows(store_path), None, taxonomy=taxonomy or None, x=x, runs=run_list,
            shots=shot_list, tasks=task_list, last_n=last_n, target=target,
            x_tolerance=x_tolerance,
        )  # fmt: skip
        return tables, {}

    # a run glob that matches nothing is computed (and raises the analysis's own error)
    return cached(store_path, "dynamics", params, compute, runs=selected or None).frames


def pairwise_tables(
    store_path: str | Path,
    *,
    pool: str = "targets",
    targets: Sequence[str] | None = None,
    proxies: Sequence[str] | None = None,
    fallback_targets: Sequence[str] | None = None,
    **options: Any,
) -> tuple[Any, Any]:
    """:func:`~ckpt_toolkit.analysis.pairwise.evaluate_store` on the store's rows and
    checkpoints, computed once per store content; returns ``(PairwiseInputs,
    PairwiseResult)``. Warnings the analysis raised are recorded with the tables and raised
    again on every call, so a report shows them whether the tables were computed or read."""
    params = {
        "pool": pool,
        "targets": list(targets or []),
        "proxies": list(proxies or []),
        "fallback_targets": None if fallback_targets is None else list(fallback_targets),
        "options": {k: options[k] for k in sorted(options)},
    }

    def compute() -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
        from ..analysis.pairwise import evaluate_store
        from ..store import ResultsStore

        store = ResultsStore(store_path, read_only=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            inputs, res = evaluate_store(
                store.to_pandas(), store.checkpoints(), pool=pool, targets=targets,
                proxies=proxies, fallback_targets=fallback_targets, source=str(store_path),
                **options,
            )  # fmt: skip
        frames = {f"result.{k}": v for k, v in res.frames().items()}
        frames["result.table"] = res.table
        frames["inputs.table"] = inputs.table
        frames["inputs.signal"] = inputs.signal
        meta = {
            "summary": res.summary,
            "inputs": {
                "targets": list(inputs.targets),
                "proxies": list(inputs.proxies),
                "pool": inputs.pool,
                "stand_in": bool(inputs.stand_in),
                "notes": list(inputs.notes),
            },
            "warnings": [[w.category.__name__, str(w.message)] for w in caught],
        }
        return frames, meta

    got = cached(store_path, "pairwise", params, compute, uses_checkpoints=True)
    return _pairwise_objects(got)


def _pairwise_objects(got: Cached) -> tuple[Any, Any]:
    import builtins

    from ..analysis.pairwise.evaluate import OUTPUT_FILES, PairwiseResult
    from ..analysis.pairwise.inputs import PairwiseInputs

    f, meta = got.frames, got.meta
    result = PairwiseResult(
        **{k: f[f"result.{k}"] for k in OUTPUT_FILES},
        table=f["result.table"],
        summary=meta["summary"],
    )
    inputs = PairwiseInputs(table=f["inputs.table"], signal=f["inputs.signal"], **meta["inputs"])
    from ..analysis.pairwise import PairwiseWarning

    known = {"PairwiseWarning": PairwiseWarning}  # the analysis's own category, kept on reuse
    for category, message in meta.get("warnings", []):
        cls = known.get(category) or getattr(builtins, category, UserWarning)
        cls = cls if isinstance(cls, type) and issubclass(cls, Warning) else UserWarning
        warnings.warn(message, cls, stacklevel=3)
    return inputs, result
