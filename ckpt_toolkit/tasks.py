"""Task files: the one JSONL schema for k-shot probes and fine-tuning data.

One item per line::

    {"context": "Question: What is the capital of Avalon?\\nAnswer:",
     "choices": [" Brill", " Cato", " Dunmore", " Eston"],
     "gold": 0,
     "capability": "world_knowledge",
     "split": "test",
     "task": "capitals",          # optional, default: file name without .jsonl
     "dataset": "capitals",       # optional, default: task; a task's score is the mean over datasets
     "id": "capitals-0001"}       # optional, default: "<task>-<line number>"

* ``choices`` + integer ``gold``: multiple choice, scored by log-likelihood of each choice
  given the context.
* no ``choices`` and a string ``gold``: short-answer generation, scored by exact match of the
  greedy continuation (stripped, up to the first newline) against ``gold`` (stripped).
* ``split`` is one of ``train`` (fine-tuning data and the pool of k-shot examples),
  ``validation`` and ``test`` (probe and post-fine-tuning evaluation).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import TaskFileError

SPLITS = ("train", "validation", "test")
REQUIRED_FIELDS = ("context", "gold", "capability", "split")


@dataclass(frozen=True)
class TaskItem:
    """One probe / fine-tuning item."""

    id: str
    task: str
    dataset: str
    capability: str
    split: str
    context: str
    gold: int | str
    choices: tuple[str, ...] | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_multiple_choice(self) -> bool:
        return self.choices is not None

    @property
    def answer(self) -> str:
        """The gold answer text (the gold choice for multiple choice)."""
        return self.choices[self.gold] if self.choices is not None else str(self.gold)

    def to_json(self) -> dict:
        d = asdict(self)
        if d["choices"] is None:
            del d["choices"]
        else:
            d["choices"] = list(d["choices"])
        if not d["meta"]:
            del d["meta"]
        return d


def _parse_item(raw: object, path: Path, lineno: int, default_task: str) -> TaskItem:
    where = f"{path}:{lineno}"
    if not isinstance(raw, dict):
        raise TaskFileError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in raw]
    if missing:
        raise TaskFileError(f"{where}: missing required field(s) {', '.join(missing)}")
    context = raw["context"]
    if not isinstance(context, str):
        raise TaskFileError(f"{where}: 'context' must be a string")
    split = raw["split"]
    if split not in SPLITS:
        raise TaskFileError(f"{where}: 'split' is {split!r}; expected one of {', '.join(SPLITS)}")
    capability = raw["capability"]
    if not isinstance(capability, str) or not capability:
        raise TaskFileError(f"{where}: 'capability' must be a non-empty string")
    gold = raw["gold"]
    choices = raw.get("choices")
    if choices is not None:
        if (
            not isinstance(choices, list)
            or len(choices) < 2
            or not all(isinstance(c, str) for c in choices)
        ):
            raise TaskFileError(f"{where}: 'choices' must be a list of at least two strings")
        if isinstance(gold, bool) or not isinstance(gold, int):
            raise TaskFileError(f"{where}: 'gold' must be an integer index into 'choices'")
        if not 0 <= gold < len(choices):
            raise TaskFileError(
                f"{where}: 'gold' index {gold} is out of range for {len(choices)} choices"
            )
        choices = tuple(choices)
    elif not isinstance(gold, str):
        raise TaskFileError(
            f"{where}: an item without 'choices' is a generation item and needs a string 'gold'"
        )
    task = raw.get("task") or default_task
    return TaskItem(
        id=str(raw.get("id") or f"{task}-{lineno:05d}"),
        task=task,
        dataset=str(raw.get("dataset") or task),
        capability=capability,
        split=split,
        context=context,
        gold=gold,
        choices=choices,
        meta=dict(raw.get("meta") or {}),
    )


def iter_jsonl(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed object) for every non-blank line of a JSONL file; invalid JSON
    raises :class:`TaskFileError` naming the file and line."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFileError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None


def load_task_file(path: str | Path) -> list[TaskItem]:
    """Read and validate one task JSONL file; raises :class:`TaskFileError` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(f"task file not found: {path}")
    items = [_parse_item(raw, path, lineno, path.stem) for lineno, raw in iter_jsonl(path)]
    if not items:
        raise TaskFileError(f"task file {path} holds no items")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise TaskFileError(f"{path}: duplicate item ids {dup}")
    return items


def load_tasks(paths: str | Path | list[str | Path]) -> dict[str, list[TaskItem]]:
    """Load task files (a file, a folder of ``*.jsonl``, or a list of either), grouped by task."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.jsonl")))
        else:
            files.append(p)
    if not files:
        raise TaskFileError(f"no task files (*.jsonl) found in {', '.join(map(str, paths))}")
    tasks: dict[str, list[TaskItem]] = {}
    for f in files:
        for item in load_task_file(f):
            tasks.setdefault(item.task, []).append(item)
    return tasks


def write_task_file(path: str | Path, items: list[TaskItem] | list[dict]) -> Path:
    """Write items (TaskItem or dicts in the schema) as JSONL; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for it in items:
            d = it.to_json() if isinstance(it, TaskItem) else it
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    return path
