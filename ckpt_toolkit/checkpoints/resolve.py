"""Resolving a checkpoint source into an ordered list of :class:`CheckpointRef`.

Sources: a local Hugging Face folder; a folder of trainer ``checkpoint-N`` subfolders (or a folder
of such run folders); a manifest (CSV or YAML) listing checkpoints; a folder holding
``manifest.csv``/``manifest.yaml`` (the zoo's output); a hub spec ``hf://org/repo@rev1,rev2``.
Tokens seen = step x tokens-per-step (per run) unless the source states tokens.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import SourceError
from .files import count_params, pickle_files, safetensors_files
from .hub import is_hub_spec, resolve_hub, step_from_name
from .ref import CheckpointRef

MANIFEST_NAMES = ("manifest.csv", "manifest.yaml", "manifest.yml")
#: manifest columns that are fields of CheckpointRef; every other column goes to ``config``
REF_COLUMNS = {
    "path",
    "run",
    "step",
    "tokens",
    "params",
    "name",
    "checkpoint",
    "revision",
    "family",
    "commit_sha",
    "tokens_per_step",
}
TokensPerStep = int | Mapping[str, int] | None


def _tps_for(run: str, tokens_per_step: TokensPerStep) -> int | None:
    if tokens_per_step is None:
        return None
    if isinstance(tokens_per_step, Mapping):
        return tokens_per_step.get(run)
    return int(tokens_per_step)


#: the store keeps counts as signed 64-bit integers (DuckDB BIGINT)
MAX_COUNT = 2**63 - 1


def _int_or_none(value: Any, what: str) -> int | None:
    """A whole, non-negative count that fits the store (``1e6`` and ``1000.0`` are accepted);
    anything else raises :class:`SourceError` naming ``what`` (file, row and column)."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, bool):
        raise SourceError(f"{what}: {value!r} is not a number")
    if isinstance(value, int):
        n = value
    else:
        text = str(value).strip().replace("_", "")
        if re.fullmatch(r"[+-]?\d+", text):
            n = int(text)  # exact, also beyond float precision
        else:
            try:
                f = float(text)
            except ValueError:
                raise SourceError(f"{what}: {value!r} is not a number") from None
            if not math.isfinite(f) or f != int(f):
                raise SourceError(f"{what}: {value!r} is not a whole number")
            n = int(f)
    if n < 0:
        raise SourceError(f"{what}: {value!r} is negative")
    if n > MAX_COUNT:
        raise SourceError(f"{what}: {value!r} is out of range (the store holds at most 2^63-1)")
    return n


def _checked_tokens(step: int, tps: int, what: str) -> int:
    """Tokens seen = step x tokens per step, within the store's range."""
    tokens = step * tps
    if tokens > MAX_COUNT:
        raise SourceError(
            f"{what}, tokens_per_step={tps}: step {step} x {tps} = {tokens} is out of range "
            "(the store holds at most 2^63-1)"
        )
    return tokens


def leaves_manifest_folder(ref: CheckpointRef) -> bool:
    """Whether a manifest row's local path points outside the manifest's folder (allowed:
    shared checkpoints exist; ``ckpt checkpoints list`` reports it)."""
    if not ref.manifest or ref.is_hub:
        return False
    base = str(Path(ref.manifest).parent.resolve())
    target = str(Path(ref.path).resolve())
    return os.path.commonpath([base, target]) != base


def _trainer_state_tokens(folder: Path) -> int | None:
    state = folder / "trainer_state.json"
    if state.is_file():
        try:
            return int(json.loads(state.read_text()).get("num_input_tokens_seen") or 0) or None
        except (json.JSONDecodeError, ValueError, TypeError):
            return None
    return None


def _is_hf_folder(p: Path) -> bool:
    """A model folder: a config or weight files (a missing config is reported by the loader)."""
    return p.is_dir() and (
        (p / "config.json").is_file() or bool(safetensors_files(p)) or bool(pickle_files(p))
    )


def _trainer_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    out = []
    for p in folder.iterdir():
        m = re.fullmatch(r"checkpoint[-_](\d+)", p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def _local_ref(
    folder: Path, run: str, step: int | None, tps: int | None, kind: str
) -> CheckpointRef:
    tokens = _trainer_state_tokens(folder)
    if tokens is None and step is not None and tps:
        tokens = _checked_tokens(step, tps, f"checkpoint {folder}")
    try:
        params = count_params(folder)
    except Exception:  # noqa: BLE001 - a corrupt file is reported by verify/load, not here
        params = None
    return CheckpointRef(
        path=str(folder), run=run, step=step, tokens=tokens, params=params, kind=kind
    )


def resolve_trainer_folder(
    folder: Path, run: str | None = None, tokens_per_step: TokensPerStep = None
) -> list[CheckpointRef]:
    """A run folder of ``checkpoint-N`` subfolders (transformers Trainer layout)."""
    run = run or folder.name
    tps = _tps_for(run, tokens_per_step)
    return [_local_ref(p, run, step, tps, "trainer") for step, p in _trainer_checkpoints(folder)]


def _read_manifest_rows(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows and file-level defaults of a CSV or YAML manifest."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise SourceError(
                    f"manifest {path} needs a 'path' column (found: {reader.fieldnames})"
                )
            return [dict(r) for r in reader], {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SourceError(f"manifest {path} is not valid YAML: {exc}") from None
    if isinstance(data, list):
        rows, defaults = data, {}
    elif isinstance(data, dict) and isinstance(data.get("checkpoints"), list):
        rows = data["checkpoints"]
        defaults = {k: v for k, v in data.items() if k != "checkpoints"}
    else:
        raise SourceError(
            f"manifest {path} must be a list of checkpoints or a mapping with a 'checkpoints' list"
        )
    for i, r in enumerate(rows, start=1):
        if not isinstance(r, dict):
            raise SourceError(f"manifest {path}, row {i}: expected a mapping, got {r!r}")
    return rows, defaults


def resolve_manifest(
    path: str | Path, tokens_per_step: TokensPerStep = None
) -> list[CheckpointRef]:
    """Checkpoints listed in a manifest (CSV or YAML). Paths are relative to the manifest."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"manifest not found: {path}")
    rows, defaults = _read_manifest_rows(path)
    if not rows:
        raise SourceError(f"manifest {path} lists no checkpoints")
    world = path.parent / "world"
    refs = []
    for i, raw in enumerate(rows, start=1):
        row = {**defaults, **{k: v for k, v in raw.items() if v not in (None, "")}}
        where = f"manifest {path}, row {i}"
        if not str(row.get("path") or "").strip():
            raise SourceError(f"{where}: the 'path' cell is empty (every row needs a path)")
        loc = str(row["path"]).strip()
        config = {k: v for k, v in row.items() if k not in REF_COLUMNS}
        if is_hub_spec(loc):
            hub = resolve_hub(loc, run=row.get("run"))
            if len(hub) != 1:
                raise SourceError(f"{where}: a manifest row names one hub revision, got {loc!r}")
            base = hub[0]
        else:
            folder = (path.parent / loc).resolve() if not Path(loc).is_absolute() else Path(loc)
            base = CheckpointRef(
                path=str(folder), run=str(row.get("run") or folder.parent.name), kind="manifest"
            )
        run = str(row.get("run") or base.run)
        step = _int_or_none(row.get("step"), f"{where}, step")
        if step is None:
            step = base.step if base.step is not None else step_from_name(loc)
            step = _int_or_none(step, f"{where}, step (from the path {loc!r})")
        tokens = _int_or_none(row.get("tokens"), f"{where}, tokens")
        tps = _int_or_none(row.get("tokens_per_step"), f"{where}, tokens_per_step") or _tps_for(
            run, tokens_per_step
        )
        if tokens is None and step is not None and tps:
            tokens = _checked_tokens(step, tps, where)
        params = _int_or_none(row.get("params"), f"{where}, params")
        if params is None and not base.is_hub and Path(base.path).is_dir():
            try:
                params = count_params(Path(base.path))
            except Exception:  # noqa: BLE001
                params = None
        refs.append(
            base.with_(
                run=run,
                step=step,
                tokens=tokens,
                params=params,
                name=str(row.get("name") or row.get("checkpoint") or ""),
                revision=row.get("revision") or base.revision,
                family=row.get("family"),
                commit_sha=row.get("commit_sha"),
                world=str(world) if world.is_dir() else None,
                manifest=str(path),
                config=config,
            )
        )
        if not refs[-1].name:
            refs[-1] = refs[-1].with_(name=f"{run}@{'final' if step is None else f'step{step}'}")
    return refs


def resolve_source(
    source: str | Path | CheckpointRef | list,
    *,
    tokens_per_step: TokensPerStep = None,
    run: str | None = None,
) -> list[CheckpointRef]:
    """Resolve any supported source into checkpoints sorted by (run, tokens/step).

    Raises :class:`SourceError` with what was looked for when nothing matches.
    """
    if isinstance(source, CheckpointRef):
        return [source]
    if isinstance(source, list):
        return [
            r for s in source for r in resolve_source(s, tokens_per_step=tokens_per_step, run=run)
        ]
    if isinstance(source, str) and is_hub_spec(source):
        refs = resolve_hub(source, run=run)
        tps = None
        out = []
        for r in refs:
            tps = _tps_for(r.run, tokens_per_step)
            out.append(r.with_(tokens=r.step * tps) if (tps and r.step is not None) else r)
        return out
    path = Path(source)
    if not path.exists():
        looks_like_repo = str(source).count("/") == 1 and not str(source).startswith((".", "/"))
        hint = " (hub repos are written hf://org/name@revision)" if looks_like_repo else ""
        raise SourceError(f"checkpoint source not found: {source}{hint}")
    if path.is_file():
        if path.suffix.lower() in (".csv", ".yaml", ".yml"):
            refs = resolve_manifest(path, tokens_per_step)
        else:
            raise SourceError(f"{path} is a file but not a manifest (.csv, .yaml)")
    else:
        manifest = next((path / n for n in MANIFEST_NAMES if (path / n).is_file()), None)
        if manifest is not None:
            refs = resolve_manifest(manifest, tokens_per_step)
        elif _is_hf_folder(path):
            name = run or path.name
            step = step_from_name(path.name)
            refs = [
                _local_ref(
                    path,
                    name if step is None else (run or path.parent.name),
                    step,
                    _tps_for(name, tokens_per_step),
                    "local",
                )
            ]
        elif _trainer_checkpoints(path):
            refs = resolve_trainer_folder(path, run, tokens_per_step)
        else:
            subs = [p for p in sorted(path.iterdir()) if p.is_dir() and _trainer_checkpoints(p)]
            refs = [r for p in subs for r in resolve_trainer_folder(p, None, tokens_per_step)]
            if not refs:
                raise SourceError(
                    f"no checkpoints found in {path}: expected config.json (a Hugging Face "
                    "folder), checkpoint-N subfolders, run folders of them, or manifest.csv/.yaml"
                )
    names = [r.name for r in refs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SourceError(f"source {source} resolves to duplicate checkpoint names {dup[:3]}")
    # within a run, steps order checkpoints (tokens may be known for only some of them)
    return sorted(
        refs,
        key=lambda r: (
            r.run,
            r.step if r.step is not None else -1,
            r.tokens if r.tokens is not None else -1,
        ),
    )
