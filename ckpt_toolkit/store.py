"""The results store: one long, tidy table of measurements in an embedded DuckDB file.

Every stage writes here and everything downstream reads only this table. Rows are upserted
idempotently on their key (checkpoint, probe, task, metric, shots, spec_hash) inside one
transaction per call, so a crash mid-write leaves the previous state. Connections are opened
per operation, so a notebook can read the file whenever no sweep is writing it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ._version import __version__
from .errors import StoreError
from .store_bulk import Prefer, arrow_table, merge_checkpoints, normalize_frame
from .store_files import (
    check_export_target,
    connect_duckdb,
    lock_timeout_s,
    make_parent,
    replay_pending,
    spill_when_locked,
)

DEFAULT_STORE = "ckpt_results.duckdb"

#: (name, DuckDB type) of the measurements table, in order.
MEASUREMENT_SCHEMA: tuple[tuple[str, str], ...] = (
    ("run", "VARCHAR"),
    ("checkpoint", "VARCHAR NOT NULL"),
    ("step", "BIGINT"),
    ("tokens", "BIGINT"),
    ("params", "BIGINT"),
    ("probe", "VARCHAR NOT NULL"),
    ("task", "VARCHAR NOT NULL"),
    ("capability", "VARCHAR"),
    ("metric", "VARCHAR NOT NULL"),
    ("value", "DOUBLE NOT NULL"),
    ("stderr", "DOUBLE"),
    ("n", "BIGINT"),
    ("shots", "INTEGER NOT NULL"),
    ("spec_hash", "VARCHAR NOT NULL"),
    ("fingerprint", "VARCHAR"),
    ("toolkit_version", "VARCHAR"),
    ("created_at", "TIMESTAMP"),
    ("provenance", "VARCHAR"),
)
COLUMNS: tuple[str, ...] = tuple(name for name, _ in MEASUREMENT_SCHEMA)
KEY: tuple[str, ...] = ("checkpoint", "probe", "task", "metric", "shots", "spec_hash")
REQUIRED: tuple[str, ...] = ("checkpoint", "probe", "metric", "value")

#: Per-checkpoint metadata (variant configuration), keyed by checkpoint name.
CHECKPOINT_SCHEMA: tuple[tuple[str, str], ...] = (
    ("checkpoint", "VARCHAR PRIMARY KEY"),
    ("run", "VARCHAR"),
    ("step", "BIGINT"),
    ("tokens", "BIGINT"),
    ("params", "BIGINT"),
    ("fingerprint", "VARCHAR"),
    ("path", "VARCHAR"),
    ("config", "VARCHAR"),
    ("updated_at", "TIMESTAMP"),
)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _clean(value: Any) -> Any:
    """NaN/NA → None, numpy scalars → Python scalars."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        return value.item()
    return value


def normalize_row(row: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
    """Validate one measurement row and fill defaults; raises :class:`StoreError` naming it."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise StoreError(f"row {index}: unknown column(s) {sorted(unknown)}; known: {COLUMNS}")
    raw_value = row.get("value")
    if isinstance(raw_value, float) and not math.isfinite(raw_value):
        raise StoreError(
            f"row {index} ({row.get('checkpoint')} / {row.get('probe')} / {row.get('task')} / "
            f"{row.get('metric')}): value is {raw_value} (not finite); refusing to store it"
        )
    out = {c: _clean(row.get(c)) for c in COLUMNS}
    for col in REQUIRED:
        if out[col] is None or out[col] == "":
            raise StoreError(f"row {index}: required column '{col}' is missing")
    what = f"row {index} ({out['checkpoint']} / {out['probe']} / {out['task']} / {out['metric']})"
    try:
        out["value"] = float(out["value"])
    except (TypeError, ValueError):
        raise StoreError(f"{what}: value {row.get('value')!r} is not a number") from None
    if not math.isfinite(out["value"]):
        raise StoreError(f"{what}: value is {out['value']} (not finite); refusing to store it")
    if out["stderr"] is not None:
        out["stderr"] = float(out["stderr"])
        if not math.isfinite(out["stderr"]):
            out["stderr"] = None
    out["task"] = str(out["task"] or "")
    out["shots"] = int(out["shots"] or 0)
    out["spec_hash"] = str(out["spec_hash"] or "")
    for col in ("step", "tokens", "params", "n"):
        if out[col] is not None:
            out[col] = int(out[col])
    if isinstance(out["provenance"], (dict, list)):
        out["provenance"] = json.dumps(out["provenance"], sort_keys=True, default=str)
    out["toolkit_version"] = out["toolkit_version"] or __version__
    out["created_at"] = out["created_at"] or _now()
    return out


class ResultsStore:
    """A DuckDB file holding the ``measurements`` and ``checkpoints`` tables.

    ``lock_timeout``: seconds every call waits while another process holds the file (default
    ``$CKPT_STORE_LOCK_TIMEOUT`` or 600); a file that is not a DuckDB database fails at once.

    >>> store = ResultsStore("results.duckdb")
    >>> store.upsert([{"checkpoint": "run@step10", "probe": "ppl", "task": "wiki",
    ...                "metric": "ppl", "value": 12.3}])
    >>> df = store.to_pandas(probe="ppl")
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_STORE,
        *,
        read_only: bool = False,
        lock_timeout: float | None = None,
    ):
        self.path = Path(path)
        self.read_only = read_only
        #: seconds to wait for another process's lock before giving up (see lock_timeout_s)
        self.lock_timeout = lock_timeout_s() if lock_timeout is None else float(lock_timeout)
        if self.path.is_dir():
            raise StoreError(f"results store {self.path} is a folder, not a DuckDB file")
        if read_only and not self.path.exists():
            raise StoreError(f"results store not found: {self.path}")
        if read_only:
            with self._connect():  # a file that is not DuckDB fails here, naming it
                pass
        else:
            make_parent(self.path)
            with self._connect() as con:
                self._create(con)
            replay_pending(self)

    # -- connection -------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[Any]:
        """A connection to the file; waits (with a message on stderr) while another process
        holds DuckDB's lock, up to ``self.lock_timeout`` seconds, then raises
        :class:`StoreLockedError` naming the holder."""
        con = connect_duckdb(self.path, read_only=self.read_only, timeout=self.lock_timeout)
        try:
            yield con
        finally:
            con.close()

    @staticmethod
    def _create(con: Any) -> None:
        cols = ", ".join(f"{n} {t}" for n, t in MEASUREMENT_SCHEMA)
        con.execute(
            f"CREATE TABLE IF NOT EXISTS measurements ({cols}, PRIMARY KEY ({', '.join(KEY)}))"
        )
        cols = ", ".join(f"{n} {t}" for n, t in CHECKPOINT_SCHEMA)
        con.execute(f"CREATE TABLE IF NOT EXISTS checkpoints ({cols})")

    # -- writes -----------------------------------------------------------------------
    @spill_when_locked
    def upsert(
        self,
        rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
        checkpoints: Iterable[Mapping[str, Any]] = (),
    ) -> int:
        """Insert or replace rows (and optional checkpoint metadata) in one transaction.

        Returns the number of measurement rows written. Either every row lands or none does.
        While another process holds the file this waits (see ``lock_timeout``); if the lock
        never frees, the rows are kept in ``<store>.pending/`` and written at the next writable
        open, and :class:`~ckpt_toolkit.errors.StoreLockedError` says where they are.
        """
        if self.read_only:
            raise StoreError(f"results store {self.path} is open read-only")
        if isinstance(rows, pd.DataFrame):
            rows = rows.to_dict(orient="records")
        norm = [normalize_row(r, i) for i, r in enumerate(rows)]
        seen: dict[tuple, int] = {}
        for i, r in enumerate(norm):
            k = tuple(r[c] for c in KEY)
            if k in seen:
                raise StoreError(f"rows {seen[k]} and {i} share the key {dict(zip(KEY, k))}")
            seen[k] = i
        ck_rows = [self._checkpoint_row(c) for c in checkpoints]
        if not norm and not ck_rows:
            return 0
        frame = pd.DataFrame(norm, columns=list(COLUMNS))
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                if norm:
                    con.register("incoming", frame)
                    con.execute(
                        f"INSERT OR REPLACE INTO measurements ({', '.join(COLUMNS)}) "
                        f"SELECT {', '.join(COLUMNS)} FROM incoming"
                    )
                    con.unregister("incoming")
                names = [n for n, _ in CHECKPOINT_SCHEMA]
                # new values win, but a missing one never erases what the store knows
                merge_checkpoints(con, ck_rows, names, _now(), prefer="incoming")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return len(norm)

    def bulk_upsert(
        self,
        frame: pd.DataFrame,
        checkpoints: Iterable[Mapping[str, Any]] = (),
        *,
        prefer: Prefer = "existing",
    ) -> int:
        """Insert or replace every row of ``frame`` (store columns; missing ones are filled) and
        merge ``checkpoints`` metadata, in one transaction, with vectorised checks.

        For large imports: no per-row Python work. Idempotent (rows are keyed like
        :meth:`upsert`). ``prefer`` is the metadata rule of
        :func:`~ckpt_toolkit.store_bulk.merge_checkpoints`: the default suits imports (what the
        store already knows wins; the import fills gaps and adds its provenance).
        Returns the number of measurement rows written.
        """
        if self.read_only:
            raise StoreError(f"results store {self.path} is open read-only")
        now = _now()
        norm = normalize_frame(frame, COLUMNS, REQUIRED, KEY, now)
        del frame  # a caller that handed over its only reference frees it here
        ck_rows = list(checkpoints)
        n_rows = len(norm)
        if not n_rows and not ck_rows:
            return 0
        table = arrow_table(norm) if n_rows else None
        del norm
        names = [n for n, _ in CHECKPOINT_SCHEMA]
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                if table is not None:
                    con.register("bulk_incoming", table)
                    # no stored row of these checkpoints → no key can conflict: a plain INSERT
                    # skips the replace bookkeeping (the key starts with the checkpoint)
                    clash = con.execute(
                        "SELECT 1 FROM measurements WHERE checkpoint IN "
                        "(SELECT DISTINCT checkpoint FROM bulk_incoming) LIMIT 1"
                    ).fetchone()
                    verb = "INSERT OR REPLACE" if clash else "INSERT"
                    con.execute(
                        f"{verb} INTO measurements ({', '.join(COLUMNS)}) "
                        f"SELECT {', '.join(COLUMNS)} FROM bulk_incoming"
                    )
                    con.unregister("bulk_incoming")
                merge_checkpoints(con, ck_rows, names, now, prefer)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return n_rows

    @staticmethod
    def _checkpoint_row(c: Mapping[str, Any]) -> dict[str, Any]:
        if not c.get("checkpoint"):
            raise StoreError("checkpoint metadata needs a 'checkpoint' name")
        row = {n: _clean(c.get(n)) for n, _ in CHECKPOINT_SCHEMA}
        if isinstance(row["config"], (dict, list)):
            row["config"] = json.dumps(row["config"], sort_keys=True, default=str)
        row["updated_at"] = _now()
        return row

    def delete(self, **filters: Any) -> int:
        """Delete measurement rows matching equality filters (e.g. ``probe='sft'``)."""
        where, params = self._where(filters)
        with self._connect() as con:
            n = con.execute(f"SELECT count(*) FROM measurements{where}", params).fetchone()[0]
            con.execute(f"DELETE FROM measurements{where}", params)
        return int(n)

    # -- reads ------------------------------------------------------------------------
    @staticmethod
    def _where(filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for col, val in filters.items():
            if val is None:
                continue
            if col not in COLUMNS:
                raise StoreError(f"unknown column to filter on: {col!r}")
            if isinstance(val, (list, tuple, set)):
                vals = list(val)
                clauses.append(f"{col} IN ({', '.join('?' for _ in vals)})")
                params.extend(vals)
            else:
                clauses.append(f"{col} = ?")
                params.append(val)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def to_pandas(self, **filters: Any) -> pd.DataFrame:
        """The tidy measurements table (optionally filtered by column equality or membership)."""
        where, params = self._where(filters)
        with self._connect() as con:
            df = con.execute(
                f"SELECT * FROM measurements{where} ORDER BY run, tokens, step, checkpoint, "
                "probe, task, metric, shots",
                params,
            ).df()
        return df

    def checkpoints(self) -> pd.DataFrame:
        """Per-checkpoint metadata; ``config`` is decoded from JSON into dicts."""
        with self._connect() as con:
            df = con.execute("SELECT * FROM checkpoints ORDER BY run, tokens, step").df()
        df["config"] = [json.loads(c) if isinstance(c, str) and c else {} for c in df["config"]]
        return df

    def done(self) -> set[tuple[str, str]]:
        """(fingerprint, spec_hash) pairs already measured: a sweep skips these."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT DISTINCT fingerprint, spec_hash FROM measurements "
                "WHERE fingerprint IS NOT NULL"
            ).fetchall()
        return {(f, s) for f, s in rows}

    def has(self, fingerprint: str, spec_hash: str) -> bool:
        """Whether rows for this (checkpoint fingerprint, spec hash) are already stored."""
        with self._connect() as con:
            n = con.execute(
                "SELECT count(*) FROM measurements WHERE fingerprint = ? AND spec_hash = ?",
                [fingerprint, spec_hash],
            ).fetchone()[0]
        return n > 0

    def __len__(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT count(*) FROM measurements").fetchone()[0])

    # -- export -----------------------------------------------------------------------
    def export(self, out: str | Path, format: str | None = None) -> Path:
        """Write the tidy table to CSV or Parquet (format from ``format`` or the suffix).

        Refuses to write onto the store itself (also via a symlink) or any other DuckDB file;
        the file is written beside ``out`` and renamed, so a failed export leaves ``out`` as it
        was.
        """
        out = Path(out)
        fmt = (format or out.suffix.lstrip(".")).lower()
        if fmt not in ("csv", "parquet"):
            raise StoreError(f"export format must be csv or parquet, not {fmt!r} (file {out})")
        check_export_target(out, self.path)
        make_parent(out, "export file")
        df = self.to_pandas()
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            if fmt == "csv":
                df.to_csv(tmp, index=False)
            else:
                df.to_parquet(tmp, index=False)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        return out


def open_store(
    path: str | Path = DEFAULT_STORE, read_only: bool = False, lock_timeout: float | None = None
) -> ResultsStore:
    """Open (creating if needed) the results store at ``path``."""
    return ResultsStore(path, read_only=read_only, lock_timeout=lock_timeout)
