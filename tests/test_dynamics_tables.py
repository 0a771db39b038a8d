"""The cross-run dynamics tables (snr, recommendations, cross_run, decision_accuracy,
size_order) and the row filters, on small constructed runs whose noise and orderings are known;
every expected value is computed here, from the constructed numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from helpers import tidy_rows
from scipy import stats

from ckpt_toolkit.analysis.dynamics import (
    cross_run_agreement,
    curves,
    decision_accuracy,
    disagreements_in_words,
    loss_series,
    match_x,
    metric_table,
    run_dynamics,
    select_rows,
    size_order,
    snr,
)
from ckpt_toolkit.errors import ParameterError

STEPS = [100, 200, 400, 800, 1600, 3200, 6400, 12800]
TPS = 1000


def rows(run, task, values, *, params, stderr=0.01, chance=0.25, metric="acc", shots=0,
         probe="kshot", capability="world_knowledge", steps=STEPS):  # fmt: skip
    return tidy_rows(run, task, values, steps=steps, params=params, stderr=stderr, chance=chance,
                     metric=metric, shots=shots, probe=probe, capability=capability,
                     tokens_per_step=TPS)  # fmt: skip


def lambada_ppl(run, values, params, steps=STEPS):
    return rows(run, "lambada_openai", values, params=params, stderr=None, chance=None,
                metric="ppl", probe="lm-eval", capability=None, steps=steps)  # fmt: skip


# three runs; the last five checkpoints carry a known jitter around a known level
JITTER = np.array([0.01, -0.01, 0.02, -0.02, 0.0])
LEVEL = {"run-s": 0.50, "run-m": 0.60, "run-l": 0.70}
SIZE = {"run-s": 1e6, "run-m": 4e6, "run-l": 16e6}


def snr_frame() -> pd.DataFrame:
    out = []
    for run, lvl in LEVEL.items():
        good = np.r_[[0.3, 0.35, 0.4], lvl + JITTER * (1 + list(LEVEL).index(run))]
        chance_task = 0.25 + np.r_[[0.0, 0.0, 0.0], JITTER / 2]  # stays at chance
        flat = 0.6 + np.r_[[0.0, 0.0, 0.0], JITTER * 3] + 0.001 * list(LEVEL).index(run)
        out += rows(run, "good", good, params=SIZE[run])
        out += rows(run, "chancy", chance_task, params=SIZE[run], stderr=0.02)
        out += rows(run, "flat", flat, params=SIZE[run])
    return pd.DataFrame(out)


def test_snr_matches_the_definition():
    df = snr_frame()
    t = snr(metric_table(df), last_n=5)
    row = t[(t.window == "final") & (t.task == "good")].iloc[0]
    finals, rel = [], []
    for i, lvl in enumerate(LEVEL.values()):
        last5 = lvl + JITTER * (1 + i)
        finals.append(last5.mean())
        rel.append(np.std(last5, ddof=1) / last5.mean())
    signal = (max(finals) - min(finals)) / np.mean(finals)
    noise = np.sqrt(np.mean(np.square(rel)))
    assert row["signal"] == pytest.approx(signal)
    assert row["noise"] == pytest.approx(noise)
    assert row["snr"] == pytest.approx(signal / noise)
    assert (row["n_runs"], row["last_n"], row["shots"], row["capability"]) == (
        3,
        5,
        0,
        "knowledge",
    )
    assert {"final", "early", "mid", "late"} <= set(t["window"])
    # last_n = 3 uses only the last three checkpoints
    t3 = snr(metric_table(df), last_n=3)
    r3 = t3[(t3.window == "final") & (t3.task == "good")].iloc[0]
    f3 = [np.mean(lvl + JITTER[-3:] * (1 + i)) for i, lvl in enumerate(LEVEL.values())]
    assert r3["signal"] == pytest.approx((max(f3) - min(f3)) / np.mean(f3))


def test_advice_never_recommends_noise_or_chance():
    t = run_dynamics(snr_frame(), None, x="step")
    rec = t["recommendations"]
    fin = rec[rec.window == "final"].set_index("task")
    assert bool(fin.loc["good", "recommended"]) and fin.loc["good", "rank"] == 1
    assert not fin.loc["chancy", "recommended"]
    assert "within noise of chance" in fin.loc["chancy", "reason"]
    assert not fin.loc["flat", "recommended"]
    assert "below the threshold 2" in fin.loc["flat", "reason"]
    assert rec["reason"].str.len().gt(0).all()


def test_peak_then_decline_is_a_warning_in_the_advice():
    lx = np.log10(STEPS)
    out = []
    for i, run in enumerate(LEVEL):
        peak = 0.25 + (0.5 + 0.1 * i) * np.exp(-((lx - 3.0) ** 2) / 0.3)
        out += rows(run, "fading", np.clip(peak, 0.25, 1), params=SIZE[run], stderr=0.005)
    t = run_dynamics(pd.DataFrame(out), None, x="step")
    ph = t["phases"]
    assert ph[(ph.level == "benchmark")]["peak_then_decline"].all()
    rec = t["recommendations"]
    assert rec[rec.task == "fading"]["warning"].str.contains("peaks then declines").all()


def cross_frame(final_loss, final_acc, extra_x=False) -> pd.DataFrame:
    """Four runs, two checkpoints each (x = 100k and 200k tokens) of lambada ppl and hellaswag."""
    out = []
    runs = ["a", "b", "c", "d"]
    for i, run in enumerate(runs):
        steps = [100, 200]
        if extra_x and run == "d":
            steps = [100, 201]  # off by 0.5%: matched only with a tolerance
        out += lambada_ppl(run, [np.exp(final_loss[i] + 1), np.exp(final_loss[i])], 1e6 * (i + 1),
                           steps=steps)  # fmt: skip
        out += rows(run, "hellaswag", [0.25, final_acc[i]], params=1e6 * (i + 1), steps=steps,
                    capability="commonsense")  # fmt: skip
    return pd.DataFrame(out)


def _disc(loss, acc):
    pairs = [
        (i, j)
        for i, j in itertools.combinations(range(len(loss)), 2)
        if loss[i] != loss[j] and acc[i] != acc[j]
    ]
    bad = sum((loss[i] < loss[j]) == (acc[i] < acc[j]) for i, j in pairs)
    return bad / len(pairs), len(pairs)


def test_cross_run_agreement_by_hand():
    loss = [3.0, 2.5, 2.0, 1.5]
    acc = [0.40, 0.50, 0.30, 0.60]
    df = cross_frame(loss, acc)
    cr = cross_run_agreement(metric_table(df), loss_series(df))
    row = cr[(cr.x == 200_000) & (cr.task == "hellaswag") & (cr.metric == "acc")].iloc[0]
    assert (row["loss_task"], row["loss_metric"], row["n_runs"]) == ("lambada_openai", "ppl", 4)
    assert row["spearman"] == pytest.approx(stats.spearmanr(-np.array(loss), acc)[0])
    share, n = _disc(loss, acc)
    assert row["discordant_share"] == pytest.approx(share) and row["n_pairs"] == n
    # in words, strongest disagreement first
    flipped = cross_frame(loss, acc[::-1])
    words = disagreements_in_words(cross_run_agreement(metric_table(flipped), loss_series(flipped)))
    assert len(words) == 1
    assert (
        "runs with lower perplexity (lambada_openai) scored lower on hellaswag"
        in (words["sentence"].iloc[0])
    )


def test_cross_run_x_matching():
    df = cross_frame([3.0, 2.5, 2.0, 1.5], [0.3, 0.4, 0.5, 0.6], extra_x=True)
    mt, ls = metric_table(df), loss_series(df)
    exact = cross_run_agreement(mt, ls)
    assert exact[exact.x == 200_000]["n_runs"].max() == 3  # run d sits at 201k
    tol = cross_run_agreement(mt, ls, x_tolerance=0.01)
    assert tol[tol.x == 200_000]["n_runs"].max() == 4
    assert list(match_x(pd.Series([0.0, 100.0, 100.5, 102.0]), 0.01)) == [0, 100, 100, 102]


def test_decision_accuracy_by_hand():
    # early ranking of hellaswag vs its own final ranking; run c ties run a early
    early = {"a": 0.30, "b": 0.40, "c": 0.30, "d": 0.20}
    final = {"a": 0.50, "b": 0.70, "c": 0.60, "d": 0.55}
    out = []
    for i, run in enumerate(early):
        out += rows(run, "hellaswag", [early[run], final[run]], params=1e6 * (i + 1),
                    steps=[100, 200], capability="commonsense")  # fmt: skip
        out += lambada_ppl(run, [20.0 - i, 10.0 - i], 1e6 * (i + 1), steps=[100, 200])
    df = pd.DataFrame(out)
    mt, ls = metric_table(df), loss_series(df)
    da = decision_accuracy(mt, ls)
    row = da[(da.task == "hellaswag") & (da.x == 100_000)].iloc[0]
    credit = 0.0
    pairs = list(itertools.combinations(early, 2))
    for p, q in pairs:
        de, dt = early[p] - early[q], final[p] - final[q]
        credit += 0.5 if de == 0 else float(np.sign(de) == np.sign(dt))
    assert row["n_pairs"] == len(pairs) == 6
    assert row["decision_accuracy"] == pytest.approx(credit / 6)
    assert row["target_x"] == 200_000 and row["target_metric"] == "acc"
    at_end = da[(da.task == "hellaswag") & (da.x == 200_000)].iloc[0]
    assert at_end["decision_accuracy"] == 1.0
    # an explicit target: lambada ppl (lower is better) decides which run is best
    tgt = decision_accuracy(mt, ls, target="lambada_openai:ppl")
    r = tgt[(tgt.task == "hellaswag") & (tgt.x == 200_000)].iloc[0]
    ppl_final = {run: 10.0 - i for i, run in enumerate(early)}
    agree = sum(
        np.sign(final[p] - final[q]) == np.sign(ppl_final[q] - ppl_final[p]) for p, q in pairs
    )
    assert r["decision_accuracy"] == pytest.approx(agree / 6)
    assert (r["target_task"], r["target_metric"]) == ("lambada_openai", "ppl")
    with pytest.raises(ParameterError, match="--target"):
        decision_accuracy(mt, ls, target="nosuch:acc")
    with pytest.raises(ParameterError, match="TASK:METRIC"):
        decision_accuracy(mt, ls, target="hellaswag")


def test_size_order_by_hand():
    finals = {"s": (1e6, 0.40), "m": (3e6, 0.35), "l": (9e6, 0.55), "xl": (27e6, 0.60)}
    out = []
    for run, (p, v) in finals.items():
        out += rows(run, "arc_easy", [0.25, v], params=p, steps=[100, 200])
    so = size_order(metric_table(pd.DataFrame(out)))
    row = so[so.task == "arc_easy"].iloc[0]
    want = stats.spearmanr([p for p, _ in finals.values()], [v for _, v in finals.values()])[0]
    assert row["spearman"] == pytest.approx(want) and row["n_runs"] == 4
    assert (row["smallest_run"], row["largest_run"], row["best_run"]) == ("s", "xl", "xl")


def test_shot_settings_are_never_mixed():
    out = []
    for run in ("r1", "r2"):
        out += rows(run, "capitals", [0.3, 0.4, 0.5], params=1e6, shots=0, steps=[1, 2, 4])
        out += rows(run, "capitals", [0.5, 0.6, 0.7], params=1e6, shots=5, steps=[1, 2, 4])
        out += rows(run, "rivers", [0.4, 0.4, 0.4], params=1e6, shots=5, steps=[1, 2, 4])
    cv = curves(pd.DataFrame(out), x="step")
    cats = cv[cv.level == "category"]
    assert set(cats["benchmark"]) == {"knowledge@0shot", "knowledge@5shot"}
    k5 = cats[(cats.benchmark == "knowledge@5shot") & (cats.run == "r1") & (cats.step == 4)].iloc[0]
    assert k5["n_tasks"] == 2
    assert k5["norm"] == pytest.approx(np.mean([(0.7 - 0.25) / 0.75, (0.4 - 0.25) / 0.75]))
    k0 = cats[(cats.benchmark == "knowledge@0shot") & (cats.run == "r1") & (cats.step == 4)].iloc[0]
    assert k0["n_tasks"] == 1 and k0["norm"] == pytest.approx((0.5 - 0.25) / 0.75)
    bench = set(cv[cv.level == "benchmark"]["benchmark"])
    assert bench == {"capitals@0shot", "capitals@5shot", "rivers"}


def test_row_filters():
    df = pd.concat(
        [snr_frame(), cross_frame([3.0, 2.5, 2.0, 1.5], [0.3, 0.4, 0.5, 0.6])], ignore_index=True
    )
    assert set(select_rows(df, runs="run-*")["run"]) == set(LEVEL)
    assert set(select_rows(df, runs=["a", "run-s"])["run"]) == {"a", "run-s"}
    sel = select_rows(df, tasks="hell*")
    assert set(sel["task"]) == {"hellaswag", "lambada_openai"}  # loss rows are kept
    with pytest.raises(ParameterError, match="--runs"):
        select_rows(df, runs="nope-*")
    with pytest.raises(ParameterError, match="--shots"):
        select_rows(df, shots=5)
    with pytest.raises(ParameterError, match="--tasks"):
        select_rows(df, tasks="nope")
    t = run_dynamics(df, None, x="step", runs="run-*")
    assert set(t["snr"]["task"]) == {"good", "chancy", "flat"}


def test_tables_list_runs_by_size_then_name():
    out = []
    for run, p in (("zeta", 1e6), ("alpha", 9e6), ("beta", 9e6), ("mid", 3e6)):
        out += rows(run, "capitals", [0.3, 0.4, 0.5, 0.6], params=p, steps=[1, 2, 4, 8])
    t = run_dynamics(pd.DataFrame(out), None, x="step")
    ph = t["phases"]
    order = list(dict.fromkeys(ph["run"]))
    assert order == ["zeta", "mid", "alpha", "beta"]


def test_cli_filters_and_bad_options(tmp_path):
    from ckpt_toolkit.cli import main
    from ckpt_toolkit.store import ResultsStore

    s = tmp_path / "s.duckdb"
    ResultsStore(s).upsert(snr_frame())
    out = tmp_path / "out"
    assert main(["dynamics", "--store", str(s), "--out", str(out), "--x", "step",
                 "--runs", "run-s", "--runs", "run-m", "--last-n", "3"]) == 0  # fmt: skip
    snr_csv = pd.read_csv(out / "snr.csv")
    assert set(snr_csv["n_runs"]) == {2} and set(snr_csv["last_n"]) == {3}
    for name in ("cross_run", "decision_accuracy", "size_order", "recommendations"):
        assert (out / f"{name}.csv").is_file()
    base = ["dynamics", "--store", str(s), "--out", str(out)]
    assert main([*base, "--last-n", "1"]) == 2
    assert main([*base, "--target", "justatask"]) == 2
    assert main([*base, "--runs", "nope"]) == 2


def test_lead_lag_with_a_curve_learned_at_step_zero_warns_nothing():
    """x_50 = 0 (a curve already at half its final score at initialisation) used to go through
    np.log and print "divide by zero encountered in log" into the dynamics report."""
    import warnings

    from ckpt_toolkit.analysis.dynamics import lead_lag

    ph = pd.DataFrame(
        dict(
            run=["r", "r", "q", "q"],
            level="category",
            category=["knowledge", "code", "knowledge", "code"],
            x_50=[0.0, 1000.0, 10.0, 3000.0],
            x_90=[100.0, 2000.0, 100.0, 4000.0],
            emergence_x=np.nan,
            final_norm=0.5,
            status="ok",
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ll = lead_lag(ph)
    allrows = ll[ll.run == "(all)"].set_index("category")
    assert allrows.loc["knowledge", "x_50"] == np.median([0.0, 10.0])
    assert allrows.loc["knowledge", "reason"] == "leads" and allrows.loc["code", "reason"] == "lags"


def test_overview_tables_by_size_and_shots():
    from ckpt_toolkit.reports import summaries as S

    out = []
    for run, p in (("zeta", 1e6), ("alpha", 9e6), ("mid", 3e6)):
        out += rows(run, "capitals", [0.3, 0.5], params=p, steps=[1, 2], shots=0)
        out += rows(run, "capitals", [0.4, 0.7], params=p, steps=[1, 2], shots=5)
    df = pd.DataFrame(out)
    cats = S.category_curves(S.score_rows(df))
    assert set(cats["category"]) == {"knowledge@0shot", "knowledge@5shot"}
    fin = S.final_by_size(cats, "step")
    assert list(fin["run"]) == ["zeta", "mid", "alpha"]
    assert fin.set_index("run").loc["mid", "knowledge@5shot"] == pytest.approx((0.7 - 0.25) / 0.75)
    assert S.runs_by_size(df) == ["zeta", "mid", "alpha"]


def test_rank_helpers_match_scipy():
    from scipy.stats import rankdata, spearmanr

    from ckpt_toolkit.analysis.dynamics import pair_counts
    from ckpt_toolkit.analysis.dynamics.pairs import average_ranks, spearman

    rng = np.random.default_rng(1)
    for _ in range(50):
        a = rng.integers(0, 4, 9).astype(float)
        b = rng.normal(size=9)
        assert average_ranks(a) == pytest.approx(rankdata(a))
        assert spearman(a, b) == pytest.approx(spearmanr(a, b)[0])
        pc = pair_counts(a, b)
        conc = sum(
            (a[i] - a[j]) * (b[i] - b[j]) > 0 for i, j in itertools.combinations(range(9), 2)
        )
        ties = sum(a[i] == a[j] for i, j in itertools.combinations(range(9), 2))
        assert pc.concordant == conc and pc.ties_a + pc.ties_both == ties and pc.n_pairs == 36
