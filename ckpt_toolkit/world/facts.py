"""The facts of the built-in world: countries, cities, people, concepts, sizes.

Everything is drawn from a seeded :class:`random.Random`; the same seed gives the same world.
Names are invented (pronounceable syllable strings) so that a model can only know them from the
pretraining text; concept words (animals, fruit, tools, ...) are ordinary English, and the size
order of the animals follows the real world.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "tr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
CODAS = ["", "", "n", "r", "l", "s", "m", "th", "nd"]

PROFESSIONS = [
    "baker", "farmer", "doctor", "teacher", "sailor", "painter", "miner", "weaver",
    "singer", "builder", "hunter", "judge",
]  # fmt: skip

CATEGORIES: dict[str, list[str]] = {
    "animal": ["dog", "cat", "horse", "mouse", "cow", "sheep", "lion", "rabbit",
               "goat", "tiger", "wolf", "duck", "camel", "zebra", "monkey", "donkey"],
    "fruit": ["apple", "pear", "plum", "grape", "lemon", "cherry", "peach", "mango",
              "banana", "orange", "melon", "lime", "kiwi", "fig", "apricot", "papaya"],
    "tool": ["hammer", "saw", "drill", "wrench", "shovel", "rake", "chisel", "axe",
             "pliers", "screwdriver", "trowel", "hoe", "crowbar", "mallet", "clamp", "spade"],
    "vehicle": ["car", "bus", "truck", "bike", "boat", "train", "plane", "van",
                "taxi", "tram", "ship", "scooter", "tractor", "canoe", "jeep", "wagon"],
    "garment": ["shirt", "hat", "coat", "sock", "shoe", "scarf", "glove", "belt",
                "dress", "skirt", "jacket", "boot", "vest", "sweater", "cap", "tie"],
    "instrument": ["drum", "flute", "harp", "piano", "violin", "guitar", "horn", "bell",
                   "trumpet", "cello", "banjo", "organ", "oboe", "tuba", "lute", "clarinet"],
}  # fmt: skip

#: animals from smallest to largest (real-world order)
SIZE_ORDER = [
    "ant", "bee", "mouse", "frog", "rabbit", "cat", "fox", "dog",
    "sheep", "pig", "deer", "cow", "horse", "bear", "elephant", "whale",
]  # fmt: skip

STORY_NAMES = ["Tom", "Mira", "Sam", "Lena", "Ben", "Kim", "Omar", "Ada", "Raj", "Eva"]
STORY_PLACES = ["kitchen", "garden", "hall", "office", "bedroom", "cellar", "yard", "library"]
STORY_OBJECTS = ["ball", "key", "book", "cup", "coin", "lamp", "box", "pen"]


def article(word: str) -> str:
    """'a' or 'an' before ``word``."""
    return "an" if word[0] in "aeiou" else "a"


@dataclass
class Facts:
    """The world's facts. ``popularity`` weights (Zipf) decide how often an entity is written about."""

    countries: list[dict] = field(default_factory=list)  # name, capital, language, cities
    people: list[dict] = field(default_factory=list)  # name, city, country, profession
    country_popularity: list[float] = field(default_factory=list)
    people_popularity: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"countries": self.countries, "people": self.people}


def _names(rng: random.Random, n: int, syllables: tuple[int, int], taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        k = rng.randint(*syllables)
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(k))
        word = (word + rng.choice(CODAS)).capitalize()
        if word.lower() in taken or len(word) < 4:
            continue
        # no name may be a prefix of another: exact-match and fact checks stay unambiguous
        if any(word.lower().startswith(t) or t.startswith(word.lower()) for t in taken):
            continue
        taken.add(word.lower())
        out.append(word)
    return out


def make_facts(
    rng: random.Random,
    n_countries: int = 24,
    cities_per_country: int = 3,
    n_people: int = 90,
    zipf: float = 1.0,
) -> Facts:
    """Draw the world's entities and their facts."""
    taken: set[str] = set()
    cnames = _names(rng, n_countries, (2, 3), taken)
    city_names = _names(rng, n_countries * cities_per_country, (2, 2), taken)
    first = _names(rng, n_people, (1, 2), taken)
    last = _names(rng, n_people, (2, 2), taken)
    countries = []
    for i, name in enumerate(cnames):
        cities = city_names[i * cities_per_country : (i + 1) * cities_per_country]
        stem = name[:-1] if name[-1] in "aeiou" else name
        countries.append(
            {"name": name, "capital": cities[0], "cities": cities, "language": stem + "ish"}
        )
    people = []
    for i in range(n_people):
        c = rng.choice(countries)
        people.append(
            {
                "name": f"{first[i]} {last[i]}",
                "city": rng.choice(c["cities"]),
                "country": c["name"],
                "profession": rng.choice(PROFESSIONS),
            }
        )
    # Zipf popularity: a few entities are written about often (learned early), most rarely
    # (learned late) -- the frequency effect behind knowledge emerging late (paper 2, sec. 4).
    cpop = [1.0 / (r + 1) ** zipf for r in range(n_countries)]
    ppop = [1.0 / (r + 1) ** zipf for r in range(n_people)]
    return Facts(countries, people, cpop, ppop)
