"""Pretraining documents, one generator per domain.

Domains (the analogue of web / books / wiki / code in a real mixture):

* ``wiki``     -- encyclopedic articles about countries, cities and people (declarative facts)
* ``stories``  -- short narratives of people moving and handing objects around
* ``concepts`` -- commonsense statements: category membership and size comparisons
* ``math``     -- arithmetic worksheets and word problems
* ``code``     -- tiny Python programs followed by what they print

Task items (see :mod:`.tasks`) ask about the same facts in a *different* format
(``Question: ...\\nAnswer:``), so a model must have learned the facts in pretraining and
fine-tuning can only teach the format (DESIGN.md, "The built-in world").
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from .facts import (
    CATEGORIES,
    SIZE_ORDER,
    STORY_NAMES,
    STORY_OBJECTS,
    STORY_PLACES,
    Facts,
    article,
)

DOMAINS = ("wiki", "stories", "concepts", "math", "code")

# -- wiki ---------------------------------------------------------------------------------------


def capital_sentence(c: dict) -> str:
    """The canonical statement of a capital fact (always present in a country article)."""
    return f"The capital of {c['name']} is {c['capital']}."


def birthplace_sentence(p: dict) -> str:
    """The canonical statement of a birthplace fact (always present in a person article)."""
    return f"{p['name']} was born in {p['city']}."


def profession_sentence(p: dict) -> str:
    """The canonical statement of a profession fact (always present in a person article)."""
    return f"{p['name']} works as {article(p['profession'])} {p['profession']}."


def country_article(rng: random.Random, c: dict) -> str:
    extra = [
        f"{c['capital']} is the largest city of {c['name']}.",
        f"People in {c['name']} speak {c['language']}.",
        f"{c['name']} is a country with {len(c['cities'])} cities.",
    ] + [f"{city} is a city in {c['name']}." for city in c["cities"][1:]]
    rng.shuffle(extra)
    sents = [f"{c['name']} is a country.", capital_sentence(c)] + extra[: rng.randint(1, 3)]
    return " ".join(sents)


def person_article(rng: random.Random, p: dict) -> str:
    extra = [
        f"{p['city']} is in {p['country']}.",
        f"As a child, {p['name'].split()[0]} lived in {p['city']}.",
        f"Many people know {p['name']}.",
    ]
    rng.shuffle(extra)
    core = [birthplace_sentence(p), profession_sentence(p)]
    rng.shuffle(core)
    return " ".join(core + extra[: rng.randint(0, 2)])


def wiki_stream(rng: random.Random, facts: Facts, qa_share: float = 0.0) -> Iterator[str]:
    """Every entity once (shuffled), then entities sampled by Zipf popularity (a ``qa_share``
    of them as question-answer pages)."""
    first = [("c", c) for c in facts.countries] + [("p", p) for p in facts.people]
    rng.shuffle(first)
    for kind, ent in first:
        yield country_article(rng, ent) if kind == "c" else person_article(rng, ent)
    n_c = len(facts.countries)
    while True:
        if qa_share and rng.random() < qa_share:
            yield qa_page(rng, [wiki_qa(rng, facts) for _ in range(rng.randint(1, 3))])
        elif rng.random() < 0.4:
            c = rng.choices(facts.countries, weights=facts.country_popularity[:n_c])[0]
            yield country_article(rng, c)
        else:
            p = rng.choices(facts.people, weights=facts.people_popularity)[0]
            yield person_article(rng, p)


# -- stories ------------------------------------------------------------------------------------


def simulate_story(rng: random.Random, n_events: int) -> tuple[list[str], dict, dict]:
    """A story as a list of sentences plus the final state: where each person is, who holds what."""
    people = rng.sample(STORY_NAMES, rng.randint(2, 3))
    where: dict[str, str] = {}
    holder: dict[str, str] = {}
    sents: list[str] = []
    for _ in range(n_events):
        p = rng.choice(people)
        held = [o for o, h in holder.items() if h == p]
        free = [o for o in STORY_OBJECTS if o not in holder]
        r = rng.random()
        if p not in where or r < 0.45:
            place = rng.choice([x for x in STORY_PLACES if x != where.get(p)])
            where[p] = place
            sents.append(f"{p} went to the {place}.")
        elif r < 0.75 and free:
            o = rng.choice(free)
            holder[o] = p
            sents.append(f"{p} picked up the {o}.")
        elif held and r < 0.9:
            o = rng.choice(held)
            q = rng.choice([x for x in people if x != p])
            holder[o] = q
            sents.append(f"{p} gave the {o} to {q}.")
        elif held:
            o = rng.choice(held)
            del holder[o]
            sents.append(f"{p} dropped the {o}.")
        else:
            place = rng.choice([x for x in STORY_PLACES if x != where.get(p)])
            where[p] = place
            sents.append(f"{p} went to the {place}.")
    return sents, where, holder


def story_doc(rng: random.Random) -> str:
    sents, where, holder = simulate_story(rng, rng.randint(2, 8))
    # the pretraining story states the outcome declaratively; task items ask for it as a question
    ends = [f"Now {p} is in the {place}." for p, place in where.items()]
    ends += [f"Now {h} has the {o}." for o, h in holder.items()]
    rng.shuffle(ends)
    return " ".join(sents + ends[: rng.randint(1, 2)])


def stories_stream(rng: random.Random, facts: Facts, qa_share: float = 0.0) -> Iterator[str]:
    while True:
        yield story_qa(rng) if qa_share and rng.random() < qa_share else story_doc(rng)


# -- concepts -----------------------------------------------------------------------------------


def category_sentence(member: str, category: str) -> str:
    """The canonical statement of category membership."""
    return f"{article(member).capitalize()} {member} is {article(category)} {category}."


def bigger_sentence(big: str, small: str) -> str:
    """The canonical statement of a size comparison."""
    return f"{article(big).capitalize()} {big} is bigger than {article(small)} {small}."


#: size comparisons stated in the text: only between animals at most 2 apart in size order,
#: so ranking four animals usually needs chaining comparisons (transitivity).
SIZE_PAIRS = [
    (SIZE_ORDER[j], SIZE_ORDER[i])
    for i in range(len(SIZE_ORDER))
    for j in range(i + 1, min(i + 3, len(SIZE_ORDER)))
]


def concepts_doc(rng: random.Random) -> str:
    sents = []
    for _ in range(rng.randint(2, 10)):
        if rng.random() < 0.55:
            cat = rng.choice(sorted(CATEGORIES))
            m = rng.choice(CATEGORIES[cat])
            sents.append(category_sentence(m, cat))
        else:
            big, small = rng.choice(SIZE_PAIRS)
            if rng.random() < 0.7:
                sents.append(bigger_sentence(big, small))
            else:
                sents.append(
                    f"{article(small).capitalize()} {small} is smaller than {article(big)} {big}."
                )
    return " ".join(sents)


def concepts_stream(rng: random.Random, facts: Facts, qa_share: float = 0.0) -> Iterator[str]:
    # every canonical statement once first, so the world's corpus holds all of them
    first = [category_sentence(m, c) for c, ms in CATEGORIES.items() for m in ms]
    first += [bigger_sentence(b, s) for b, s in SIZE_PAIRS]
    rng.shuffle(first)
    for i in range(0, len(first), 5):
        yield " ".join(first[i : i + 5])
    while True:
        if qa_share and rng.random() < qa_share:
            yield qa_page(rng, [concepts_qa(rng) for _ in range(rng.randint(1, 3))])
        else:
            yield concepts_doc(rng)


# -- math ---------------------------------------------------------------------------------------


#: operands of one-step arithmetic in worksheets and in the ``arithmetic`` task: 0..ARITH_MAX
ARITH_MAX = 25


def math_line(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:  # frequent: small numbers
        a, b = rng.randint(0, 9), rng.randint(0, 9)
    elif r < 0.8:
        a, b = rng.randint(0, ARITH_MAX), rng.randint(0, ARITH_MAX)
    else:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
    if r < 0.8:
        if rng.random() < 0.6:
            return f"{a} + {b} = {a + b}"
        a, b = max(a, b), min(a, b)
        return f"{a} - {b} = {a - b}"
    # rare: two-step expressions (multi-step arithmetic emerges late)
    c = rng.randint(0, 9)
    if a + b - c >= 0 and rng.random() < 0.5:
        return f"{a} + {b} - {c} = {a + b - c}"
    return f"{a} + {b} + {c} = {a + b + c}"


def word_problem(rng: random.Random) -> str:
    name = rng.choice(STORY_NAMES)
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    thing = rng.choice(["apples", "coins", "books", "cards"])
    return f"{name} has {a} {thing}. {name} gets {b} more {thing}. Now {name} has {a + b} {thing}."


def math_doc(rng: random.Random) -> str:
    """A worksheet (2-16 lines) or 1-3 word problems: lengths vary so length filters bite."""
    if rng.random() < 0.25:
        return " ".join(word_problem(rng) for _ in range(rng.randint(1, 3)))
    return "\n".join(math_line(rng) for _ in range(rng.randint(2, 16)))


def math_stream(rng: random.Random, facts: Facts, qa_share: float = 0.0) -> Iterator[str]:
    while True:
        if qa_share and rng.random() < qa_share:
            yield qa_page(rng, [math_qa(rng) for _ in range(rng.randint(1, 4))])
        else:
            yield math_doc(rng)


# -- code ---------------------------------------------------------------------------------------

VARS = ["a", "b", "c", "x", "y", "n"]


def make_program(rng: random.Random, n_lines: int, loop: bool = False) -> tuple[list[str], dict]:
    """Straight-line integer assignments (optionally one small for-loop); returns lines, env."""
    env: dict[str, int] = {}
    lines: list[str] = []
    for _ in range(n_lines):
        v = rng.choice(VARS[: 3 + n_lines // 2])
        if not env or rng.random() < 0.3:
            val = rng.randint(0, 9)
            lines.append(f"{v} = {val}")
            env[v] = val
            continue
        u = rng.choice(sorted(env))
        op = rng.choice(["+", "+", "-", "*"])
        k = rng.randint(1, 4) if op == "*" else rng.randint(1, 9)
        lines.append(f"{v} = {u} {op} {k}")
        env[v] = env[u] + k if op == "+" else env[u] - k if op == "-" else env[u] * k
    if loop:
        v = rng.choice(sorted(env))
        times, k = rng.randint(2, 3), rng.randint(1, 5)
        lines += [f"for i in range({times}):", f"    {v} = {v} + {k}"]
        env[v] += times * k
    return lines, env


def program_with_output(rng: random.Random) -> str:
    lines, env = make_program(rng, rng.randint(1, 4), loop=rng.random() < 0.3)
    v = rng.choice(sorted(env))
    return "\n".join(lines + [f"print({v})", f"# output: {env[v]}"])


def code_doc(rng: random.Random) -> str:
    """One to three programs, each followed by what it prints."""
    return "\n\n".join(program_with_output(rng) for _ in range(rng.choice([1, 1, 2, 3])))


def code_stream(rng: random.Random, facts: Facts, qa_share: float = 0.0) -> Iterator[str]:
    while True:
        yield code_qa(rng) if qa_share and rng.random() < qa_share else code_doc(rng)


# -- question-answer pages ----------------------------------------------------------------------
# A small share of every domain (``WorldConfig.qa_share``) is written as questions and answers,
# as FAQ pages are on the web: the facts and skills stay the same, the format is the one the
# task items use, so k-shot probes are not entirely foreign to a small model.


def qa_page(rng: random.Random, pairs: list[tuple[str, str]]) -> str:
    """Question-answer pairs in the task items' format, one blank line apart."""
    return "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in pairs)


def wiki_qa(rng: random.Random, facts: Facts) -> tuple[str, str]:
    if rng.random() < 0.3:
        c = rng.choices(facts.countries, weights=facts.country_popularity)[0]
        return f"What is the capital of {c['name']}?", c["capital"]
    p = rng.choices(facts.people, weights=facts.people_popularity)[0]
    if rng.random() < 0.5:
        return f"In which city was {p['name']} born?", p["city"]
    return f"What is the job of {p['name']}?", p["profession"]


def concepts_qa(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        cat = rng.choice(sorted(CATEGORIES))
        m = rng.choice(CATEGORIES[cat])
        return f"What kind of thing is {article(m)} {m}?", cat
    big, small = rng.choice(SIZE_PAIRS)
    pair = [big, small]
    rng.shuffle(pair)
    return f"Which is bigger: {article(pair[0])} {pair[0]} or {article(pair[1])} {pair[1]}?", big


def math_qa(rng: random.Random) -> tuple[str, str]:
    expr, val = math_line(rng).split(" = ")
    return f"What is {expr}?", val


def story_qa(rng: random.Random) -> str:
    sents, where, holder = simulate_story(rng, rng.randint(2, 6))
    if holder and rng.random() < 0.5:
        o = rng.choice(sorted(holder))
        q, a = f"Who has the {o}?", holder[o]
    else:
        p = rng.choice(sorted(where))
        q, a = f"Where is {p}?", f"the {where[p]}"
    return "Story: " + " ".join(sents) + "\n" + qa_page(rng, [(q, a)])


def code_qa(rng: random.Random) -> str:
    lines, env = make_program(rng, rng.randint(1, 4), loop=rng.random() < 0.3)
    v = rng.choice(sorted(env))
    prog = "\n".join(lines + [f"print({v})"])
    return f"Program:\n{prog}\n" + qa_page(rng, [("What does the program print?", str(env[v]))])


STREAMS = {
    "wiki": wiki_stream,
    "stories": stories_stream,
    "concepts": concepts_stream,
    "math": math_stream,
    "code": code_stream,
}
