"""Pairwise proxy evaluation and learning to compare (arXiv 2504.12491)."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from ckpt_toolkit.analysis.pairwise import (
    PairwiseWarning,
    evaluate_pairwise,
    parse_combine,
    write_outputs,
)
from ckpt_toolkit.analysis.pairwise.compare import PairwiseComparator, model_splits, pairs_within
from ckpt_toolkit.analysis.pairwise.core import bootstrap_accuracy, credit_matrix
from ckpt_toolkit.errors import ParameterError

FAST = dict(n_splits=3, n_boot=30, progress=False)


def small_table() -> pd.DataFrame:
    """Five models, a target with a tie (D = E), a proxy with a tie (A = B)."""
    return pd.DataFrame(
        {
            "model": ["A", "B", "C", "D", "E"],
            "kshot": [10, 10, 5, 7, 6],
            "ppl": [2, 1, 3, 4, 5],  # lower is better: inverted below
            "anti": [1, 2, 3, 4, 5],
            "sft:x": [4, 3, 2, 1, 1],
        }
    )


def hand_accuracy(t, p, ties="half", min_gap=0.0):
    """Independent pair-by-pair count (the test's own golden computation)."""
    credit, n = 0.0, 0
    for i, j in itertools.combinations(range(len(t)), 2):
        dt, dp = t[i] - t[j], p[i] - p[j]
        if abs(dt) <= min_gap:
            continue
        if dp == 0:
            if ties == "exclude":
                continue
            credit += 0.5
        elif (dt > 0) == (dp > 0):
            credit += 1
        n += 1
    return credit / n, n


def test_hand_computed_accuracies_with_ties():
    res = evaluate_pairwise(
        small_table(),
        ["sft:x"],
        ["kshot", "ppl", "anti"],
        invert=["ppl"],
        auto_combine=False,
        **FAST,
    )
    acc = res.proxy_accuracy.set_index("proxy")
    # kshot: AB proxy tie (0.5); AC AD BC BD AE BE right (6); CD CE wrong; DE target tie, out
    assert acc.loc["kshot", "n_pairs"] == 9
    assert acc.loc["kshot", "accuracy"] == pytest.approx(6.5 / 9)
    assert acc.loc["kshot", "n_proxy_ties"] == 1
    # inverted ppl (-2, -1, -3, -4, -5): only AB is ordered the wrong way
    assert acc.loc["ppl", "accuracy"] == pytest.approx(8 / 9)
    assert acc.loc["anti", "accuracy"] == 0.0
    assert acc.loc["anti", "error"] == 1.0
    # relative error reduction vs the ppl proxy: (1/9 - 2.5/9) / (1/9) = -1.5
    assert res.summary["ppl_proxy"] == "ppl"
    assert acc.loc["kshot", "rel_error_reduction"] == pytest.approx(-1.5)
    assert acc.loc["ppl", "rel_error_reduction"] == pytest.approx(0.0)
    t = small_table()["sft:x"].to_numpy()
    assert acc.loc["kshot", "accuracy"] == pytest.approx(hand_accuracy(t, [10, 10, 5, 7, 6])[0])
    assert acc.loc["kshot", "ci_low"] <= acc.loc["kshot", "accuracy"] <= acc.loc["kshot", "ci_high"]


def test_tie_options_and_min_gap():
    ex = evaluate_pairwise(
        small_table(), ["sft:x"], ["kshot"], ties="exclude", auto_combine=False, **FAST
    ).proxy_accuracy.iloc[0]
    assert (ex["accuracy"], ex["n_pairs"]) == (pytest.approx(6 / 8), 8)
    gap = evaluate_pairwise(
        small_table(), ["sft:x"], ["kshot"], min_gap=1.0, auto_combine=False, **FAST
    ).proxy_accuracy.iloc[0]
    # |Δt| > 1 leaves AC AD AE BD BE, all ordered right by kshot
    assert (gap["accuracy"], gap["n_pairs"]) == (1.0, 5)
    t = np.array([4, 3, 2, 1, 1.0])
    assert gap["accuracy"] == hand_accuracy(t, [10, 10, 5, 7, 6], min_gap=1.0)[0]


def test_combined_proxies_are_sums_of_minmax_normalised():
    df = small_table()
    res = evaluate_pairwise(df, ["sft:x"], ["kshot", "anti"], combine=["mix=+kshot,-anti"], **FAST)
    k = (df["kshot"] - 5) / 5
    a = (df["anti"] - 1) / 4
    np.testing.assert_allclose(res.table["mix"], k - a)
    np.testing.assert_allclose(res.table["combo:all"], k + a)
    acc = res.proxy_accuracy.set_index("proxy")
    expect = hand_accuracy(df["sft:x"].to_numpy(), (k - a).to_numpy())[0]
    assert acc.loc["mix", "accuracy"] == pytest.approx(expect)
    assert acc.loc["mix", "kind"] == "combined"
    assert parse_combine("c=+0.5*a,-b") == ("c", {"a": 0.5, "b": -1.0})
    with pytest.raises(ParameterError, match="not proxies"):
        evaluate_pairwise(df, ["sft:x"], ["kshot"], combine=["m=+nope"], **FAST)


def test_bootstrap_weights_match_explicit_resampling():
    rng = np.random.default_rng(3)
    t, p = rng.normal(size=7), rng.normal(size=7)
    credit, mask = credit_matrix(t, p)
    idx = rng.integers(0, 7, size=7)
    w = np.bincount(idx, minlength=7).astype(float)[None, :]
    got = bootstrap_accuracy(credit, mask, w)[0]
    assert got == pytest.approx(hand_accuracy(t[idx], p[idx])[0])


def random_table(n=16, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=n)
    return pd.DataFrame(
        {
            "model": [f"m{i}" for i in range(n)],
            "anti": -t,
            "noise": rng.normal(size=n),
            "good": t + rng.normal(scale=0.3, size=n),
            "sft:a": t,
            "sft:b": t + rng.normal(scale=0.5, size=n),
        }
    )


def test_comparator_is_exactly_antisymmetric():
    df = random_table()
    P = df[["anti", "noise", "good"]].to_numpy()
    t = df["sft:b"].to_numpy()
    ii, jj = np.triu_indices(len(df), 1)
    for clf in ("xgboost", "logreg"):
        comp = PairwiseComparator(clf, seed=0).fit(P[:10], t[:10])
        f_ij, f_ji = comp.predict_proba(P, ii, jj), comp.predict_proba(P, jj, ii)
        # (ii < jj is the canonical orientation; the reverse is 1 - it, bit for bit)
        assert np.array_equal(f_ji, 1.0 - f_ij)
        np.testing.assert_allclose(f_ij + f_ji, 1.0, rtol=0, atol=1e-15)
        assert ((f_ij > 0.5) == (f_ji < 0.5)).all()
        imp = comp.importance()
        assert imp.shape == (3,) and imp.sum() == pytest.approx(1.0)


def test_splits_are_by_model():
    splits = model_splits(20, n_splits=20, train_frac=0.6, seed=1)
    assert len(splits) == 20
    for tr, te in splits:
        assert not set(tr) & set(te)
        assert sorted(set(tr) | set(te)) == list(range(20))
        assert len(tr) == 12
        ii, jj = pairs_within(te)
        assert set(ii) | set(jj) <= set(te)
    assert not all(np.array_equal(splits[0][0], s[0]) for s in splits[1:])
    res = evaluate_pairwise(random_table(), ["sft:a"], ["good", "noise"], **FAST)
    for _, g in res.splits.groupby("split"):
        train = set(g.loc[g.side == "train", "model"])
        test = set(g.loc[g.side == "test", "model"])
        assert not train & test and len(train | test) == 16


def test_anticorrelated_proxy_error_one_and_comparator_inverts_it():
    df = random_table(n=20, seed=1)
    res = evaluate_pairwise(df, ["sft:a", "sft:b"], ["anti"], n_splits=5, n_boot=20, progress=False)
    acc = res.proxy_accuracy.set_index(["proxy", "target"])
    assert acc.loc[("anti", "sft:a"), "error"] == 1.0
    comp = res.comparator.set_index(["target", "method"])
    assert comp.loc[("sft:a", "comparator:xgboost"), "accuracy_mean"] >= 0.95
    assert comp.loc[("sft:a", "comparator:logreg"), "accuracy_mean"] >= 0.95
    # the unsupervised proxy re-scored on the same test pairs stays at 0
    assert comp.loc[("sft:a", "proxy:anti"), "accuracy_mean"] == 0.0
    assert comp.loc[("sft:a", "proxy:anti"), "n_splits"] == 5
    # top-1 recall of the best model from the comparator's Borda ranking
    topk = res.topk.set_index(["target", "method", "k"])
    assert topk.loc[("sft:a", "comparator:xgboost", 1), "recall_mean"] == 1.0
    assert topk.loc[("sft:a", "proxy:anti", 1), "recall_mean"] == 0.0
    # transfer matrix holds every (source, target) pair; its diagonal is the comparator
    tr = res.transfer.set_index(["source_target", "target"])
    assert len(tr) == 4
    assert tr.loc[("sft:a", "sft:a"), "accuracy_mean"] == pytest.approx(
        comp.loc[("sft:a", "comparator:xgboost"), "accuracy_mean"]
    )
    # correlations: perfectly anti-correlated
    corr = res.correlations.set_index(["proxy", "target"])
    assert corr.loc[("anti", "sft:a"), "spearman"] == pytest.approx(-1.0)
    assert corr.loc[("anti", "sft:a"), "kendall"] == pytest.approx(-1.0)
    # gap quantiles cover every test pair once per method
    g = res.gap_quantiles[res.gap_quantiles.method == "proxy:anti"]
    g = g[g.target == "sft:a"]
    assert (
        g["n_pairs"].sum()
        == res.comparator.set_index(["target", "method"]).loc[
            ("sft:a", "proxy:anti"), "n_test_pairs_mean"
        ]
        * 5
    )
    assert (g["accuracy"] == 0).all()


def test_importance_finds_the_informative_proxy():
    df = random_table(n=20, seed=2)
    res = evaluate_pairwise(
        df, ["sft:a"], ["noise", "anti"], n_splits=4, n_boot=10, progress=False, transfer=False
    )
    imp = res.importance[res.importance.classifier == "xgboost"].set_index("proxy")
    assert imp.loc["anti", "importance_mean"] > 0.8
    assert imp["importance_mean"].sum() == pytest.approx(1.0)


def test_flags_nan_and_outliers():
    df = random_table(n=12, seed=3)
    df.loc[2, "good"] = np.nan
    df.loc[5, "noise"] = 1e6
    with pytest.warns(PairwiseWarning) as rec:
        res = evaluate_pairwise(df, ["sft:a"], ["good", "noise"], **FAST)
    text = " ".join(str(w.message) for w in rec)
    assert "m2" in text and "excluded" in text and "m5" in text
    flags = res.flags.set_index("model")
    assert flags.loc["m2", "action"] == "excluded" and "NaN" in flags.loc["m2", "reason"]
    assert flags.loc["m5", "action"] == "kept" and flags.loc["m5", "robust_z"] > 5
    assert "m2" not in set(res.table["model"]) and "m5" in set(res.table["model"])
    assert res.summary["n_models_excluded"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res2 = evaluate_pairwise(df, ["sft:a"], ["good", "noise"], drop_flagged=True, **FAST)
    assert "m5" not in set(res2.table["model"])


def test_bad_inputs_raise_clear_errors():
    df = small_table()
    with pytest.raises(ParameterError, match="'nope'"):
        evaluate_pairwise(df, ["sft:x"], ["nope"], **FAST)
    with pytest.raises(ParameterError, match="ties"):
        evaluate_pairwise(df, ["sft:x"], ["kshot"], ties="third", **FAST)
    with pytest.raises(ParameterError, match="invert"):
        evaluate_pairwise(df, ["sft:x"], ["kshot"], invert=["anti"], **FAST)
    for bad, opt in (({"train_frac": 1.5}, "--train-frac"), ({"n_splits": 0}, "--splits"),
                     ({"n_boot": -1}, "--n-boot"), ({"min_gap": -1}, "--min-gap"),
                     ({"z_max": 0}, "--z-max")):  # fmt: skip
        with pytest.raises(ParameterError, match=opt):
            evaluate_pairwise(df, ["sft:x"], ["kshot"], **{**FAST, **bad})


def test_write_outputs(tmp_path):
    res = evaluate_pairwise(random_table(), ["sft:a", "sft:b"], ["good", "noise"], **FAST)
    paths = write_outputs(res, tmp_path)
    for name in (
        "proxy_accuracy",
        "comparator",
        "transfer",
        "gap_quantiles",
        "importance",
        "topk",
        "correlations",
        "flags",
        "summary",
    ):
        assert paths[name].is_file()
    pa = pd.read_csv(tmp_path / "proxy_accuracy.csv")
    assert {"proxy", "target", "accuracy", "error", "n_pairs", "ci_low", "ci_high"} <= set(pa)
    comp = pd.read_csv(tmp_path / "comparator.csv")
    assert {
        "target",
        "source_target",
        "classifier",
        "accuracy_mean",
        "accuracy_sd",
        "n_splits",
    } <= set(comp)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["targets"] == ["sft:a", "sft:b"]


def test_rank_correlations_match_scipy():
    from scipy import stats

    from ckpt_toolkit.analysis.pairwise.core import rank_correlations

    rng = np.random.default_rng(5)
    t = rng.integers(0, 5, size=15).astype(float)  # with ties
    p = t + rng.integers(0, 4, size=15)
    idx = rng.integers(0, 15, size=(8, 15))
    c = rank_correlations(t, p, idx)
    assert c["spearman"] == pytest.approx(stats.spearmanr(t, p)[0])
    assert c["kendall"] == pytest.approx(stats.kendalltau(t, p)[0])
    boots = [stats.kendalltau(t[ix], p[ix])[0] for ix in idx]
    assert c["kendall_ci"][0] == pytest.approx(np.quantile(boots, 0.025))
    assert c["kendall_ci"][1] == pytest.approx(np.quantile(boots, 0.975))


def test_group_col_pairs_only_within_groups():
    # within each size the proxy is perfect; across sizes it is always wrong
    df = pd.DataFrame(
        {
            "model": list("abcdef"),
            "size": [1, 1, 1, 2, 2, 2],
            "p": [10, 11, 12, 0, 1, 2],
            "sft:x": [1, 2, 3, 4, 5, 6],
        }
    )
    flat = evaluate_pairwise(df, ["sft:x"], ["p"], **FAST).proxy_accuracy.iloc[0]
    assert (flat["accuracy"], flat["n_pairs"]) == (pytest.approx(6 / 15), 15)
    res = evaluate_pairwise(df, ["sft:x"], ["p"], group_col="size", **FAST)
    grouped = res.proxy_accuracy.iloc[0]
    assert (grouped["accuracy"], grouped["n_pairs"]) == (1.0, 6)
    comp = res.comparator.set_index("method")
    assert comp.loc["proxy:p", "accuracy_mean"] == 1.0
    assert res.summary["config"]["group_col"] == "size"


# -- issue 12 item 7 / issue 15 item 4: model names, direction, target ties, comparator minimum
def test_target_ties_half_counts_tied_pairs_with_half_credit():
    res = evaluate_pairwise(
        small_table(), ["sft:x"], ["kshot"], target_ties="half", auto_combine=False, **FAST
    )
    acc = res.proxy_accuracy.iloc[0]
    # the 9 valid pairs score 6.5 (see above); the D = E target tie adds one pair worth 0.5
    assert (acc["accuracy"], acc["n_pairs"]) == (pytest.approx(7 / 10), 10)
    assert res.summary["config"]["target_ties"] == "half"
    with pytest.raises(ParameterError, match="target_ties"):
        evaluate_pairwise(small_table(), ["sft:x"], ["kshot"], target_ties="third", **FAST)


def test_comparator_not_fitted_below_the_minimum_and_says_why():
    with pytest.warns(PairwiseWarning, match="not fitted"):
        res = evaluate_pairwise(random_table(n=5), ["sft:a"], ["good", "noise"], **FAST)
    assert res.summary["comparator"]["fitted"] is False
    assert "5 models" in res.summary["comparator"]["reason"]
    assert (res.comparator["kind"] == "proxy").all()  # proxies on the splits, no comparator
    assert res.importance.empty and res.borda.empty
    # 8 models split 5 / 3: the smallest pool the comparator is fitted on
    with warnings.catch_warnings():
        warnings.simplefilter("error", PairwiseWarning)
        res8 = evaluate_pairwise(random_table(n=8), ["sft:a"], ["good", "noise"], **FAST)
    assert res8.summary["comparator"]["fitted"] is True
    assert "comparator:xgboost" in set(res8.comparator["method"])


def test_model_name_column_is_detected_and_never_a_proxy():
    df = random_table(n=10).drop(columns=["model"])
    df.insert(0, "id", np.arange(100, 110))  # numeric: used to become a proxy
    res = evaluate_pairwise(df, ["sft:a"], auto_combine=False, **FAST)
    assert list(res.table["model"]) == [str(i) for i in range(100, 110)]
    assert "id" not in set(res.proxy_accuracy["proxy"])
    assert set(res.proxy_accuracy["proxy"]) == {"anti", "noise", "good"}  # sft:b is a target
    with pytest.raises(ParameterError, match="names the models"):
        evaluate_pairwise(df, ["sft:a"], ["id", "good"], **FAST)
    named = df.rename(columns={"id": "name"})
    res = evaluate_pairwise(named, ["sft:a"], ["good"], **FAST)
    assert res.table["model"].iloc[0] == "100"
    # no name column at all: row numbers, and a warning saying so
    with pytest.warns(PairwiseWarning, match="--model-col"):
        res = evaluate_pairwise(df.drop(columns=["id"]), ["sft:a"], ["good"], **FAST)
    assert res.table["model"].iloc[0] == "row0"


def test_orientation_warnings_never_suggest_flipping_an_oriented_column():
    rng = np.random.default_rng(0)
    t = rng.normal(size=10)
    ppl = np.exp(-t)
    df = pd.DataFrame(
        {"model": [f"m{i}" for i in range(10)], "inv_ppl": 1 / ppl, "1/perplexity": 1 / ppl,
         "lambada_ppl": ppl, "neg_bpb": -t, "sft:a": t}
    )  # fmt: skip
    with pytest.warns(PairwiseWarning) as rec:
        evaluate_pairwise(df, ["sft:a"], auto_combine=False, **FAST)
    text = " | ".join(str(w.message) for w in rec)
    assert "'lambada_ppl' names 'ppl'" in text and "--invert lambada_ppl" in text
    for oriented in ("inv_ppl", "1/perplexity", "neg_bpb"):
        assert f"--invert {oriented}" not in text
    # asking to invert an oriented column warns the other way
    with pytest.warns(PairwiseWarning, match="already oriented") as rec:
        evaluate_pairwise(df, ["sft:a"], ["inv_ppl"], invert=["inv_ppl"], **FAST)
    assert not any("pass --invert" in str(w.message) for w in rec)


def test_direction_comes_from_the_declared_table():
    from ckpt_toolkit.analysis.pairwise import direction
    from ckpt_toolkit.probes.registry import METRICS

    for name, m in METRICS.items():
        assert direction.is_lower_better(name) is (not m.higher_is_better), name
        if not m.higher_is_better:
            assert direction.lower_better_metric_in(f"task_{name}") == name.lower()
    # the disagreement issue 15 found: likelihood_difference is lower-is-better everywhere
    assert direction.is_lower_better("likelihood_difference")
    assert direction.is_perplexity("word_perplexity") and not direction.is_perplexity("bpb")
    assert direction.lower_better_metric_in("kshot_logprob:capitals") is None
    assert direction.lower_better_metric_in("inv_ppl") is None


# -- issue 16 item 3: the ground truth's own signal
def test_ground_truth_signal_matches_a_hand_computation():
    from ckpt_toolkit.analysis.pairwise import MIN_SIGNAL_RATIO, ground_truth_signal

    rows = []
    scores = {"flat": [0.5, 0.6, 0.7], "wide": [0.1, 0.5, 0.9], "nose": [0.2, 0.3, 0.4]}
    stderr = [0.05, 0.05, 0.1]
    for task, vals in scores.items():
        for i, (v, se) in enumerate(zip(vals, stderr)):
            rows.append(dict(checkpoint=f"m{i}", probe="sft", task=task, metric="score",
                             value=v, stderr=None if task == "nose" and i == 1 else se))  # fmt: skip
    rows.append(dict(checkpoint="m0", probe="kshot", task="flat", metric="acc", value=1.0))
    sig = ground_truth_signal(pd.DataFrame(rows)).set_index("target")
    mean_se2 = (0.05**2 + 0.05**2 + 0.1**2) / 3  # 0.005
    # flat: variance (ddof 1) of 0.5, 0.6, 0.7 = 0.01; wide: of 0.1, 0.5, 0.9 = 0.16
    assert sig.loc["sft:flat", "var_between"] == pytest.approx(0.01)
    assert sig.loc["sft:flat", "mean_sq_stderr"] == pytest.approx(mean_se2)
    assert sig.loc["sft:flat", "ratio"] == pytest.approx(2.0)
    assert sig.loc["sft:wide", "ratio"] == pytest.approx(32.0)
    assert MIN_SIGNAL_RATIO == 4
    assert sig.loc["sft:flat", "ground_truth"] == "within noise"
    assert sig.loc["sft:wide", "ground_truth"] == "separates models"
    assert sig.loc["sft:nose", "ground_truth"] == "stderr unknown"  # one stderr missing
    assert sig.loc["sft:flat", "n_models"] == 3
    only2 = ground_truth_signal(pd.DataFrame(rows), models=["m0", "m1"]).set_index("target")
    assert only2.loc["sft:wide", "ratio"] == pytest.approx(0.08 / 0.0025)
    # evaluate_pairwise marks a within-noise target's accuracies as not meaningful
    table = pd.DataFrame({"model": ["m0", "m1", "m2"], "p": [1, 2, 3],
                          "sft:flat": scores["flat"], "sft:wide": scores["wide"]})  # fmt: skip
    res = evaluate_pairwise(table, ["sft:flat", "sft:wide"], ["p"], signal=sig.reset_index(),
                            **FAST)  # fmt: skip
    acc = res.proxy_accuracy.set_index("target")
    assert bool(acc.loc["sft:flat", "meaningful"]) is False
    assert bool(acc.loc["sft:wide", "meaningful"]) is True
    assert res.summary["per_target"]["sft:flat"]["ground_truth"] == "within noise"


# -- large pools: the comparator's training-pair cap and worker threads ----------------------
def test_sample_pairs_is_a_seeded_subset_in_order():
    from ckpt_toolkit.analysis.pairwise.compare import sample_pairs

    ii, jj = pairs_within(np.arange(30))  # 435 pairs
    a = sample_pairs(ii, jj, 100, (0, 1, 2))
    pairs = list(zip(*a))
    assert len(pairs) == len(set(pairs)) == 100
    assert set(pairs) <= set(zip(ii, jj))
    rank = {p: k for k, p in enumerate(zip(ii, jj))}
    assert [rank[p] for p in pairs] == sorted(rank[p] for p in pairs)  # original order kept
    b = sample_pairs(ii, jj, 100, (0, 1, 2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = sample_pairs(ii, jj, 100, (0, 1, 3))
    assert set(zip(*c)) != set(pairs)
    same = sample_pairs(ii, jj, 435, 0)
    assert same[0] is ii and same[1] is jj
    with pytest.raises(ParameterError, match="max_train_pairs"):
        sample_pairs(ii, jj, 0, 0)


def test_comparator_trains_on_at_most_max_pairs():
    df = random_table(n=20)
    P, t = df[["anti", "noise", "good"]].to_numpy(), df["sft:a"].to_numpy()
    assert PairwiseComparator("logreg").fit(P, t).n_train_pairs_ == 190
    assert PairwiseComparator("logreg").fit(P, t, max_pairs=50).n_train_pairs_ == 50


def test_below_the_cap_results_equal_the_uncapped_computation():
    df = random_table(n=16)  # 60/40: 10 train models, 45 training pairs per split
    capped = evaluate_pairwise(df, ["sft:a", "sft:b"], ["anti", "noise", "good"], **FAST)
    at_cap = evaluate_pairwise(
        df, ["sft:a", "sft:b"], ["anti", "noise", "good"], max_train_pairs=45, **FAST
    )
    uncapped = evaluate_pairwise(
        df, ["sft:a", "sft:b"], ["anti", "noise", "good"], max_train_pairs=None, **FAST
    )
    for name, frame in uncapped.frames().items():
        pd.testing.assert_frame_equal(capped.frames()[name], frame, check_exact=True)
        pd.testing.assert_frame_equal(at_cap.frames()[name], frame, check_exact=True)


def test_above_the_cap_results_are_seeded_and_independent_of_threads():
    df = random_table(n=24)  # 60/40: 14 train models, 91 training pairs per split
    proxies = ["anti", "noise", "good"]
    kw = dict(FAST, max_train_pairs=40)  # 3 splits x 2 targets: 6 units on the worker threads
    one = evaluate_pairwise(df, ["sft:a", "sft:b"], proxies, threads=1, **kw)
    two = evaluate_pairwise(df, ["sft:a", "sft:b"], proxies, threads=2, **kw)
    for name, frame in one.frames().items():
        pd.testing.assert_frame_equal(two.frames()[name], frame, check_exact=True)
    assert one.summary["config"]["max_train_pairs"] == 40
    kw = dict(FAST, n_splits=1, max_train_pairs=40, classifier="logreg", baseline=None)
    one = evaluate_pairwise(df, ["sft:b"], proxies, **kw)
    # the fit is the documented one: the split's train models, 40 pairs seeded (seed, split,
    # target index), and it differs from the fit on all 91 pairs
    train = one.splits.loc[one.splits.side == "train", "model"]
    rows = df.set_index("model").loc[train]
    P, t = rows[proxies].to_numpy(), rows["sft:b"].to_numpy()
    expect = PairwiseComparator("logreg", seed=0).fit(P, t, max_pairs=40, pair_seed=(0, 0, 0))
    got = one.importance.set_index("proxy").loc[proxies, "importance_mean"].to_numpy()
    np.testing.assert_allclose(got, expect.importance(), rtol=1e-12)
    full = PairwiseComparator("logreg", seed=0).fit(P, t).importance()
    assert not np.allclose(got, full, rtol=1e-6)


def test_max_train_pairs_and_threads_are_checked():
    df = random_table()
    with pytest.raises(ParameterError, match="max_train_pairs"):
        evaluate_pairwise(df, ["sft:a"], ["good"], max_train_pairs=0, **FAST)
    with pytest.raises(ParameterError, match="threads"):
        evaluate_pairwise(df, ["sft:a"], ["good"], threads="many", **FAST)


def test_gap_quantiles_match_a_pair_by_pair_count():
    df = random_table(n=12)
    res = evaluate_pairwise(df, ["sft:b"], ["noise"], **FAST)
    t, p = df["sft:b"].to_numpy(), df["noise"].to_numpy()
    all_gaps = [abs(t[i] - t[j]) for i, j in itertools.combinations(range(12), 2)]
    edges = np.unique(np.quantile(all_gaps, np.linspace(0, 1, 5)))
    credit: dict[int, list[float]] = {}
    pos = {m: k for k, m in enumerate(df["model"])}
    for _, side in res.splits[res.splits.side == "test"].groupby("split"):
        test = sorted(pos[m] for m in side["model"])
        for i, j in itertools.combinations(test, 2):
            b = int(np.searchsorted(edges[1:-1], abs(t[i] - t[j]), side="left"))
            ok = 0.5 if p[i] == p[j] else float((p[i] > p[j]) == (t[i] > t[j]))
            credit.setdefault(b, []).append(ok)
    got = res.gap_quantiles[res.gap_quantiles.method == "proxy:noise"]
    assert got["quantile"].tolist() == [b + 1 for b in sorted(credit)]
    assert got["n_pairs"].tolist() == [len(credit[b]) for b in sorted(credit)]
    np.testing.assert_allclose(got["accuracy"], [np.mean(credit[b]) for b in sorted(credit)])
