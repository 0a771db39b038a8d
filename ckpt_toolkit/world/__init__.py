"""The built-in world: a seeded generator of facts, pretraining text in several domains, task
files and held-out text (DESIGN.md, "The built-in world"). Downstream code reads the files that
:meth:`World.write` produces; it never imports this package."""

from .documents import DOMAINS
from .tasks import CAPABILITIES
from .world import DEFAULT_WEIGHTS, World, WorldConfig, build_world, normalize_weights

__all__ = [
    "CAPABILITIES",
    "DEFAULT_WEIGHTS",
    "DOMAINS",
    "World",
    "WorldConfig",
    "build_world",
    "normalize_weights",
]
