"""Checkpoint sources, fingerprints and safe loading."""

from .files import count_params, read_safetensors_header, verify_folder
from .fingerprint import fingerprint, folder_fingerprint
from .hub import parse_hub_spec
from .loading import LoadedCheckpoint, load_checkpoint, local_folder, opened_checkpoint, unload
from .ref import CheckpointRef
from .resolve import resolve_manifest, resolve_source, resolve_trainer_folder

__all__ = [
    "CheckpointRef",
    "LoadedCheckpoint",
    "count_params",
    "fingerprint",
    "folder_fingerprint",
    "load_checkpoint",
    "local_folder",
    "opened_checkpoint",
    "parse_hub_spec",
    "read_safetensors_header",
    "resolve_manifest",
    "resolve_source",
    "resolve_trainer_folder",
    "unload",
    "verify_folder",
]
