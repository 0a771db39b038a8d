"""The built-in world: determinism, task schema, disjoint splits, answers derivable from the
pretraining text (checked independently of the generator), mixture weights."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from ckpt_toolkit.errors import ParameterError
from ckpt_toolkit.tasks import load_tasks
from ckpt_toolkit.world import CAPABILITIES, build_world

SMALL = {
    "n_countries": 12,
    "n_people": 20,
    "corpus_chars": 150_000,
    "heldout_docs": 5,
    "items": {"train": 20, "validation": 8, "test": 20},
}


@pytest.fixture(scope="module")
def world():
    return build_world(3, SMALL)


@pytest.fixture(scope="module")
def written(world, tmp_path_factory):
    return world.write(tmp_path_factory.mktemp("world") / "world")


@pytest.fixture(scope="module")
def corpus_text(written) -> str:
    lines = (written / "corpus.jsonl").read_text().splitlines()
    return "\n".join(json.loads(line)["text"] for line in lines)


def _files(d):
    return {
        p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()
    }


def test_same_seed_same_world_bytes(written, tmp_path):
    again = build_world(3, SMALL).write(tmp_path / "w")
    assert _files(again) == _files(written)
    other = build_world(4, SMALL)
    assert other.facts.countries != build_world(3, SMALL).facts.countries


def test_task_files_schema_splits_and_capabilities(written):
    tasks = load_tasks(written / "tasks")
    assert set(tasks) == set(CAPABILITIES)
    per_cap = Counter(items[0].capability for items in tasks.values())
    for cap in ("world_knowledge", "reading_comprehension", "commonsense", "math", "code"):
        assert per_cap[cap] >= 2, cap
    kinds = set()
    for name, items in tasks.items():
        splits = {s: [i for i in items if i.split == s] for s in ("train", "validation", "test")}
        assert all(splits.values()), f"{name} lacks a split"
        # disjoint: no fact / expression / program / story is in two splits
        keys = {s: {i.meta["key"] for i in its} for s, its in splits.items()}
        ctxs = {
            s: {i.context for i in its if i.meta["key"] == i.context} for s, its in splits.items()
        }
        for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
            assert not keys[a] & keys[b], (name, a, b)
            assert not ctxs[a] & ctxs[b]
        for it in items:
            if it.is_multiple_choice:
                assert len(it.choices) == 4 and len(set(it.choices)) == 4
                kinds.add("mc")
            else:
                assert isinstance(it.gold, str) and it.gold.strip()
                kinds.add("gen")
            # questions, not the declarative pretraining format
            assert "Question:" in it.context and it.context.endswith("Answer:")
    assert kinds == {"mc", "gen"}


def _fact(it) -> str:
    """The fact an item asks about, recovered from its text (not from the generator's key)."""
    if m := re.search(r"What is ([\d +-]+)\?", it.context):
        terms = re.split(r" ([+-]) ", m.group(1))
        if len(terms) == 3 and terms[1] == "+":  # a + b is b + a
            return " + ".join(sorted(terms[::2], key=int))
        return m.group(1)
    for pat in (
        r"capital of (\w+)\?",
        r"which country is (\w+)\?",
        r"was (\w+ \w+) born",
        r"job of (\w+ \w+)\?",
        r"kind of thing is an? (\w+)\?",
    ):
        if m := re.search(pat, it.context):
            return m.group(1)
    if "Which of these is" in it.context:
        return it.answer.strip()
    return it.context


def test_no_test_fact_leaks_into_sft_training(written):
    """SFT trains on every train item of a capability: no test fact may be among them, in any
    task of that capability, and no test answer may be a choice of a train item (a distractor
    that SFT teaches to avoid)."""
    tasks = load_tasks(written / "tasks")
    by_cap: dict[str, list] = {}
    for items in tasks.values():
        by_cap.setdefault(items[0].capability, []).extend(items)
    for cap, items in by_cap.items():
        train = [i for i in items if i.split == "train"]
        test = [i for i in items if i.split == "test"]
        train_facts = {(i.task, _fact(i)) for i in train}
        leaked = [i.id for i in test if (i.task, _fact(i)) in train_facts]
        assert not leaked, (cap, leaked[:5])
        text: dict[str, str] = {}
        for i in train:
            text[i.task] = text.get(i.task, "") + i.context + " ".join(i.choices or [i.gold])
        for it in test:
            train_text = text[it.task]  # other tasks may name the same word for another fact
            if it.task in ("capitals", "birthplaces", "professions", "category"):
                # the entity asked about never appears in a training item of its task
                assert not re.search(rf"\b{re.escape(_fact(it))}\b", train_text), (cap, it.id)
            if it.task == "capitals" or it.context.startswith("Question: Which of these"):
                assert not re.search(rf"\b{re.escape(it.answer.strip())}\b", train_text), it.id


def test_generated_test_splits_are_large_by_default():
    from ckpt_toolkit.world import WorldConfig

    items = WorldConfig().items
    # one SFT accuracy over n items has stderr <= sqrt(0.25 / n) <= 0.02 from n = 625
    assert items["test"] >= 625 and items["train"] >= 100


def test_heldout_and_world_json(written):
    desc = json.loads((written / "world.json").read_text())
    assert desc["seed"] == 3
    assert abs(sum(desc["domains"].values()) - 1) < 1e-9
    for domain in desc["domains"]:
        lines = (written / "heldout" / f"{domain}.jsonl").read_text().splitlines()
        assert len(lines) == 5 and all(json.loads(x)["text"] for x in lines)


def test_knowledge_answers_are_stated_in_the_corpus(written, corpus_text):
    tasks = load_tasks(written / "tasks")
    n_city_items = n_stated = 0
    for it in tasks["capitals"]:
        if m := re.search(r"which country is (\w+)\?", it.context):
            # a city's country: stated as "<city> is a city in <country>." or, for a capital,
            # as "The capital of <country> is <city>."
            city = m.group(1)
            stated = set(re.findall(rf"\b{city} is a city in (\w+)\.", corpus_text))
            stated |= set(re.findall(rf"capital of (\w+) is {city}\.", corpus_text))
            stated |= set(re.findall(rf"\b{city} is in (\w+)\.", corpus_text))
            assert stated <= {it.answer.strip()}, it.id  # never contradicted
            n_city_items += 1
            n_stated += bool(stated)
            continue
        country = re.search(r"capital of (\w+)\?", it.context).group(1)
        stated = set(re.findall(rf"capital of {country} is (\w+)\.", corpus_text))
        assert stated == {it.answer.strip()}
    assert n_city_items >= len(tasks["capitals"]) // 2
    # a small corpus need not state every non-capital city (articles pick 1-3 extras)
    assert n_stated >= 0.9 * n_city_items, (n_stated, n_city_items)
    for it in tasks["birthplaces"]:
        name = re.search(r"was (\w+ \w+) born", it.context).group(1)
        stated = set(re.findall(rf"{name} was born in (\w+)\.", corpus_text))
        assert stated == {it.answer.strip()}
    for it in tasks["professions"]:
        name = re.search(r"job of (\w+ \w+)\?", it.context).group(1)
        stated = set(re.findall(rf"{name} works as an? (\w+)\.", corpus_text))
        assert stated == {it.answer.strip()}
    for it in tasks["category"]:
        if m := re.search(r"What kind of thing is an? (\w+)\?", it.context):
            stated = set(re.findall(rf"An? {m.group(1)} is an? (\w+)\.", corpus_text))
            assert stated == {it.answer.strip()}
            continue
        cat, negated = re.search(r"Which of these is an? (\w+)\?", it.context), False
        if cat is None:  # "Which of these is not a C?": the member of another category
            cat, negated = re.search(r"Which of these is not an? (\w+)\?", it.context), True
        members = set(re.findall(rf"An? (\w+) is an? {cat.group(1)}\.", corpus_text))
        is_member = [c.strip() in members for c in it.choices]
        assert is_member == [(i == it.gold) != negated for i in range(4)], it.id


def test_biggest_follows_from_stated_comparisons(written, corpus_text):
    bigger = set(re.findall(r"An? (\w+) is bigger than an? (\w+)\.", corpus_text))
    bigger |= {(b, s) for s, b in re.findall(r"An? (\w+) is smaller than an? (\w+)\.", corpus_text)}
    closure = set(bigger)
    while True:
        new = {(a, d) for a, b in closure for c, d in closure if b == c} - closure
        if not new:
            break
        closure |= new
    for it in load_tasks(written / "tasks")["biggest"]:
        gold = it.answer.strip()
        for c in it.choices:
            if c.strip() != gold:
                assert (gold, c.strip()) in closure, it.context


def _simulate(story: str):
    where, holder = {}, {}
    for s in re.findall(r"[^.]+\.", story):
        s = s.strip()
        if m := re.fullmatch(r"(\w+) went to the (\w+)\.", s):
            where[m[1]] = m[2]
        elif m := re.fullmatch(r"(\w+) picked up the (\w+)\.", s):
            holder[m[2]] = m[1]
        elif m := re.fullmatch(r"(\w+) gave the (\w+) to (\w+)\.", s):
            holder[m[2]] = m[3]
        elif m := re.fullmatch(r"(\w+) dropped the (\w+)\.", s):
            holder.pop(m[2])
        else:
            raise AssertionError(f"unparsed story sentence {s!r}")
    return where, holder


def test_reading_comprehension_answers_follow_from_the_story(written):
    tasks = load_tasks(written / "tasks")
    for it in tasks["where_is"]:
        story = it.context.split("\n")[0].removeprefix("Story: ")
        person = re.search(r"Where is (\w+)\?", it.context).group(1)
        assert it.answer.strip() == "the " + _simulate(story)[0][person]
    for it in tasks["who_has"]:
        story = it.context.split("\n")[0].removeprefix("Story: ")
        obj = re.search(r"Who has the (\w+)\?", it.context).group(1)
        assert it.gold == _simulate(story)[1][obj]


def test_math_and_code_answers_are_computed(written):
    tasks = load_tasks(written / "tasks")
    for name in ("arithmetic", "multistep"):
        for it in tasks[name]:
            expr = re.search(r"What is ([\d +-]+)\?", it.context).group(1)
            assert int(it.answer) == eval(expr)  # noqa: S307 - digits and +/- only
    for it in tasks["code_output"]:
        prog = it.context.split("Program:\n")[1].split("\nQuestion:")[0]
        lines = prog.splitlines()
        env: dict = {}
        exec("\n".join(lines[:-1]), {}, env)  # noqa: S102 - generated assignments only
        var = re.fullmatch(r"print\((\w+)\)", lines[-1]).group(1)
        assert it.gold == str(env[var])
    for it in tasks["code_value"]:
        prog = it.context.split("Program:\n")[1].split("\nQuestion:")[0]
        env = {}
        exec(prog, {}, env)  # noqa: S102
        var = re.search(r"value of (\w+) at the end", it.context).group(1)
        assert int(it.answer) == env[var]


def test_mixture_weights_length_filter_and_tags(world):
    weights = {"wiki": 0.5, "math": 0.3, "code": 0.2}
    docs = world.corpus(weights=weights, total_chars=200_000)
    chars = Counter()
    for domain, text in docs:
        chars[domain] += len(text)
    total = sum(chars.values())
    assert set(chars) == set(weights)
    for d, w in weights.items():
        assert abs(chars[d] / total - w) < 0.01, (d, chars[d] / total)
    filtered = world.corpus(total_chars=100_000, length_filter=150, domain_tags=True)
    assert all(len(t) >= 150 + len(f"[{d}] ") for d, t in filtered)
    assert all(t.startswith(f"[{d}] ") for d, t in filtered)
    with pytest.raises(ParameterError, match="unknown domain"):
        world.corpus(weights={"web": 1.0})


def test_shared_prefix_of_domain_streams(world):
    # the first documents of a domain do not depend on the mixture drawing on them
    a = [t for d, t in world.corpus(weights={"code": 1.0}, total_chars=5_000)]
    b = [
        t
        for d, t in world.corpus(weights={"code": 0.5, "math": 0.5}, total_chars=10_000)
        if d == "code"
    ]
    assert sorted(a) == sorted(b)
