"""ckpt_toolkit: probe, fine-tune and compare series of pretraining checkpoints."""

import os as _os

from ._version import __version__

# OpenMP threads sleep instead of spin-waiting when idle, so a sweep never burns a core another
# process needs (docs/threads.md). libgomp reads this once, when torch loads it: set here, before
# any torch import of this package; a value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def __getattr__(name: str):
    # lazy public API: `import ckpt_toolkit` stays cheap (no torch/transformers import)
    if name in ("load_checkpoint", "resolve_source", "fingerprint", "CheckpointRef"):
        from . import checkpoints

        return getattr(checkpoints, name)
    if name in ("ResultsStore", "open_store"):
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module 'ckpt_toolkit' has no attribute {name!r}")


__all__ = [
    "CheckpointRef",
    "ResultsStore",
    "fingerprint",
    "load_checkpoint",
    "open_store",
    "resolve_source",
    "__version__",
]
