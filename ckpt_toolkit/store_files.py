"""The results store's file handling: opening the DuckDB file, waiting for another process's
lock, keeping rows that could not be written, and refusing exports that would overwrite a store.

DuckDB lets one process write a file at a time (readers in other processes conflict with it
too). A store call that finds the file locked waits, says so on stderr, and retries for up to
:func:`lock_timeout_s` seconds (default 600, ``CKPT_STORE_LOCK_TIMEOUT`` to change). If the lock
is still held then, the rows of that write are kept in a JSON file in ``<store>.pending/`` and
written the next time the store is opened for writing, so a finished checkpoint's measurements
are never lost.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StoreError, StoreLockedError

if TYPE_CHECKING:  # pragma: no cover
    from .store import ResultsStore

#: default seconds to wait for another process's lock on the store
DEFAULT_LOCK_TIMEOUT = 600.0
LOCK_TIMEOUT_ENV = "CKPT_STORE_LOCK_TIMEOUT"
#: bytes 8..12 of every DuckDB database file
DUCKDB_MAGIC = b"DUCK"
_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")
_REMIND_EVERY_S = 60.0


def lock_timeout_s() -> float:
    """Seconds a store call waits for a locked file: ``$CKPT_STORE_LOCK_TIMEOUT`` or 600."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise StoreError(f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not value >= 0:
        raise StoreError(f"{LOCK_TIMEOUT_ENV}={raw!r} must be >= 0 seconds")
    return value


def is_duckdb_file(path: str | Path) -> bool:
    """Whether ``path`` is a file that starts like a DuckDB database (its magic bytes)."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as fh:
        head = fh.read(12)
    return head[8:12] == DUCKDB_MAGIC


def make_parent(path: Path, what: str = "results store") -> None:
    """Create the folder of ``path``; a file in the way becomes a :class:`StoreError` naming
    it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in path.parents if p.is_file()), path.parent)
        raise StoreError(
            f"cannot create {what} {path}: {blocker} is a file, not a folder"
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot create {what} {path}: {exc.strerror}") from None


def lock_holder(message: str) -> str:
    """``PID 123 (/usr/bin/python3)`` from DuckDB's lock error, or a generic phrase."""
    m = _HOLDER.search(message)
    if not m:
        return "another process"
    return f"PID {m.group(2)} ({m.group(1)})"


def _is_lock_error(message: str) -> bool:
    return "Could not set lock" in message or "Conflicting lock" in message


def _not_duckdb(path: Path, message: str) -> StoreError:
    if path.is_dir():
        return StoreError(f"results store {path} is a folder, not a DuckDB file")
    if path.is_file() and not is_duckdb_file(path):
        size = path.stat().st_size
        what = "an empty file" if size == 0 else f"a {size}-byte file"
        return StoreError(
            f"results store {path} is not a DuckDB file ({what} without DuckDB's header); "
            "give --store a new path or an existing .duckdb store"
        )
    return StoreError(f"cannot open results store {path}: {message}")


def connect_duckdb(path: Path, *, read_only: bool, timeout: float) -> Any:
    """Open ``path`` with DuckDB, waiting up to ``timeout`` seconds for another process's lock.

    A file that is not a DuckDB database (text, random bytes, a folder) fails at once with
    :class:`StoreError`; a lock still held after ``timeout`` raises :class:`StoreLockedError`
    naming the holder's PID when DuckDB reports it.
    """
    import duckdb

    start = time.monotonic()
    announced = 0.0
    attempt = 0
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            message = str(exc)
            if not (isinstance(exc, duckdb.IOException) and _is_lock_error(message)):
                raise _not_duckdb(path, message) from None
            waited = time.monotonic() - start
            holder = lock_holder(message)
            if waited >= timeout:
                raise StoreLockedError(
                    f"results store {path} is locked by {holder}; gave up after {waited:.1f} s "
                    f"(set {LOCK_TIMEOUT_ENV} to wait longer, or close the other process)",
                    holder=holder,
                ) from None
            if not announced:
                print(
                    f"results store {path} is locked by {holder}; waiting up to {timeout:g} s "
                    f"for it to be released (set {LOCK_TIMEOUT_ENV} to change)",
                    file=sys.stderr,
                    flush=True,
                )
                announced = max(waited, 1e-9)
            elif waited - announced >= _REMIND_EVERY_S:
                print(
                    f"results store {path} still locked by {holder} after {waited:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                announced = waited
            attempt += 1
            time.sleep(min(0.05 * attempt, 0.5, max(timeout - waited, 0.01)))
            continue
        if announced:
            print(
                f"results store {path}: lock released after {time.monotonic() - start:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        return con


# -- rows kept when the lock never frees ------------------------------------------------------
def pending_dir(store_path: Path) -> Path:
    """Folder of writes kept while the store was locked: ``<store>.pending/``."""
    return store_path.with_name(store_path.name + ".pending")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy / pandas scalars
        return value.item()
    return str(value)


def _records(rows: Any) -> list[dict[str, Any]]:
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return rows.to_dict(orient="records")
    return [dict(r) for r in rows]


def keep_pending(store_path: Path, rows: Any, checkpoints: Iterable[Mapping[str, Any]]) -> Path:
    """Write one locked-out upsert's rows to ``<store>.pending/`` and return the file."""
    folder = pending_dir(store_path)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
    out = folder / f"{stamp}-{os.getpid()}.json"
    payload = {"rows": _records(rows), "checkpoints": [dict(c) for c in checkpoints]}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, default=_jsonable))
    os.replace(tmp, out)
    return out


def spill_when_locked(upsert: Callable[..., int]) -> Callable[..., int]:
    """Decorate ``ResultsStore.upsert``: when the lock never frees, keep the rows in
    ``<store>.pending/`` (written at the next writable open) and raise, naming the file."""

    @wraps(upsert)
    def wrapper(
        self: ResultsStore, rows: Any, checkpoints: Iterable[Mapping[str, Any]] = ()
    ) -> int:
        import pandas as pd

        if not isinstance(rows, pd.DataFrame):
            rows = list(rows)
        checkpoints = list(checkpoints)
        try:
            return upsert(self, rows, checkpoints)
        except StoreLockedError as exc:
            if getattr(self, "_replaying", False):
                raise
            kept = keep_pending(self.path, rows, checkpoints)
            raise StoreLockedError(
                f"{exc}. The {len(rows)} row(s) of this write were kept in {kept}; they are "
                "written the next time the store is opened for writing (e.g. by rerunning the "
                "command)",
                holder=exc.holder,
                kept=kept,
            ) from None

    return wrapper


def _revive(row: dict[str, Any]) -> dict[str, Any]:
    created = row.get("created_at")
    if isinstance(created, str) and created:
        row["created_at"] = datetime.fromisoformat(created)
    return row


def replay_pending(store: ResultsStore) -> int:
    """Write rows kept by earlier locked-out writes into ``store``; returns rows written.

    Each file is removed once its rows are in the store; one that cannot be read is left in
    place and reported on stderr, never silently dropped.
    """
    folder = pending_dir(store.path)
    if not folder.is_dir():
        return 0
    written = 0
    store._replaying = True
    try:
        for f in sorted(folder.glob("*.json")):
            try:
                payload = json.loads(f.read_text())
                rows = [_revive(r) for r in payload["rows"]]
                checkpoints = payload.get("checkpoints") or []
            except (OSError, ValueError, KeyError, TypeError) as exc:
                print(f"cannot replay kept rows {f}: {exc}; left in place", file=sys.stderr)
                continue
            written += store.upsert(rows, checkpoints=checkpoints)
            f.unlink()
            print(
                f"results store {store.path}: wrote {len(rows)} row(s) kept from a write that "
                f"found it locked ({f.name})",
                file=sys.stderr,
                flush=True,
            )
    finally:
        store._replaying = False
    if not any(folder.iterdir()):
        folder.rmdir()
    return written


# -- export -----------------------------------------------------------------------------------
def check_export_target(out: Path, store_path: Path) -> None:
    """Refuse to export onto the store itself (also through a symlink or hard link), its WAL
    file, any other DuckDB database, or a folder."""
    if out.is_dir():
        raise StoreError(f"export target {out} is a folder; give a file name (.csv or .parquet)")
    same = out.resolve() == store_path.resolve()
    if not same and out.exists() and store_path.exists():
        same = os.path.samefile(out, store_path)
    if same:
        raise StoreError(f"refusing to export onto the results store itself: {out} is {store_path}")
    if out.resolve() == store_path.resolve().with_name(store_path.resolve().name + ".wal"):
        raise StoreError(f"refusing to export onto the results store's WAL file {out}")
    if is_duckdb_file(out):
        raise StoreError(
            f"refusing to overwrite {out}: it is a DuckDB database, not an export; "
            "choose another --out"
        )
