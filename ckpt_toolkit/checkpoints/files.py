"""Inspecting checkpoint folders without loading them: which weight files there are, whether
safetensors files are intact, how many parameters they hold."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError

SAFE_SUFFIX = ".safetensors"
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header of one safetensors file."""

    path: Path
    header_len: int
    header: dict
    file_size: int

    @property
    def n_params(self) -> int:
        total = 0
        for name, info in self.header.items():
            if name == "__metadata__":
                continue
            n = 1
            for d in info["shape"]:
                n *= int(d)
            total += n
        return total


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """Parse and validate a safetensors header; a truncated or corrupt file raises
    :class:`CheckpointError` naming it."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"corrupt safetensors file {path}: only {size} bytes")
        (n,) = struct.unpack("<Q", raw)
        if n <= 0 or 8 + n > size:
            raise CheckpointError(
                f"corrupt or truncated safetensors file {path}: header claims {n} bytes, "
                f"file has {size}"
            )
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CheckpointError(f"corrupt safetensors file {path}: header is not JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"corrupt safetensors file {path}: header is not a mapping")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, IndexError, ValueError):
            raise CheckpointError(
                f"corrupt safetensors file {path}: tensor {name!r} has no valid data_offsets"
            ) from None
    if 8 + n + end != size:
        raise CheckpointError(
            f"truncated or corrupt safetensors file {path}: tensors need {8 + n + end} bytes, "
            f"file has {size}"
        )
    return SafetensorsHeader(path, n, header, size)


def safetensors_files(folder: Path) -> list[Path]:
    """The safetensors weight files of a folder (sharded or single), sorted."""
    return sorted(p for p in folder.glob(f"*{SAFE_SUFFIX}") if p.is_file())


def pickle_files(folder: Path) -> list[Path]:
    """Pickled weight files (``.bin``/``.pt``/``.pth``/``.ckpt``) of a folder."""
    out = []
    for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt"):
        out.extend(
            p
            for p in folder.glob(pattern)
            if p.is_file()
            and "optimizer" not in p.name
            and "training_args" not in p.name
            and "scheduler" not in p.name
            and "rng_state" not in p.name
        )
    return sorted(out)


def has_tokenizer(folder: Path) -> bool:
    return any((folder / f).is_file() for f in TOKENIZER_FILES)


def count_params(folder: Path) -> int | None:
    """Parameter count from the safetensors headers (no tensor is read); None if unknown."""
    files = safetensors_files(folder)
    if not files:
        return None
    return sum(read_safetensors_header(f).n_params for f in files)


def verify_folder(folder: str | Path) -> list[str]:
    """Check a local checkpoint folder without loading the model: config, weights (safetensors
    headers and sizes), tokenizer files and vocabulary vs embedding size. Returns the problems
    found (empty list: looks loadable)."""
    folder = Path(folder)
    problems: list[str] = []
    if not folder.is_dir():
        return [f"folder not found: {folder}"]
    cfg_path = folder / "config.json"
    cfg: dict = {}
    if not cfg_path.is_file():
        problems.append(f"missing config.json in {folder}")
    else:
        try:
            cfg = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            problems.append(f"config.json in {folder} is not valid JSON ({exc.msg})")
    safe = safetensors_files(folder)
    if safe:
        for f in safe:
            try:
                read_safetensors_header(f)
            except CheckpointError as exc:
                problems.append(str(exc))
    elif pickle_files(folder):
        problems.append(
            f"only pickled weights in {folder} ({', '.join(p.name for p in pickle_files(folder))});"
            " loading them needs allow_pickle / --allow-pickle"
        )
    else:
        problems.append(f"no weight files (*.safetensors) in {folder}")
    if not has_tokenizer(folder):
        problems.append(f"no tokenizer files in {folder} (looked for {', '.join(TOKENIZER_FILES)})")
    elif cfg.get("vocab_size") and (folder / "tokenizer.json").is_file():
        try:
            tok = json.loads((folder / "tokenizer.json").read_text())
            ids = [v for v in (tok.get("model", {}).get("vocab") or {}).values()]
            ids += [t.get("id", 0) for t in tok.get("added_tokens", [])]
            if ids and max(ids) >= int(cfg["vocab_size"]):
                problems.append(
                    f"tokenizer in {folder} has token id {max(ids)} but the model's embedding has "
                    f"only {cfg['vocab_size']} rows"
                )
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            problems.append(f"tokenizer.json in {folder} is not valid JSON")
    return problems
