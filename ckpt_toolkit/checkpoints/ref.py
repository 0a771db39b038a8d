"""What a checkpoint is and where it lives."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class CheckpointRef:
    """A reference to one checkpoint of a series.

    ``name`` identifies it in the results store (``<run>@step<step>`` by default), ``path`` is a
    local folder or a hub repo id (then ``revision`` names the branch/tag/commit). ``tokens``
    (tokens seen) is the default x-axis: steps are not comparable across batch sizes.
    ``world`` is the folder of tasks and held-out text that a zoo source ships beside its
    manifest (None for other sources); ``manifest`` is the manifest file that listed it. ``config`` holds the variant's configuration
    (objective, learning rate, mixture, ...).
    """

    path: str
    run: str
    step: int | None = None
    tokens: int | None = None
    params: int | None = None
    name: str = ""
    revision: str | None = None
    family: str | None = None
    kind: str = "local"  # local | trainer | hub | manifest
    world: str | None = None
    commit_sha: str | None = None
    manifest: str | None = field(default=None, compare=False)
    config: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.name:
            step = "final" if self.step is None else f"step{self.step}"
            object.__setattr__(self, "name", f"{self.run}@{step}")

    @property
    def is_hub(self) -> bool:
        return self.kind == "hub"

    def with_(self, **changes: Any) -> CheckpointRef:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def store_fields(self) -> dict[str, Any]:
        """The columns of a store row that describe this checkpoint."""
        return {
            "run": self.run,
            "checkpoint": self.name,
            "step": self.step,
            "tokens": self.tokens,
            "params": self.params,
        }

    def describe(self) -> str:
        loc = f"{self.path}@{self.revision}" if self.revision else self.path
        return f"{self.name} ({loc})"
