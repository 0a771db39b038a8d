"""The seeded world: facts, document streams per domain, mixtures, task files, held-out text."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ParameterError
from ..tasks import TaskItem, write_task_file
from .documents import DOMAINS, STREAMS
from .facts import Facts, make_facts
from .tasks import CAPABILITIES, make_tasks

#: default mixture weights (share of characters) of the pretraining domains
DEFAULT_WEIGHTS: dict[str, float] = {
    "wiki": 0.3,
    "stories": 0.2,
    "concepts": 0.15,
    "math": 0.2,
    "code": 0.15,
}


@dataclass
class WorldConfig:
    """Sizes of the world. ``corpus_chars`` is the size of the default-mixture corpus written
    beside the tasks (and used to train the tokenizer); variants draw their own mixtures."""

    n_countries: int = 24
    cities_per_country: int = 3
    n_people: int = 90
    zipf: float = 1.0
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    corpus_chars: int = 1_000_000
    heldout_docs: int = 40
    #: share of each domain's documents written as question-answer pages (see documents.py)
    qa_share: float = 0.1
    #: items per split of each generated task; the test split is large so that one SFT score
    #: has a standard error <= 0.02, the train split large enough that the SFT spec's steps
    #: (160 x 16 examples) are few epochs (fact tasks split their facts 30/10/60 instead)
    items: dict[str, int] = field(
        default_factory=lambda: {"train": 256, "validation": 32, "test": 640}
    )

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> WorldConfig:
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise ParameterError(f"unknown world option(s) {bad}; known: {sorted(known)}")
        cfg = cls(**d)
        if not 0 <= cfg.qa_share < 1:
            raise ParameterError(f"world option qa_share must be in [0, 1), not {cfg.qa_share}")
        return cfg


def normalize_weights(weights: dict[str, float]) -> dict[str, float]:
    """Check domain names and normalize mixture weights to sum to 1."""
    bad = sorted(set(weights) - set(DOMAINS))
    if bad:
        raise ParameterError(f"unknown domain(s) {bad} in mixture; domains: {list(DOMAINS)}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ParameterError(f"mixture weights must be >= 0 and not all 0: {weights}")
    total = sum(weights.values())
    return {d: weights[d] / total for d in DOMAINS if weights.get(d, 0) > 0}


@dataclass
class World:
    """A built world. Documents are produced by per-domain streams seeded from ``seed``: the
    first k documents of a domain are the same whatever mixture draws on it."""

    seed: int
    config: WorldConfig
    facts: Facts
    tasks: dict[str, list[TaskItem]]

    @property
    def capabilities(self) -> dict[str, list[str]]:
        caps: dict[str, list[str]] = {}
        for t in self.tasks:
            caps.setdefault(CAPABILITIES[t], []).append(t)
        return caps

    def documents(self, domain: str, stream: str = "train") -> Iterator[str]:
        """The endless, seeded document stream of ``domain`` (``train`` or ``heldout``)."""
        if domain not in STREAMS:
            raise ParameterError(f"unknown domain {domain!r}; domains: {list(DOMAINS)}")
        rng = random.Random(f"{self.seed}/{domain}/{stream}")
        return STREAMS[domain](rng, self.facts, self.config.qa_share)

    def corpus(
        self,
        weights: dict[str, float] | None = None,
        total_chars: int | None = None,
        length_filter: int = 0,
        domain_tags: bool = False,
        shuffle_seed: int | None = None,
    ) -> list[tuple[str, str]]:
        """A pretraining corpus: ``(domain, text)`` documents in a seeded shuffled order.

        Each domain contributes documents from its stream until it holds ``weight * total_chars``
        characters (so weights are shares of characters). ``length_filter`` drops documents
        shorter than that many characters (the paper's length filtering), ``domain_tags``
        prepends ``[domain] `` to each document (the paper's source tags).
        """
        w = normalize_weights(weights or self.config.weights)
        total = total_chars or self.config.corpus_chars
        docs: list[tuple[str, str]] = []
        for domain, share in w.items():
            budget, have, skipped = share * total, 0, 0
            for text in self.documents(domain):
                if have >= budget:
                    break
                if len(text) < length_filter:
                    skipped += 1
                    if skipped > 10_000 and have == 0:
                        raise ParameterError(
                            f"length_filter={length_filter} removes every {domain} document"
                        )
                    continue
                if domain_tags:
                    text = f"[{domain}] {text}"
                docs.append((domain, text))
                have += len(text)
        random.Random(f"{self.seed}/mix/{shuffle_seed}").shuffle(docs)
        return docs

    def heldout(self, domain: str) -> list[str]:
        """Held-out documents of ``domain`` (a separate stream from the training text)."""
        it = self.documents(domain, "heldout")
        return [next(it) for _ in range(self.config.heldout_docs)]

    def describe(self) -> dict[str, Any]:
        """The content of ``world.json``."""
        return {
            "seed": self.seed,
            "config": asdict(self.config),
            "domains": normalize_weights(self.config.weights),
            "capabilities": self.capabilities,
            "tasks": {
                t: {
                    "capability": CAPABILITIES[t],
                    "kind": "multiple_choice" if items[0].choices else "generation",
                    "n": {
                        s: sum(i.split == s for i in items) for s in ("train", "validation", "test")
                    },
                }
                for t, items in self.tasks.items()
            },
            "facts": self.facts.to_json(),
        }

    def write(self, out_dir: str | Path, corpus: bool = True) -> Path:
        """Write ``world.json``, ``tasks/<task>.jsonl``, ``heldout/<domain>.jsonl`` and (if
        ``corpus``) the default-mixture ``corpus.jsonl`` into ``out_dir``; returns it."""
        out = Path(out_dir)
        (out / "tasks").mkdir(parents=True, exist_ok=True)
        (out / "heldout").mkdir(parents=True, exist_ok=True)
        (out / "world.json").write_text(json.dumps(self.describe(), indent=1))
        for name, items in self.tasks.items():
            write_task_file(out / "tasks" / f"{name}.jsonl", items)
        for domain in normalize_weights(self.config.weights):
            with (out / "heldout" / f"{domain}.jsonl").open("w", encoding="utf-8") as fh:
                for text in self.heldout(domain):
                    fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        if corpus:
            with (out / "corpus.jsonl").open("w", encoding="utf-8") as fh:
                for domain, text in self.corpus():
                    fh.write(
                        json.dumps({"domain": domain, "text": text}, ensure_ascii=False) + "\n"
                    )
        return out


def build_world(seed: int = 0, config: WorldConfig | dict[str, Any] | None = None) -> World:
    """Build the world for ``seed``: the same seed and config give the same world, byte for byte."""
    cfg = config if isinstance(config, WorldConfig) else WorldConfig.from_dict(config)
    normalize_weights(cfg.weights)
    facts = make_facts(
        random.Random(f"{seed}/facts"),
        n_countries=cfg.n_countries,
        cities_per_country=cfg.cities_per_country,
        n_people=cfg.n_people,
        zipf=cfg.zipf,
    )
    return World(seed=seed, config=cfg, facts=facts, tasks=make_tasks(seed, facts, cfg.items))
