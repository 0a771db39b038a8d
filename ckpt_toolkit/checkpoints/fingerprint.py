"""Fingerprints that follow the weights, not the path.

For a local folder: the config, the tokenizer files, and for every weight file its name, size,
safetensors header and a few sampled 64 KiB byte ranges (start, end and seeded interior offsets).
Any re-save of different weights changes the header offsets or the sampled bytes in practice,
and a multi-GB file costs a few hundred KiB of reads. Small files (< 4 MiB) are hashed whole.
For a hub checkpoint the commit SHA is the fingerprint when it is known.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from .files import pickle_files, safetensors_files
from .ref import CheckpointRef

CHUNK = 64 * 1024
WHOLE_FILE_LIMIT = 4 * 1024 * 1024
N_SAMPLES = 8
SMALL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
)


def _file_digest(path: Path, h: hashlib._Hash) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}:{size}\n".encode())
    with path.open("rb") as fh:
        if size <= WHOLE_FILE_LIMIT:
            h.update(fh.read())
            return
        # header (safetensors: 8-byte length + JSON) or the first chunk for other formats
        head = fh.read(8)
        h.update(head)
        if path.suffix == ".safetensors":
            n = int.from_bytes(head, "little")
            h.update(fh.read(min(n, 16 * 1024 * 1024)))
        rng = random.Random(size)  # offsets depend only on the size: reproducible
        offsets = [0, max(0, size - CHUNK)] + [
            rng.randrange(0, size - CHUNK) for _ in range(N_SAMPLES)
        ]
        for off in sorted(set(offsets)):
            fh.seek(off)
            h.update(fh.read(CHUNK))


def folder_fingerprint(folder: str | Path) -> str:
    """Fingerprint of a local checkpoint folder (hex, 20 characters)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for name in SMALL_FILES:
        p = folder / name
        if p.is_file():
            _file_digest(p, h)
    for p in (
        safetensors_files(folder)
        + [p for p in sorted(folder.glob("*.index.json"))]
        + pickle_files(folder)
    ):
        _file_digest(p, h)
    return h.hexdigest()[:20]


def fingerprint(ref: CheckpointRef) -> str:
    """The cache key of a checkpoint's weights: commit SHA for hub refs when known, else a
    content fingerprint of the (local or downloaded) folder."""
    if ref.is_hub:
        if ref.commit_sha:
            return f"hub-{ref.commit_sha[:20]}"
        from .hub import hub_commit_sha

        return f"hub-{hub_commit_sha(ref.path, ref.revision)[:20]}"
    return folder_fingerprint(ref.path)
