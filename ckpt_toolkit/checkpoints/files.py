"""Inspecting checkpoint folders without loading them: which weight files there are, whether
safetensors files are intact, how many parameters they hold."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError

SAFE_SUFFIX = ".safetensors"
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


#: bits per element of each safetensors dtype (sub-byte float types are packed)
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
}


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed, validated header of one safetensors file."""

    path: Path
    header_len: int
    header: dict
    file_size: int

    @property
    def tensors(self) -> dict[str, dict]:
        """Tensor name → {"dtype", "shape", "data_offsets"} (the ``__metadata__`` entry left out)."""
        return {k: v for k, v in self.header.items() if k != "__metadata__"}

    @property
    def n_params(self) -> int:
        return sum(math.prod(int(d) for d in info["shape"]) for info in self.tensors.values())


def _corrupt(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"corrupt safetensors file {path}: {what}")


def _check_tensor(path: Path, name: str, info: object) -> tuple[int, int]:
    """Validate one tensor entry; returns its (begin, end) byte range in the data section."""
    if not isinstance(info, dict):
        raise _corrupt(path, f"tensor {name!r} has no dtype/shape/data_offsets mapping")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise _corrupt(path, f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _corrupt(path, f"tensor {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise _corrupt(path, f"tensor {name!r} has no valid data_offsets ({offsets!r})")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    begin, end = offsets
    if bits != 8 * (end - begin):
        raise _corrupt(
            path,
            f"tensor {name!r} has shape {shape} of {dtype} ({bits / 8:g} bytes) but its byte "
            f"range {begin}..{end} holds {end - begin} bytes",
        )
    return begin, end


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """Parse and validate a safetensors header without reading any tensor.

    Checks what the safetensors format requires: a JSON mapping; for every tensor a known
    dtype, a shape of non-negative integers and a byte range whose length is shape x dtype
    size; ranges that tile the data section without gaps or overlaps and end where the file
    ends. A truncated or corrupt file raises :class:`CheckpointError` naming it (and the tensor).
    """
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
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise _corrupt(path, "header is not JSON") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a mapping")
    ranges = sorted(
        (_check_tensor(path, name, info), name)
        for name, info in header.items()
        if name != "__metadata__"
    )
    data_len = size - 8 - n
    expected = 0
    for (begin, end), name in ranges:
        if begin != expected:
            what = "overlaps the previous tensor" if begin < expected else "leaves a gap"
            raise _corrupt(
                path, f"tensor {name!r} at bytes {begin}..{end} {what} (expected {expected})"
            )
        expected = end
    if expected != data_len:
        raise CheckpointError(
            f"truncated or corrupt safetensors file {path}: tensors need {8 + n + expected} "
            f"bytes, file has {size}"
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
