"""Probe specs: everything that changes a probe's numbers, hashed into ``spec_hash``.

Batch size and progress bars are not part of a spec (they do not change results); the data's
content hash, the window, the seed, the number of shots, the item limit and the dtype are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..specs import spec_hash

PROBES = ("ppl", "sc_ppl", "kshot")
SPEC_VERSION = 1


@dataclass(frozen=True)
class ProbeSpec:
    """One probe on one task (or held-out domain) at one number of shots."""

    probe: str
    task: str
    shots: int = 0
    data_hash: str = ""
    limit: int | None = None
    dtype: str = "float32"
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["version"] = SPEC_VERSION
        return d

    @property
    def hash(self) -> str:
        return spec_hash(self.to_dict())

    @property
    def key(self) -> str:
        return f"{self.probe}/{self.task}/{self.shots}shot"


#: default parameters of each probe (documented in docs/probes.md)
DEFAULTS: dict[str, dict[str, Any]] = {
    "ppl": {"window": None, "stride": None},
    "sc_ppl": {"noise_density": 0.15, "mean_span": 3.0, "seed": 0, "window": None},
    "kshot": {"seed": 1234, "separator": "\n\n", "max_new_tokens": 32},
}
