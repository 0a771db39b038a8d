"""Stable hashes of specifications (probe specs, fine-tuning specs), so cached results
follow the spec: change any field and the hash changes."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the same object always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def spec_hash(spec: Any, length: int = 16) -> str:
    """SHA-256 (hex, truncated to ``length``) of the canonical JSON of ``spec``."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:length]
