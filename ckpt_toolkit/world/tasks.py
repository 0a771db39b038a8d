"""Task items of the built-in world, in the schema of :mod:`ckpt_toolkit.tasks`.

Two or more tasks per capability category (paper 2's categories), multiple choice (4 choices,
scored by log-likelihood) and short-answer generation (string gold, exact match). Items are
questions (``Question: ...\\nAnswer:``) -- a different format from the declarative pretraining
text -- so fine-tuning teaches the format while the facts must come from pretraining.

Splits are disjoint by ``meta["key"]`` (the fact, expression or program an item is about).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..tasks import TaskItem
from .documents import (
    ARITH_MAX,
    birthplace_sentence,
    capital_sentence,
    category_sentence,
    make_program,
    profession_sentence,
    simulate_story,
)
from .facts import CATEGORIES, PROFESSIONS, SIZE_ORDER, STORY_PLACES, Facts, article

#: task -> capability
CAPABILITIES: dict[str, str] = {
    "capitals": "world_knowledge",
    "birthplaces": "world_knowledge",
    "professions": "world_knowledge",
    "where_is": "reading_comprehension",
    "who_has": "reading_comprehension",
    "category": "commonsense",
    "biggest": "commonsense",
    "arithmetic": "math",
    "multistep": "math",
    "code_output": "code",
    "code_value": "code",
}

#: train / validation / test share of the facts of a fact-based task: SFT needs few facts to
#: learn the question format, the test split as many as possible (its standard error)
FACT_FRACTIONS = (0.3, 0.1, 0.6)


def _mc(rng: random.Random, gold: str, pool: list[str]) -> tuple[list[str], int]:
    """Four choices (gold + 3 distinct distractors from ``pool``), shuffled; returns (choices, gold)."""
    distract = rng.sample(sorted({p for p in pool if p != gold}), 3)
    choices = [gold] + distract
    rng.shuffle(choices)
    return [" " + c for c in choices], choices.index(gold)


def _numeric_distractors(rng: random.Random, gold: int) -> list[str]:
    cands = {gold + d for d in (-10, -2, -1, 1, 2, 10)} - {gold}
    cands = {c for c in cands if c >= 0} or {gold + 3}
    while len(cands) < 3:
        cands.add(gold + rng.randint(3, 12))
    return [str(c) for c in cands]


def _item(task: str, key: str, context: str, gold, choices=None, evidence=None) -> dict:
    meta: dict = {"key": key}
    if evidence:
        meta["evidence"] = evidence
    d = {"task": task, "capability": CAPABILITIES[task], "context": context, "gold": gold}
    if choices is not None:
        d["choices"] = choices
    d["meta"] = meta
    return d


# -- fact-based tasks (items per fact; splits by fact) -----------------------------------------


def assign_splits(rng: random.Random, keys: list[str]) -> dict[str, str]:
    """Each fact (key) to one split, in the shares of :data:`FACT_FRACTIONS` (seeded)."""
    keys = sorted(set(keys))
    rng.shuffle(keys)
    n = len(keys)
    n_train = max(1, round(n * FACT_FRACTIONS[0]))
    n_val = max(1, round(n * FACT_FRACTIONS[1]))
    return {
        k: "train" if i < n_train else "validation" if i < n_train + n_val else "test"
        for i, k in enumerate(keys)
    }


def _same_split_pool(split: dict[str, str], answer: dict[str, str], key: str) -> list[str]:
    """Answers of the facts in ``key``'s split: distractors never name an answer that SFT
    trains on for a test item (or the other way round), which would teach "pick what was an
    answer before" instead of the fact."""
    gold = answer[key]
    pool = [answer[k] for k in answer if split[k] == split[key]]
    if len({p for p in pool if p != gold}) < 3 and split[key] != "test":
        pool = [answer[k] for k in answer if split[k] != "test"]  # never a test answer
    if len({p for p in pool if p != gold}) < 3:
        pool = list(answer.values())
    return pool


def capitals(rng: random.Random, facts: Facts) -> list[dict]:
    """Per country: its capital, and the country of each of its cities (the capital included;
    wiki articles state "<city> is a city in <country>."), all multiple choice, all in the
    country's split: a few countries give several items each, so the test split's standard
    error is not that of 19 items (the quick world)."""
    split = assign_splits(rng, [c["name"] for c in facts.countries])
    answer = {c["name"]: c["capital"] for c in facts.countries}
    country = {c["name"]: c["name"] for c in facts.countries}
    out = []
    for c in facts.countries:
        choices, gold = _mc(rng, c["capital"], _same_split_pool(split, answer, c["name"]))
        ctx = f"Question: What is the capital of {c['name']}?\nAnswer:"
        it = _item("capitals", c["name"], ctx, gold, choices, [capital_sentence(c)])
        out.append({**it, "split": split[c["name"]]})
        for city in c["cities"]:
            choices, gold = _mc(rng, c["name"], _same_split_pool(split, country, c["name"]))
            ctx = f"Question: In which country is {city}?\nAnswer:"
            said = (
                capital_sentence(c) if city == c["capital"] else f"{city} is a city in {c['name']}."
            )
            it = _item("capitals", c["name"], ctx, gold, choices, [said])
            out.append({**it, "split": split[c["name"]]})
    return out


def birthplaces(rng: random.Random, facts: Facts) -> list[dict]:
    """Multiple choice among cities that are birthplaces in the same split (as a generation
    task every quick model scored 0-2% after SFT: a floor that separates nothing)."""
    split = assign_splits(rng, [p["name"] for p in facts.people])
    answer = {p["name"]: p["city"] for p in facts.people}
    out = []
    for p in facts.people:
        choices, gold = _mc(rng, p["city"], _same_split_pool(split, answer, p["name"]))
        ctx = f"Question: In which city was {p['name']} born?\nAnswer:"
        it = _item("birthplaces", p["name"], ctx, gold, choices, [birthplace_sentence(p)])
        out.append({**it, "split": split[p["name"]]})
    return out


def professions(rng: random.Random, facts: Facts) -> list[dict]:
    split = assign_splits(rng, [p["name"] for p in facts.people])
    out = []
    for p in facts.people:
        choices, gold = _mc(rng, p["profession"], PROFESSIONS)
        ctx = f"Question: What is the job of {p['name']}?\nAnswer:"
        it = _item("professions", p["name"], ctx, gold, choices, [profession_sentence(p)])
        out.append({**it, "split": split[p["name"]]})
    return out


def category(rng: random.Random, facts: Facts) -> list[dict]:
    """Three questions per member (which of four things is a <category>; what kind of thing a
    member is; which of four things is not a <category>, the member among three of another
    category); all items of a member are in the same split, and the other members named
    come from that split only."""
    member_cat = {m: c for c, ms in CATEGORIES.items() for m in ms}
    split = assign_splits(rng, list(member_cat))
    out = []
    for m, cat in member_cat.items():
        others = [x for x, c in member_cat.items() if c != cat and split[x] == split[m]]
        if len(others) < 3 and split[m] != "test":
            others = [x for x, c in member_cat.items() if c != cat and split[x] != "test"]
        if len(others) < 3:
            others = [x for x, c in member_cat.items() if c != cat]
        choices, gold = _mc(rng, m, others + [m])
        ctx = f"Question: Which of these is {article(cat)} {cat}?\nAnswer:"
        evidence = [category_sentence(m, cat)]
        out.append({**_item("category", m, ctx, gold, choices, evidence), "split": split[m]})
        choices, gold = _mc(rng, cat, sorted(CATEGORIES))
        ctx = f"Question: What kind of thing is {article(m)} {m}?\nAnswer:"
        out.append({**_item("category", m, ctx, gold, choices, evidence), "split": split[m]})
        # the odd one out: m among three members of one other category (same split)
        other = rng.choice(sorted({member_cat[x] for x in others}))
        pool = [x for x in others if member_cat[x] == other]
        if len(pool) >= 3:
            group = rng.sample(sorted(pool), 3) + [m]
            rng.shuffle(group)
            ctx = f"Question: Which of these is not {article(other)} {other}?\nAnswer:"
            choices = [" " + x for x in group]
            it = _item("category", m, ctx, group.index(m), choices, evidence)
            out.append({**it, "split": split[m]})
    return out


# -- generated tasks (fresh items; counts per split from the config) ----------------------------


def biggest(rng: random.Random) -> dict:
    animals = rng.sample(SIZE_ORDER, 4)
    gold_animal = max(animals, key=SIZE_ORDER.index)
    listed = (
        ", ".join(f"{article(a)} {a}" for a in animals[:3])
        + f" or {article(animals[3])} {animals[3]}"
    )
    ctx = f"Question: Which is the biggest: {listed}?\nAnswer:"
    # the answer follows from the stated comparisons (SIZE_PAIRS) by transitivity
    return _item(
        "biggest",
        ",".join(sorted(animals)),
        ctx,
        animals.index(gold_animal),
        [" " + a for a in animals],
    )


#: events per reading-comprehension story (short enough for the zoo's small models to track)
STORY_EVENTS = (3, 6)


def where_is(rng: random.Random) -> dict:
    while True:
        sents, where, _ = simulate_story(rng, rng.randint(STORY_EVENTS[0], STORY_EVENTS[1]))
        moved = [p for p in where if sum(s.startswith(f"{p} went") for s in sents) >= 1]
        if moved:
            break
    p = rng.choice(sorted(moved))
    choices, gold = _mc(rng, "the " + where[p], ["the " + x for x in STORY_PLACES])
    ctx = "Story: " + " ".join(sents) + f"\nQuestion: Where is {p}?\nAnswer:"
    return _item("where_is", ctx, ctx, gold, choices)


def who_has(rng: random.Random) -> dict:
    while True:
        sents, _, holder = simulate_story(rng, rng.randint(STORY_EVENTS[0], STORY_EVENTS[1]))
        if holder:
            break
    o = rng.choice(sorted(holder))
    ctx = "Story: " + " ".join(sents) + f"\nQuestion: Who has the {o}?\nAnswer:"
    return _item("who_has", ctx, ctx, holder[o])


def arithmetic(rng: random.Random) -> dict:
    """One step, operands 0..ARITH_MAX. The key is the fact, not its spelling: ``a + b`` and
    ``b + a`` share a key, so no test sum is trained on in either order."""
    a, b = rng.randint(0, ARITH_MAX), rng.randint(0, ARITH_MAX)
    if rng.random() < 0.6:
        expr, val, key = f"{a} + {b}", a + b, f"{min(a, b)} + {max(a, b)}"
    else:
        a, b = max(a, b), min(a, b)
        expr, val = f"{a} - {b}", a - b
        key = expr
    return _item("arithmetic", key, f"Question: What is {expr}?\nAnswer:", str(val))


def multistep(rng: random.Random) -> dict:
    a, b, c = rng.randint(0, 20), rng.randint(0, 20), rng.randint(0, 9)
    if a + b - c >= 0 and rng.random() < 0.5:
        expr, val = f"{a} + {b} - {c}", a + b - c
    else:
        expr, val = f"{a} + {b} + {c}", a + b + c
    choices = [str(val)] + rng.sample(_numeric_distractors(rng, val), 3)
    rng.shuffle(choices)
    return _item(
        "multistep",
        expr,
        f"Question: What is {expr}?\nAnswer:",
        choices.index(str(val)),
        [" " + x for x in choices],
    )


def code_output(rng: random.Random) -> dict:
    lines, env = make_program(rng, rng.randint(1, 3))
    v = rng.choice(sorted(env))
    prog = "\n".join(lines + [f"print({v})"])
    ctx = f"Program:\n{prog}\nQuestion: What does the program print?\nAnswer:"
    return _item("code_output", prog, ctx, str(env[v]))


def code_value(rng: random.Random) -> dict:
    """Graded: half the programs end in a small loop, half are 1-2 straight-line assignments
    (a model that only copies a stated value gets some of those right)."""
    lines, env = make_program(rng, rng.randint(1, 2), loop=rng.random() < 0.5)
    v = rng.choice(sorted(env))
    prog = "\n".join(lines)
    choices = [str(env[v])] + rng.sample(_numeric_distractors(rng, env[v]), 3)
    rng.shuffle(choices)
    ctx = f"Program:\n{prog}\nQuestion: What is the value of {v} at the end?\nAnswer:"
    return _item(
        "code_value", f"{prog}|{v}", ctx, choices.index(str(env[v])), [" " + c for c in choices]
    )


FACT_TASKS: dict[str, Callable[[random.Random, Facts], list[dict]]] = {
    "capitals": capitals,
    "birthplaces": birthplaces,
    "professions": professions,
    "category": category,
}
GENERATED_TASKS: dict[str, Callable[[random.Random], dict]] = {
    "where_is": where_is,
    "who_has": who_has,
    "biggest": biggest,
    "arithmetic": arithmetic,
    "multistep": multistep,
    "code_output": code_output,
    "code_value": code_value,
}


def _generate_split_items(
    rng: random.Random, make: Callable[[random.Random], dict], counts: dict[str, int]
) -> list[dict]:
    """Fresh items with distinct keys; stops early (fewer items) if the key space runs out."""
    seen: set[str] = set()
    out: list[dict] = []
    for split in ("train", "validation", "test"):
        made, tries = 0, 0
        while made < counts[split] and tries < counts[split] * 50:
            tries += 1
            it = make(rng)
            if it["meta"]["key"] in seen:
                continue
            seen.add(it["meta"]["key"])
            it["split"] = split
            out.append(it)
            made += 1
    return out


def make_tasks(
    seed: int, facts: Facts, counts: dict[str, int], tasks: list[str] | None = None
) -> dict[str, list[TaskItem]]:
    """All task items of the world, by task name, with ids ``<task>-<split>-<nnnn>``."""
    out: dict[str, list[TaskItem]] = {}
    for name in tasks or list(CAPABILITIES):
        rng = random.Random(f"{seed}/task/{name}")
        if name in FACT_TASKS:
            raw = FACT_TASKS[name](rng, facts)
            rng.shuffle(raw)  # file order must not follow popularity (first-N limits)
        else:
            raw = _generate_split_items(rng, GENERATED_TASKS[name], counts)
        order = {"train": 0, "validation": 1, "test": 2}
        raw.sort(key=lambda d: order[d["split"]])
        items = []
        per_split: dict[str, int] = {}
        for d in raw:
            i = per_split[d["split"]] = per_split.get(d["split"], -1) + 1
            items.append(
                TaskItem(
                    id=f"{name}-{d['split']}-{i:04d}",
                    task=name,
                    dataset=name,
                    capability=d["capability"],
                    split=d["split"],
                    context=d["context"],
                    gold=d["gold"],
                    choices=tuple(d["choices"]) if "choices" in d else None,
                    meta=d["meta"],
                )
            )
        out[name] = items
    return out
