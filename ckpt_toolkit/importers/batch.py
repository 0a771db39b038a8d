"""Collecting the rows of one import (any number of files and formats) and writing them in one
bulk transaction; the report learns checkpoints, runs and duplicates from the frame."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..store import KEY, ResultsStore
from ..store_bulk import compact_text_columns, merge_checkpoint_row
from .common import ImportReport

#: Repetitive text columns, stored once per distinct value on their way to the store.
COMPACT = ("run", "checkpoint", "probe", "task", "capability", "metric", "spec_hash", "provenance")


class ImportBatch:
    """Rows and checkpoint metadata gathered from files, written together by :meth:`write`."""

    def __init__(self, report: ImportReport):
        self.report = report
        self.frames: list[pd.DataFrame] = []
        self.metas: dict[str, dict[str, Any]] = {}

    def add_rows(self, rows: list[dict[str, Any]], file: str | Path) -> None:
        """Add store rows given as dicts (small formats: lm-eval, columnar JSON)."""
        if rows:
            self.add_frame(pd.DataFrame(rows), file)

    def add_frame(self, frame: pd.DataFrame, file: str | Path) -> None:
        """Add store rows given as a frame (tidy and wide tables) read from ``file``."""
        if not frame.empty:
            self.frames.append(frame.assign(_file=str(file)))

    def add_meta(self, meta: Mapping[str, Any]) -> None:
        """Add one checkpoint's metadata; several files naming one checkpoint are merged."""
        name = str(meta["checkpoint"])
        self.metas[name] = merge_checkpoint_row(self.metas.get(name), dict(meta), "incoming")

    def write(self, store: ResultsStore | str) -> int:
        """Write everything in one transaction; a later row with the same key wins (reported).
        Returns the number of rows written and fills the report's counts."""
        st = store if isinstance(store, ResultsStore) else ResultsStore(store)
        if len(self.frames) == 1:
            frame = self.frames.pop()
        else:
            frame = pd.concat(self.frames, ignore_index=True) if self.frames else pd.DataFrame()
            self.frames.clear()
        if not frame.empty:
            compact_text_columns(frame, COMPACT)
            frame["shots"] = frame["shots"].astype("int64")
            dup = frame.duplicated(list(KEY), keep="last")
            if dup.any():
                d = frame[dup]
                for src, g in d.groupby("_file", sort=False):
                    first = g.iloc[0]
                    self.report.skip(
                        src,
                        f"{first['checkpoint']} {first['task']}/{first['metric']}",
                        "duplicate key: a later row for the same checkpoint/task/metric/shots wins",
                        count=len(g),
                    )
                frame = frame[~dup]
            frame = frame.drop(columns=["_file"], errors="ignore")
            for ck in frame["checkpoint"].unique():
                if ck not in self.report.checkpoints:
                    self.report.checkpoints.append(str(ck))
            for run in frame["run"].dropna().unique():
                if run not in self.report.runs:
                    self.report.runs.append(str(run))
        used = set(frame["checkpoint"].unique()) if not frame.empty else set()
        metas = [m for name, m in self.metas.items() if name in used]
        box = [frame]
        del frame  # bulk_upsert then holds the only reference and frees it after checking
        self.report.rows_written += st.bulk_upsert(box.pop(), metas, prefer="existing")
        return self.report.rows_written
