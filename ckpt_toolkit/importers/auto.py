"""``import_results``: a file or a folder, in any supported format, detected from the content.

| content | format |
|---|---|
| JSON with ``results: {task: {metric: number}}`` | lm-eval (old and 0.4.x) |
| JSON with ``checkpoints: [...]`` / ``results: {task: {metric: [...]}}`` | columnar aggregate |
| CSV / TSV / Parquet with ``task, metric, value`` and ``run`` or ``checkpoint`` | tidy |
| any other CSV / TSV / Parquet, with a mapping (``--mapping``) | wide |

All rows of one call are written in one transaction (re-importing replaces them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from ..analysis.taxonomy import Taxonomy, load_taxonomy
from ..errors import ImportFormatError
from ..store import ResultsStore
from .batch import ImportBatch
from .columnar import is_columnar, parse_columnar
from .columns import TABLE_SUFFIXES, read_table
from .common import ImportReport
from .lm_eval import load_json, parse_lm_eval
from .tidy import INT_COLUMNS, TEXT_COLUMNS, is_tidy, parse_tidy
from .tokens import TokensPerStep, mapping_tokens_per_step, parse_tokens_per_step
from .wide import FileNotMatched, id_columns, load_mapping, parse_wide

Format = Literal["auto", "json", "table"]
RESULT_SUFFIXES = (".json", *TABLE_SUFFIXES)


def find_files(path: Path, fmt: Format, mapping: dict[str, Any] | None) -> list[Path]:
    """The files an import reads: ``path`` itself, or the result files below a folder
    (the mapping's ``files`` glob when it has one; hidden files are ignored)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ImportFormatError(f"results not found: {path}")
    if mapping is not None and mapping.get("files"):
        try:
            files = [p for p in path.glob(mapping["files"]) if p.is_file()]
        except (ValueError, NotImplementedError) as exc:  # "", "/abs", "**x" ...
            raise ImportFormatError(
                f"mapping {mapping['_path']}: files {mapping['files']!r} is not a glob relative "
                f"to {path}: {exc}"
            ) from None
    else:
        suffixes = {"json": (".json",), "table": TABLE_SUFFIXES}.get(fmt, RESULT_SUFFIXES)
        files = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes]
    files = sorted(p for p in files if not any(part.startswith(".") for part in p.parts[-1:]))
    if not files:
        what = mapping.get("files") if mapping and mapping.get("files") else "results"
        raise ImportFormatError(f"no {what} files found under {path}")
    return files


@dataclass
class _Import:
    """What every file of one import shares."""

    tax: Taxonomy
    report: ImportReport
    batch: ImportBatch
    run: str | None
    tps: TokensPerStep
    mapping: dict[str, Any] | None
    single: bool
    unmatched: set[str] = field(default_factory=set)


def _import_json(f: Path, ctx: _Import) -> None:
    """One JSON file: columnar aggregate or lm-eval (a folder's other JSON files are skipped)."""
    source = str(f.resolve())
    data = load_json(f)
    if is_columnar(data):
        rows, metas = parse_columnar(
            data, f, ctx.tax, ctx.report, run=ctx.run, tokens_per_step=ctx.tps, source=source
        )
        ctx.report.add_file(f, "columnar")
    elif ctx.single or (isinstance(data, dict) and "results" in data):
        rows, meta = parse_lm_eval(
            data,
            f,
            taxonomy=ctx.tax,
            run=ctx.run,
            tokens_per_step=ctx.tps,
            report=ctx.report,
            source=source,
        )
        metas = [meta]
        ctx.report.add_file(f, "lm-eval")
    else:
        ctx.report.skip(f, f.name, "JSON without 'results' (not a results file)")
        return
    ctx.batch.add_rows(rows, f)
    for meta in metas:
        ctx.batch.add_meta(meta)


def _import_table(f: Path, ctx: _Import) -> None:
    """One CSV/TSV/Parquet file: wide (with a mapping that has columns) or tidy."""
    m, source = ctx.mapping, str(f.resolve())
    text_cols = TEXT_COLUMNS + (id_columns(m, ("run", "checkpoint")) if m else ())
    int_cols = INT_COLUMNS + (id_columns(m, ("step", "tokens", "params")) if m else ())
    df = read_table(f, text_cols, int_cols)
    if m is not None and m.get("columns") is not None:
        try:
            frame, metas = parse_wide(
                df,
                f,
                m,
                ctx.tax,
                ctx.report,
                tokens_per_step=ctx.tps,
                run=ctx.run,
                unmatched=ctx.unmatched,
                source=source,
            )
        except FileNotMatched:
            if ctx.single:
                raise ImportFormatError(
                    f"{f}: the file name does not match the mapping's filename pattern "
                    f"{m['filename'].pattern!r}"
                ) from None
            ctx.report.skip(f, f.name, "file name does not match the mapping's filename")
            return
        ctx.report.add_file(f, "wide")
    elif is_tidy(df.columns):
        frame, metas = parse_tidy(
            df,
            f,
            ctx.tax,
            ctx.report,
            tokens_per_step=ctx.tps,
            default_shots=(m or {}).get("shots", 0) or 0,
            source=source,
        )
        if ctx.run is not None:
            ctx.report.warn(f"--run is ignored for the tidy table {f} (it has a run column)")
        ctx.report.add_file(f, "tidy")
    else:
        raise ImportFormatError(
            f"{f}: not a tidy table (needs columns task, metric, value and run or "
            f"checkpoint; it has {list(df.columns)[:12]}); a wide table needs --mapping"
        )
    del df
    ctx.batch.add_frame(frame, f)
    for meta in metas:
        ctx.batch.add_meta(meta)


def import_results(
    path: str | Path | Iterable[str | Path],
    store: ResultsStore | str | Path,
    *,
    mapping: str | Path | dict[str, Any] | None = None,
    run: str | None = None,
    tokens_per_step: TokensPerStep | str = None,
    taxonomy: Taxonomy | None = None,
    fmt: Format = "auto",
    progress: bool = True,
) -> ImportReport:
    """Import a results file, or every results file under a folder, into ``store``.

    ``mapping`` (YAML path or dict) describes wide tables; ``run`` overrides the run name;
    ``tokens_per_step`` is ``N``, ``{run: N}`` or the CLI text ``"run=N,..."``. ``fmt``
    restricts the input to JSON (``"json"``) or tables (``"table"``). Returns the report: rows
    written, runs, checkpoints, skipped items by reason, tasks in "other", warnings.
    """
    if isinstance(tokens_per_step, Mapping):
        tps = mapping_tokens_per_step(tokens_per_step, "tokens_per_step")
    else:
        tps = parse_tokens_per_step(tokens_per_step)
    m = load_mapping(mapping) if mapping is not None else None
    if isinstance(path, (str, Path)):
        files, single = find_files(Path(path), fmt, m), Path(path).is_file()
    else:
        files, single = [Path(p) for p in path], False
        if not files:
            raise ImportFormatError("no files to import")
    st = store if isinstance(store, ResultsStore) else ResultsStore(store)
    report = ImportReport()
    ctx = _Import(taxonomy or load_taxonomy(), report, ImportBatch(report), run, tps, m, single)
    for f in tqdm(files, desc="import", unit="file", disable=not progress or len(files) < 2):
        suffix = f.suffix.lower()
        if suffix == ".json" and fmt != "table":
            _import_json(f, ctx)
        elif suffix in TABLE_SUFFIXES and fmt != "json":
            _import_table(f, ctx)
        elif single:
            want = {"json": "lm-eval or columnar JSON", "table": "a table (CSV, TSV, Parquet)"}
            raise ImportFormatError(
                f"{f}: unknown file type {f.suffix!r}; expected "
                f"{want.get(fmt, ', '.join(RESULT_SUFFIXES))}"
            )
        else:
            report.skip(f, f.name, "not a results file (suffix)")
    if m is not None:
        for col in sorted(ctx.unmatched):
            report.skip(m["_path"], f"column {col}", "no column or rule of the mapping matches it")
    ctx.batch.write(st)
    return report
