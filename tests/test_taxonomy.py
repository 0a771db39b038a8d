"""Capability taxonomy: lookups, chance normalisation, user YAML, probe rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ckpt_toolkit.analysis.taxonomy import annotate, load_taxonomy, normalize_score
from ckpt_toolkit.errors import ParameterError


def test_default_lookups():
    tax = load_taxonomy()
    arc = tax.lookup("arc_challenge")
    assert (arc.category, arc.chance, arc.benchmark) == ("knowledge", 0.25, "arc_challenge")
    assert tax.lookup("piqa").chance == 0.5 and tax.lookup("piqa").category == "commonsense"
    assert tax.lookup("winogrande").chance == 0.5
    assert tax.lookup("logiqa").category == "reasoning_math"
    assert tax.lookup("lambada_openai").chance == 0.0
    mmlu = tax.lookup("hendrycksTest-astronomy")
    assert (mmlu.benchmark, mmlu.category, mmlu.chance) == ("mmlu", "knowledge", 0.25)
    assert tax.lookup("mmlu_anatomy").benchmark == "mmlu"
    assert tax.lookup("crows_pairs_english_age").category == "other"
    unknown = tax.lookup("my_new_task")
    assert unknown.category == "other" and not unknown.known
    # the zoo's capability names map onto the categories
    assert tax.lookup("capitals", "world_knowledge").category == "knowledge"
    assert tax.category_of_capability("math") == "reasoning_math"
    assert tax.category_of_capability("code") == "code"
    assert tax.is_loss_metric("ppl") and not tax.is_loss_metric("acc")


def test_normalize_score_arithmetic():
    # (s - chance) / (1 - chance), computed by hand
    assert normalize_score(0.625, 0.25) == pytest.approx((0.625 - 0.25) / 0.75)
    assert normalize_score(0.5, 0.5) == 0.0
    assert normalize_score(1.0, 0.25) == 1.0
    assert normalize_score(0.4, None) == 0.4
    s = normalize_score(pd.Series([0.25, 0.55]), pd.Series([0.25, np.nan]))
    assert s.tolist() == pytest.approx([0.0, 0.55])


def test_user_yaml_extends_defaults(tmp_path):
    f = tmp_path / "tax.yaml"
    f.write_text(
        "categories: {safety: refusals}\n"
        "benchmarks:\n"
        "  my_qa: {category: knowledge, chance: 0.2}\n"
        "  piqa: {category: commonsense, chance: 0.45}\n"
        "  refusal: {category: safety, chance: 0.0}\n"
    )
    tax = load_taxonomy(f)
    assert tax.lookup("my_qa").chance == 0.2
    assert tax.lookup("piqa").chance == 0.45  # override
    assert tax.lookup("arc_easy").chance == 0.25  # defaults kept
    assert tax.lookup("refusal").category == "safety"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("benchmarks: {x: {category: nope, chance: 0.1}}", "nope"),
        ("benchmarks: {x: {category: code, chance: 1.5}}", "chance"),
        ("benchmarks: {x: {category: code, colour: red}}", "colour"),
        ("benchmarks: [1, 2", "not valid YAML"),
    ],
)
def test_bad_taxonomy_yaml(tmp_path, text, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ParameterError, match=needle):
        load_taxonomy(f)


def test_annotate_probe_rows_use_their_capability_and_chance():
    df = pd.DataFrame(
        [
            dict(
                run="r",
                checkpoint="r@step1",
                probe="kshot",
                task="capitals",
                capability="world_knowledge",
                metric="acc",
                value=0.5,
                provenance=json.dumps({"chance": 0.2}),
            ),
            dict(
                run="r",
                checkpoint="r@step1",
                probe="kshot",
                task="arithmetic",
                capability="math",
                metric="exact_match",
                value=0.1,
                provenance=json.dumps({"chance": 0.0}),
            ),
            dict(
                run="r",
                checkpoint="r@step1",
                probe="ppl",
                task="wiki",
                capability="language_modeling",
                metric="loss",
                value=3.0,
                provenance=None,
            ),
            dict(
                run="r",
                checkpoint="r@step1",
                probe="lm-eval",
                task="piqa",
                capability="commonsense",
                metric="acc",
                value=0.6,
                provenance="{}",
            ),
        ]
    )
    a = annotate(df)
    assert a["category"].tolist() == [
        "knowledge",
        "reasoning_math",
        "language_modeling",
        "commonsense",
    ]
    assert a["chance"].tolist()[:2] == [0.2, 0.0]
    assert a["chance"].iloc[3] == 0.5
    assert a["lower_is_better"].tolist() == [False, False, True, False]


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("hellaswag_val_rc_5shot", "hellaswag"),
        ("hellaswag_val_rc_5shot_len_norm", "hellaswag"),
        ("eval/downstream/winogrande_val_mc_5shot", "winogrande"),
        ("arc_challenge:mc::olmes", "arc_challenge"),
        ("csqa:rc", "csqa"),
        ("c4_en-validation", "c4_en"),
        ("PIQA_test", "piqa"),
        ("arc_easy", "arc_easy"),  # a real name is never cut
        ("mmlu_stem_var", "mmlu_stem"),
    ],
)
def test_normalize_task_name(raw, norm):
    from ckpt_toolkit.analysis.taxonomy import normalize_task_name

    assert normalize_task_name(raw) == norm


@pytest.mark.parametrize(
    "task, category, chance",
    [
        ("hellaswag_val_rc_5shot", "commonsense", 0.25),  # OLMo in-loop evaluator
        ("socialiqa_rc_5shot", "commonsense", 0.333333),
        ("arc_challenge:mc::olmes", "knowledge", 0.25),  # OLMES
        ("boolq_val_mc_5shot_len_norm", "reading_comprehension", 0.5),
        ("lambada", "language_modeling", 0.0),  # BigScience evaluation files
        ("headqa", "knowledge", 0.25),
        ("rte", "reading_comprehension", 0.5),
        ("c4_en-validation", "language_modeling", 0.0),
    ],
)
def test_lookup_normalises_real_task_names(task, category, chance):
    info = load_taxonomy().lookup(task)
    assert info.known and (info.category, info.chance) == (category, chance)
    assert info.benchmark == task  # the stored name is kept: no silent merging of variants


def test_loss_series():
    tax = load_taxonomy()
    assert tax.is_loss_series("lambada", "ppl")
    assert tax.is_loss_series("lambada_openai", "ppl")
    assert not tax.is_loss_series("lambada", "acc")
    assert tax.is_loss_series("c4_en-validation", "CrossEntropyLoss")
    assert tax.is_loss_series("pile-validation", "bpb")
    assert tax.is_loss_series("anything", "ce_loss")
    assert not tax.is_loss_series("arc_easy", "acc_norm")
    assert {"task": "lambada", "metric": "ppl"} in tax.loss_metrics
