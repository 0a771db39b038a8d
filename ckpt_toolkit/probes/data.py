"""Probe inputs: held-out text per domain and task items per task (read from files)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import TaskFileError
from ..specs import canonical_json
from ..tasks import TaskItem, iter_jsonl, load_tasks


def _files(paths: str | Path | list[str | Path], what: str) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [p for p in str(paths).split(",") if p] if isinstance(paths, str) else [paths]
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted([*p.glob("*.jsonl"), *p.glob("*.txt")]))
        elif p.is_file():
            out.append(p)
        else:
            raise TaskFileError(f"{what} not found: {p}")
    if not out:
        raise TaskFileError(f"no {what} files (*.jsonl, *.txt) in {', '.join(map(str, paths))}")
    return out


def load_heldout(paths: str | Path | list[str | Path]) -> dict[str, list[str]]:
    """Held-out documents per domain (the file name without suffix).

    ``<domain>.jsonl`` holds one ``{"text": ...}`` per line (the zoo's layout); a ``.txt`` file
    holds documents separated by blank lines.
    """
    domains: dict[str, list[str]] = {}
    for f in _files(paths, "held-out text"):
        docs: list[str] = []
        if f.suffix == ".txt":
            docs = re.split(r"\n\s*\n", f.read_text(encoding="utf-8"))
        else:
            for lineno, obj in iter_jsonl(f):
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise TaskFileError(f"{f}:{lineno}: expected an object with a 'text' string")
                docs.append(obj["text"])
        docs = [d for d in docs if d.strip()]
        if not docs:
            raise TaskFileError(f"held-out file {f} holds no text")
        domains.setdefault(f.stem, []).extend(docs)
    return domains


def load_probe_tasks(
    paths: str | Path | list[str | Path], origin: dict[str, str] | None = None
) -> dict[str, list[TaskItem]]:
    """Task items per task, validated by :func:`ckpt_toolkit.tasks.load_tasks`; ``origin`` (if
    given) receives the file each task came from."""
    if isinstance(paths, str):
        paths = [p for p in paths.split(",") if p]
    if isinstance(paths, Path):
        paths = [paths]
    tasks: dict[str, list[TaskItem]] = {}
    for f in paths:
        part = load_tasks(f)
        for name, items in part.items():
            tasks.setdefault(name, []).extend(items)
            if origin is not None:
                origin.setdefault(name, str(f if Path(f).is_file() else Path(f) / f"{name}.jsonl"))
    return tasks


def content_hash(obj: object) -> str:
    """Short hash of the probe data, so a spec changes when its data change."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def items_hash(items: list[TaskItem]) -> str:
    return content_hash([it.to_json() for it in items])
