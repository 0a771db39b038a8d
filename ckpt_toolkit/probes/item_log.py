"""Per-item scores on request (``ckpt probe --log-items``), like lm-eval's ``--log_samples``.

The store keeps one row per (checkpoint, probe, task, shots, metric); the item log keeps what
those rows aggregate: one record per document (``ppl``) or per item (``kshot``). It is written as
Parquet beside the store, one file per checkpoint and probe spec, at predictable paths::

    <store folder>/<store name>.items/<checkpoint>/<probe>-<task>-<k>shot-<spec hash>.parquet

so a sweep that adds probes adds files and a re-run rewrites the same ones. Every record has
``run, checkpoint, step, tokens, fingerprint, probe, task, shots, spec_hash, item``; then

* ``ppl``: ``loglik`` (nats, the document's total log-likelihood), ``n_tokens``, ``n_bytes``,
  ``bpb``;
* ``kshot`` multiple choice (``item`` is the item's id): ``gold``, ``pred`` (argmax),
  ``pred_norm`` (argmax per character), ``acc``, ``acc_norm``, ``loglik`` (of the gold choice),
  ``logliks`` (every choice);
* ``kshot`` generation: ``gold``, ``output``, ``exact_match``.

Probes whose row function takes no ``item_log`` argument (``sc_ppl``) log nothing; specs already
in the store are not recomputed, so they log nothing either. The worker that probes a checkpoint
writes its file: with Ray on several machines, put the store on a shared filesystem.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import StoreError
from .specs import ProbeSpec

SUFFIX = ".items"


def item_log_dir(store_path: str | Path) -> Path:
    """The folder of the item log of the store at ``store_path`` (``results.duckdb`` →
    ``results.items/`` beside it)."""
    p = Path(store_path)
    return p.with_name(p.stem + SUFFIX)


def _safe(name: str) -> str:
    return re.sub(r"[^\w.=+-]+", "_", str(name)).strip("._") or "_"


def item_log_path(folder: str | Path, checkpoint: str, spec: ProbeSpec) -> Path:
    """Where the records of ``spec`` on ``checkpoint`` go inside the item-log ``folder``."""
    name = f"{_safe(spec.probe)}-{_safe(spec.task)}-{spec.shots}shot-{spec.hash[:12]}.parquet"
    return Path(folder) / _safe(checkpoint) / name


def takes_item_log(run: Any) -> bool:
    """Whether a probe's row function accepts an ``item_log`` list to fill."""
    try:
        return "item_log" in inspect.signature(run).parameters
    except (TypeError, ValueError):
        return False


def write_item_log(path: str | Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` (dicts with the same keys) to the Parquet file ``path`` atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the item log folder {path.parent}: {e}") from e
    tmp = path.with_name(path.name + ".tmp")
    pd.DataFrame.from_records(records).to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def read_item_log(store_path: str | Path) -> pd.DataFrame:
    """Every per-item record logged beside the store at ``store_path`` (one table; columns a
    probe does not have are missing values)."""
    folder = item_log_dir(store_path)
    files = sorted(folder.glob("*/*.parquet"))
    if not files:
        raise StoreError(f"no item log at {folder} (run `ckpt probe ... --log-items`)")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
