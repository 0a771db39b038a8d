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
        files = [p for p in path.glob(mapping["files"]) if p.is_file()]
    else:
        suffixes = {"json": (".json",), "table": TABLE_SUFFIXES}.get(fmt, RESULT_SUFFIXES)
        files = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes]
    files = sorted(p for p in files if not any(part.startswith(".") for part in p.parts[-1:]))
    if not files:
        what = mapping.get("files") if mapping and mapping.get("files") else "results"
        raise ImportFormatError(f"no {what} files found under {path}")
    return files


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
    restricts a folder to JSON (``"json"``) or tables (``"table"``). Returns the report: rows
    written, runs, checkpoints, skipped items by reason, tasks in "other", warnings.
    """
    tax = taxonomy or load_taxonomy()
    if isinstance(tokens_per_step, Mapping):
        tps = mapping_tokens_per_step(tokens_per_step, "tokens_per_step")
    else:
        tps = parse_tokens_per_step(tokens_per_step)
    m = load_mapping(mapping) if mapping is not None else None
    if isinstance(path, (str, Path)):
        root = Path(path)
        files, single = find_files(root, fmt, m), root.is_file()
    else:
        files, single = [Path(p) for p in path], False
        if not files:
            raise ImportFormatError("no files to import")
    st = store if isinstance(store, ResultsStore) else ResultsStore(store)
    report = ImportReport()
    batch = ImportBatch(report)
    unmatched: set[str] = set()
    for f in tqdm(files, desc="import", unit="file", disable=not progress or len(files) < 2):
        source = str(f.resolve())
        if f.suffix.lower() == ".json":
            if fmt == "table":
                raise ImportFormatError(f"{f}: a JSON file, but a table (CSV/Parquet) was expected")
            data = load_json(f)
            if is_columnar(data):
                rows, metas = parse_columnar(
                    data, f, tax, report, run=run, tokens_per_step=tps, source=source
                )
                report.add_file(f, "columnar")
            elif single or (isinstance(data, dict) and "results" in data):
                rows, meta = parse_lm_eval(
                    data,
                    f,
                    taxonomy=tax,
                    run=run,
                    tokens_per_step=tps,
                    report=report,
                    source=source,
                )
                metas = [meta]
                report.add_file(f, "lm-eval")
            else:
                report.skip(f, f.name, "JSON without 'results' (not a results file)")
                continue
            batch.add_rows(rows, f)
        elif f.suffix.lower() in TABLE_SUFFIXES:
            if fmt == "json":
                raise ImportFormatError(f"{f}: a table, but lm-eval JSON was expected")
            text_cols = TEXT_COLUMNS + (id_columns(m, ("run", "checkpoint")) if m else ())
            int_cols = INT_COLUMNS + (id_columns(m, ("step", "tokens", "params")) if m else ())
            df = read_table(f, text_cols, int_cols)
            if m is not None and m.get("columns") is not None:
                try:
                    frame, metas = parse_wide(
                        df,
                        f,
                        m,
                        tax,
                        report,
                        tokens_per_step=tps,
                        run=run,
                        unmatched=unmatched,
                        source=source,
                    )
                except FileNotMatched:
                    if single:
                        raise ImportFormatError(
                            f"{f}: the file name does not match the mapping's filename pattern "
                            f"{m['filename'].pattern!r}"
                        ) from None
                    report.skip(f, f.name, "file name does not match the mapping's filename")
                    continue
                report.add_file(f, "wide")
            elif is_tidy(df.columns):
                frame, metas = parse_tidy(
                    df,
                    f,
                    tax,
                    report,
                    tokens_per_step=tps,
                    default_shots=(m or {}).get("shots", 0) or 0,
                    source=source,
                )
                if run is not None:
                    report.warn(f"--run is ignored for the tidy table {f} (it has a run column)")
                report.add_file(f, "tidy")
            else:
                raise ImportFormatError(
                    f"{f}: not a tidy table (needs columns task, metric, value and run or "
                    f"checkpoint; it has {list(df.columns)[:12]}); a wide table needs --mapping"
                )
            batch.add_frame(frame, f)
            del df, frame
        else:
            if single:
                raise ImportFormatError(
                    f"{f}: unknown file type {f.suffix!r}; expected one of {RESULT_SUFFIXES}"
                )
            report.skip(f, f.name, "not a results file (suffix)")
            continue
        for meta in metas:
            batch.add_meta(meta)
    if m is not None and unmatched:
        for col in sorted(unmatched):
            report.skip(m["_path"], f"column {col}", "no column or rule of the mapping matches it")
    batch.write(st)
    return report
