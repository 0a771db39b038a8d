"""Import the real Pythia evals (4 sizes x 27 checkpoints) and check the dynamics analyses
against facts read directly from the JSON files (skips where the data is absent)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats

from ckpt_toolkit.analysis.dynamics import run_dynamics
from ckpt_toolkit.cli import main
from ckpt_toolkit.importers import import_lm_eval
from ckpt_toolkit.store import ResultsStore

SIZES = ["70m", "160m", "410m", "1.4b"]
TPS = 2_097_152


def _json(root, size, step):
    return json.loads(
        (root / f"pythia-{size}" / "zero-shot" / f"{size}_step{step}.json").read_text()
    )


def _run(size):
    return f"pythia-v1.1-{size}"


@pytest.fixture(scope="module")
def pythia_store(pythia_evals, tmp_path_factory):
    store = ResultsStore(tmp_path_factory.mktemp("pythia") / "s.duckdb")
    report = import_lm_eval(pythia_evals, store, progress=False)
    return store, report


@pytest.fixture(scope="module")
def pythia_tables(pythia_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("dyn")
    return run_dynamics(pythia_store[0].to_pandas(), out), out


def test_import_all_sizes(pythia_store, pythia_evals):
    store, report = pythia_store
    df = store.to_pandas()
    assert len(report.files) == 108 and report.rows_written == len(df)
    per_run = df.groupby("run")["checkpoint"].nunique()
    assert per_run.to_dict() == {_run(s): 27 for s in SIZES}
    assert (df["tokens"] == df["step"] * TPS).all()
    params = df.groupby("run")["params"].first()
    assert [params[_run(s)] for s in SIZES] == sorted(params[_run(s)] for s in SIZES)
    assert params[_run("70m")] < params[_run("160m")] < params[_run("410m")] < params[_run("1.4b")]
    assert set(df["shots"]) == {0} and set(df["probe"]) == {"lm-eval"}
    # a value read by hand from one file
    raw = _json(pythia_evals, "410m", 13000)["results"]["arc_easy"]
    row = df[
        (df.checkpoint == "pythia-v1.1-410m@step13000")
        & (df.task == "arc_easy")
        & (df.metric == "acc")
    ].iloc[0]
    assert row["value"] == raw["acc"] and row["stderr"] == raw["acc_stderr"]
    # re-import changes nothing
    n = len(store)
    import_lm_eval(pythia_evals / "pythia-70m", store, progress=False)
    assert len(store) == n


def test_curves_match_the_files(pythia_tables, pythia_evals):
    cv = pythia_tables[0]["curves"]
    # arc_easy acc at the final 1.4b checkpoint, chance-normalised by hand
    acc = _json(pythia_evals, "1.4b", 143000)["results"]["arc_easy"]["acc"]
    pt = cv[(cv.run == _run("1.4b")) & (cv.benchmark == "arc_easy") & (cv.step == 143000)]
    assert pt["value"].iloc[0] == pytest.approx(acc)
    assert pt["norm"].iloc[0] == pytest.approx((acc - 0.25) / 0.75)
    assert pt["tokens"].iloc[0] == 143000 * TPS
    # MMLU = mean over the 57 hendrycksTest subjects, then normalised
    res = _json(pythia_evals, "160m", 33000)["results"]
    subj = [v["acc"] for k, v in res.items() if k.startswith("hendrycksTest-")]
    assert len(subj) == 57
    m = cv[(cv.run == _run("160m")) & (cv.benchmark == "mmlu") & (cv.step == 33000)].iloc[0]
    assert m["value"] == pytest.approx(np.mean(subj)) and m["n_tasks"] == 57
    assert m["norm"] == pytest.approx((np.mean(subj) - 0.25) / 0.75)
    # category curve = mean of its benchmarks' normalised scores
    k = cv[
        (cv.run == _run("160m"))
        & (cv.step == 33000)
        & (cv.level == "benchmark")
        & (cv.category == "knowledge")
    ]
    c = cv[
        (cv.run == _run("160m"))
        & (cv.step == 33000)
        & (cv.level == "category")
        & (cv.benchmark == "knowledge")
    ]
    assert set(k["benchmark"]) == {"arc_easy", "arc_challenge", "sciq", "mmlu"}
    assert c["norm"].iloc[0] == pytest.approx(k["norm"].mean())
    # crows_pairs (category "other") is not a capability curve
    assert not cv["benchmark"].str.startswith("crows").any()


def test_final_size_ordering(pythia_tables, pythia_evals):
    """At the last checkpoint, lambada_openai acc grows with size (read from the files)."""
    finals = {s: _json(pythia_evals, s, 143000)["results"]["lambada_openai"]["acc"] for s in SIZES}
    assert finals["70m"] < finals["160m"] < finals["410m"] < finals["1.4b"]
    cv = pythia_tables[0]["curves"]
    last = cv[(cv.benchmark == "lambada_openai") & (cv.step == 143000)].set_index("run")
    assert [last.loc[_run(s), "value"] for s in SIZES] == pytest.approx([finals[s] for s in SIZES])
    ph = pythia_tables[0]["phases"].set_index(["run", "benchmark"])
    fin = [ph.loc[(_run(s), "lambada_openai"), "final_norm"] for s in SIZES]
    assert fin == sorted(fin)


def test_loss_agreement_by_hand(pythia_tables, pythia_evals):
    steps = sorted(
        int(p.stem.split("step")[1])
        for p in (pythia_evals / "pythia-410m" / "zero-shot").glob("*.json")
    )
    loss, acc = [], []
    for st in steps:
        r = _json(pythia_evals, "410m", st)["results"]
        loss.append(math.log(r["lambada_openai"]["ppl"]))
        acc.append((r["piqa"]["acc"] - 0.5) / 0.5)
    rho = stats.spearmanr(-np.array(loss), acc)[0]
    pairs = [
        (i, j)
        for i, j in itertools.combinations(range(len(steps)), 2)
        if loss[i] != loss[j] and acc[i] != acc[j]
    ]
    disc = sum((loss[j] < loss[i]) != (acc[j] > acc[i]) for i, j in pairs) / len(pairs)
    la = pythia_tables[0]["loss_agreement"]
    row = la[(la.run == _run("410m")) & (la.benchmark == "piqa")].iloc[0]
    assert row["loss_source"] == "task=lambada_openai/metric=ppl"
    assert row["spearman"] == pytest.approx(rho)
    assert row["discordant_share"] == pytest.approx(disc)
    assert row["n_pairs"] == len(pairs)


def test_analysis_tables(pythia_tables):
    t, out = pythia_tables
    for name in (
        "curves",
        "phases",
        "correlations",
        "sibling_prediction",
        "lead_lag",
        "size_agreement",
        "loss_agreement",
        "recommendations",
        "fits",
    ):
        assert (out / f"{name}.csv").is_file() and len(t[name]) > 0
    ph = t["phases"]
    ok = ph[ph["x_50"].notna()]
    assert len(ok) >= 8 and (ok["x_50"] <= ok["x_90"]).all() and (ok["x_90"] <= ok["x_final"]).all()
    cv = t["curves"]
    for r in ok.itertuples():  # the smoothed curve really stays above half the final score
        g = cv[(cv.run == r.run) & (cv.benchmark == r.benchmark) & (cv.level == r.level)]
        assert (g[g.x >= r.x_50]["smooth"] >= 0.5 * r.final_norm - 1e-9).all()
    sa = t["size_agreement"]
    pairs = sa[(sa.benchmark == "lambada_openai") & (sa.normalisation == "fraction")]
    assert len(pairs) == 6 and (pairs["shape_corr"] > 0.8).all()
    assert {"leads", "lags"} <= set(t["lead_lag"]["reason"])
    rec = t["recommendations"]
    assert set(rec["window"]) == {"early", "mid", "late", "final"}
    assert rec["reason"].str.len().gt(0).all()
    fits = t["fits"][t["fits"].status == "ok"]
    assert set(fits["model"]) == {"power_law", "saturating"} and fits["rmse"].notna().all()


def test_trajectory_correlation_by_hand(pythia_tables, pythia_evals):
    files = sorted((pythia_evals / "pythia-1.4b" / "zero-shot").glob("*.json"))
    a, b = [], []
    for f in files:
        r = json.loads(f.read_text())["results"]
        a.append(r["arc_challenge"]["acc"])
        b.append(r["arc_easy"]["acc"])
    corr = t = pythia_tables[0]["correlations"]
    pk = corr[
        (corr.run == _run("1.4b"))
        & (corr.benchmark_a == "arc_challenge")
        & (corr.benchmark_b == "arc_easy")
    ].iloc[0]
    assert pk["spearman"] == pytest.approx(stats.spearmanr(a, b)[0])
    assert pk["pearson"] == pytest.approx(stats.pearsonr(a, b)[0])  # chance shift is affine
    assert pk["spearman"] > 0.5  # the two ARC sets learn together
    assert "(mean)" in set(t["benchmark_a"])


def test_cli_import_and_dynamics(pythia_evals, tmp_path):
    s, out = tmp_path / "s.duckdb", tmp_path / "out"
    assert main(["import", "lm-eval", str(pythia_evals / "pythia-160m"), "--store", str(s)]) == 0
    assert main(["dynamics", "--store", str(s), "--out", str(out), "--x", "step"]) == 0
    for name in ("curves", "phases", "correlations", "loss_agreement", "recommendations"):
        assert (out / f"{name}.csv").stat().st_size > 0
    import pandas as pd

    cv = pd.read_csv(out / "curves.csv")
    assert cv["x"].max() == 143000  # --x step
    assert main(["dynamics", "--store", str(s), "--out", str(out), "--x", "bogus"]) == 2


def _steps(root, size):
    return sorted(
        int(p.stem.split("step")[1]) for p in (root / f"pythia-{size}" / "zero-shot").glob("*.json")
    )


def test_snr_by_hand(pythia_tables, pythia_evals):
    """snr.csv for arc_easy acc: each size's last five checkpoints read from the files."""
    finals, rel = [], []
    for size in SIZES:
        last5 = [_json(pythia_evals, size, s)["results"]["arc_easy"]["acc"] for s in
                 _steps(pythia_evals, size)[-5:]]  # fmt: skip
        finals.append(np.mean(last5))
        rel.append(np.std(last5, ddof=1) / np.mean(last5))
    signal = (max(finals) - min(finals)) / np.mean(finals)
    noise = math.sqrt(np.mean(np.square(rel)))
    snr = pythia_tables[0]["snr"]
    row = snr[(snr.window == "final") & (snr.task == "arc_easy") & (snr.metric == "acc")].iloc[0]
    assert row["signal"] == pytest.approx(signal) and row["noise"] == pytest.approx(noise)
    assert row["snr"] == pytest.approx(signal / noise) and row["n_runs"] == 4
    rec = pythia_tables[0]["recommendations"]
    fin = rec[rec.window == "final"].set_index(["task", "metric"])
    assert fin.loc[("arc_easy", "acc"), "recommended"]
    # LogiQA stays at chance for every size: never recommended, and the row says so
    assert not fin.loc[("logiqa", "acc"), "recommended"]
    assert "chance" in fin.loc[("logiqa", "acc"), "reason"]
    assert not rec[rec.task == "logiqa"]["recommended"].any()
    # LAMBADA declines late in the two smallest models: a warning, not silence
    lam = fin.loc[("lambada_openai", "acc"), "warning"]
    assert _run("70m") in lam and _run("160m") in lam


def test_size_order_and_cross_run_by_hand(pythia_tables, pythia_evals):
    t = pythia_tables[0]
    params = {s: float(p) for s, p in zip(SIZES, [7.0e7, 1.6e8, 4.1e8, 1.4e9])}  # order only
    final = {s: _json(pythia_evals, s, 143000)["results"] for s in SIZES}
    so = t["size_order"].set_index(["task", "metric"])
    for task in ("logiqa", "wsc", "arc_easy"):
        want = stats.spearmanr([params[s] for s in SIZES], [final[s][task]["acc"] for s in SIZES])[
            0
        ]
        assert so.loc[(task, "acc"), "spearman"] == pytest.approx(want)
    # cross-run at the last step: -ln(lambada ppl) vs piqa acc across the four sizes
    loss = [math.log(final[s]["lambada_openai"]["ppl"]) for s in SIZES]
    acc = [final[s]["piqa"]["acc"] for s in SIZES]
    cr = t["cross_run"]
    row = cr[(cr.x == 143000 * TPS) & (cr.task == "piqa") & (cr.metric == "acc")].iloc[0]
    assert (row["loss_task"], row["loss_metric"], row["n_runs"]) == ("lambada_openai", "ppl", 4)
    assert row["spearman"] == pytest.approx(stats.spearmanr(-np.array(loss), acc)[0])
    pairs = list(itertools.combinations(range(4), 2))
    disc = sum((loss[i] < loss[j]) == (acc[i] < acc[j]) for i, j in pairs) / len(pairs)
    assert row["discordant_share"] == pytest.approx(disc)
    # decision accuracy of sciq acc at step 3000 against sciq acc at step 143000
    early = [_json(pythia_evals, s, 3000)["results"]["sciq"]["acc"] for s in SIZES]
    late = [final[s]["sciq"]["acc"] for s in SIZES]
    credit = [
        0.5 if early[i] == early[j] else float((early[i] < early[j]) == (late[i] < late[j]))
        for i, j in pairs
        if late[i] != late[j]
    ]
    da = t["decision_accuracy"]
    r = da[(da.task == "sciq") & (da.metric == "acc") & (da.x == 3000 * TPS)].iloc[0]
    assert r["decision_accuracy"] == pytest.approx(np.mean(credit)) and r["n_pairs"] == len(credit)
    # tables listing runs go by size
    assert list(dict.fromkeys(t["phases"]["run"])) == [_run(s) for s in SIZES]
