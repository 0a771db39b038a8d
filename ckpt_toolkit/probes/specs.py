"""Probe specs: everything that changes a probe's numbers, hashed into ``spec_hash``.

Batch size and progress bars are not part of a spec (they do not change results); the data's
content hash, the window, the seed, the number of shots, the item limit and the dtype are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..specs import spec_hash
from .registry import PROBE_ORDER, all_probes, get_probe

#: the built-in probes (every registered probe: :func:`ckpt_toolkit.probes.registry.probe_names`)
PROBES = PROBE_ORDER
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
        """The spec as hashed: fields, spec version, and the probe's version when above 1."""
        d = asdict(self)
        d["version"] = SPEC_VERSION
        probe = all_probes().get(self.probe)
        if probe is not None and probe.version != 1:
            d["probe_version"] = probe.version  # a probe whose numbers changed gets new hashes
        return d

    @property
    def hash(self) -> str:
        return spec_hash(self.to_dict())

    @property
    def key(self) -> str:
        return f"{self.probe}/{self.task}/{self.shots}shot"


class _Defaults(Mapping[str, dict[str, Any]]):
    """Probe name -> its default parameters, read from each probe's registry declaration."""

    def __getitem__(self, probe: str) -> dict[str, Any]:
        return get_probe(probe).defaults

    def __iter__(self) -> Iterator[str]:
        return iter(all_probes())

    def __len__(self) -> int:
        return len(all_probes())


#: default parameters of each probe (``ckpt probe --list`` prints them; docs/probes.md)
DEFAULTS: Mapping[str, dict[str, Any]] = _Defaults()
