"""Reading tables (CSV, Parquet) and checking whole columns at once, with errors that name the
file, the row and the value — no per-row Python loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ImportFormatError
from .common import MAX_INT

TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".tsv")
_INT_RE = r"\s*[+-]?\d+\s*"


def row_label(path: Path, i: int) -> str:
    """How a 0-based data row is named in messages: data row ``i + 1`` and its line in a CSV
    (the header is line 1), else the 0-based row index."""
    if path.suffix.lower() in (".csv", ".tsv"):
        return f"{path}: row {i + 1} (line {i + 2})"
    return f"{path}: row {i}"


def read_table(
    path: Path, text_columns: tuple[str, ...] = (), int_columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """A CSV/TSV or Parquet file as a frame. In a CSV, ``text_columns`` are read as text, and an
    ``int_columns`` column that pandas reads as floats holding values >= 2^53 (where a float is
    not exact) is read again as text, so the checks see its cells as written. Errors name the
    file."""
    if not path.is_file():
        raise ImportFormatError(f"results file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        sep = "\t" if suffix == ".tsv" else ","
        with open(path, encoding="utf-8") as fh:
            header = pd.read_csv(fh, sep=sep, nrows=0).columns
        dtypes = {c: "string[pyarrow]" for c in header if c in text_columns}
        df = pd.read_csv(path, sep=sep, dtype=dtypes, encoding="utf-8", low_memory=False)
        inexact = [
            c
            for c in int_columns
            if c in df.columns and df[c].dtype.kind == "f" and bool((df[c].abs() >= 2.0**53).any())
        ]
        if inexact:
            again = pd.read_csv(path, sep=sep, usecols=inexact, dtype="string", encoding="utf-8")
            for c in inexact:
                df[c] = again[c]
        return df
    except UnicodeDecodeError as exc:
        raise ImportFormatError(
            f"{path} is not UTF-8 text (byte {exc.start}); save the table as UTF-8"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        kind = "Parquet" if suffix in (".parquet", ".pq") else "CSV"
        raise ImportFormatError(f"{path} is not a readable {kind} file: {exc}") from None
    except Exception as exc:  # pyarrow raises its own types for corrupt Parquet
        if type(exc).__module__.startswith("pyarrow"):
            raise ImportFormatError(f"{path} is not a readable Parquet file: {exc}") from None
        raise


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def int_column(
    s: pd.Series, name: str, path: Path, *, minimum: int = 0, offset: int = 0
) -> pd.Series:
    """``s`` as nullable whole numbers in ``[minimum, 2^63)``. Text, fractions (``1.7``),
    booleans and numbers out of range raise :class:`ImportFormatError` naming the file, the
    first bad row (``offset`` is added to the 0-based index) and the value; empty cells → NA."""
    kind = s.dtype.kind

    def fail(i: int, what: str) -> ImportFormatError:
        v = s.iloc[i]
        shown = repr(v) if isinstance(v, str) else str(v.item() if hasattr(v, "item") else v)
        return ImportFormatError(f"{row_label(path, i + offset)}: {name} {shown} {what}")

    if kind == "b":
        raise fail(0, "is not a whole number (a boolean column)")
    if kind in "iu":
        arr = s.to_numpy()
        bad = arr < minimum if kind == "i" else (arr > MAX_INT) | (arr < minimum)
        if bad.any():
            raise fail(_first(bad), f"is out of range ({minimum} .. 2^63 - 1)")
        return s.astype("Int64")
    if kind == "f":
        arr = s.to_numpy(dtype="float64", na_value=np.nan)
        present = ~np.isnan(arr)
        with np.errstate(invalid="ignore"):
            frac = present & (~np.isfinite(arr) | (arr != np.floor(arr)))
        if frac.any():
            raise fail(_first(frac), "is not a whole number")
        rng = present & ((arr < minimum) | (arr >= 2.0**63))
        if rng.any():
            raise fail(_first(rng), f"is out of range ({minimum} .. 2^63 - 1)")
        ints = pd.Series(np.where(present, arr, 0).astype("int64"), index=s.index)
        return ints.astype("Int64").mask(~present)
    # text (object / string): exact parsing, no float round trip for integers
    text = s.astype("string")
    stripped = text.str.strip()
    empty = stripped.isna() | (stripped == "")
    is_int = stripped.str.fullmatch(_INT_RE).fillna(False).to_numpy(dtype=bool)
    other = ~empty.to_numpy(dtype=bool) & ~is_int
    out = pd.Series(pd.NA, index=s.index, dtype="Int64")
    if other.any():
        num = pd.to_numeric(stripped[other], errors="coerce").to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(num) & (num == np.floor(num))
            ok = whole & (np.abs(num) < 2.0**53)
        if not ok.all():
            j = int(np.flatnonzero(~ok)[0])
            i = int(np.flatnonzero(other)[j])
            if whole[j] and abs(num[j]) >= 2.0**63:
                raise fail(i, f"is out of range ({minimum} .. 2^63 - 1)")
            if whole[j]:
                raise fail(i, "is too large to be exact in decimal/exponent form; write its digits")
            raise fail(i, "is not a whole number")
        out[other] = num.astype("int64")
    if is_int.any():
        digits = stripped[is_int].str.lstrip("+")
        big = (digits.str.lstrip("-").str.lstrip("0").str.len() > 18).to_numpy(dtype=bool)
        if big.any():
            vals = [int(v) for v in digits[big]]
            idx = np.flatnonzero(is_int)[np.flatnonzero(big)]
            for i, v in zip(idx, vals):
                if v > MAX_INT or v < minimum:
                    raise fail(int(i), f"is out of range ({minimum} .. 2^63 - 1)")
        out[is_int] = digits.astype("int64").to_numpy()
    arr = out.to_numpy(dtype="float64", na_value=np.nan)
    neg = ~np.isnan(arr) & (arr < minimum)
    if neg.any():
        raise fail(_first(neg), f"is out of range ({minimum} .. 2^63 - 1)")
    return out


def float_column(s: pd.Series, name: str, path: Path, *, offset: int = 0) -> pd.Series:
    """``s`` as floats; empty cells and ``N/A`` → NaN; other text raises
    :class:`ImportFormatError` naming the file, row and value."""
    if s.dtype.kind in "fiu":
        return s.astype("float64")
    if s.dtype.kind == "b":
        raise ImportFormatError(f"{row_label(path, offset)}: {name} is a boolean column")
    text = s.astype("string").str.strip()
    num = pd.to_numeric(text, errors="coerce").astype("float64")
    missing = text.isna() | text.str.lower().isin(["", "n/a", "na", "nan", "none", "null"])
    bad = (num.isna() & ~missing).to_numpy(dtype=bool)
    if bad.any():
        i = _first(bad)
        raise ImportFormatError(
            f"{row_label(path, i + offset)}: {name} {s.iloc[i]!r} is not a number"
        )
    return num
