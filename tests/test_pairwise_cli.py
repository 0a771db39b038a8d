"""`ckpt pairwise` on a CSV and on a store; the per-model table built from store rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ckpt_toolkit.analysis.pairwise import model_table_from_store, summary_proxies
from ckpt_toolkit.cli import main
from ckpt_toolkit.store import ResultsStore


def test_cli_on_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 12
    t = rng.normal(size=n)
    df = pd.DataFrame(
        {
            "model": [f"m{i}" for i in range(n)],
            "ppl": np.exp(-t * 0.1 + rng.normal(scale=0.05, size=n)),
            "kshot": t + rng.normal(scale=0.3, size=n),
            "sft:a": t,
            "sft:b": t + rng.normal(scale=0.4, size=n),
        }
    )
    csv = tmp_path / "models.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "out"
    rc = main(
        [
            "pairwise",
            "--table",
            str(csv),
            "--targets",
            "sft:a,sft:b",
            "--proxies",
            "ppl,kshot",
            "--invert",
            "ppl",
            "--combine",
            "mix=+ppl,+kshot",
            "--splits",
            "3",
            "--n-boot",
            "20",
            "--classifier",
            "logreg",
            "--baseline",
            "none",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    acc = pd.read_csv(out / "proxy_accuracy.csv").set_index(["proxy", "target"])
    # golden: count agreeing pairs directly
    good = sum(
        (df["kshot"][i] > df["kshot"][j]) == (df["sft:b"][i] > df["sft:b"][j])
        for i in range(n)
        for j in range(i + 1, n)
    )
    assert acc.loc[("kshot", "sft:b"), "accuracy"] == pytest.approx(good / (n * (n - 1) / 2))
    assert ("mix", "sft:a") in acc.index and ("combo:all", "sft:a") in acc.index
    comp = pd.read_csv(out / "comparator.csv")
    assert set(comp["classifier"]) == {"logreg", "none"}
    assert (comp.loc[comp.kind == "comparator", "n_splits"] == 3).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ppl_proxy"] == "ppl" and summary["config"]["invert"] == ["ppl"]
    for f in (
        "transfer.csv",
        "gap_quantiles.csv",
        "importance.csv",
        "topk.csv",
        "correlations.csv",
        "flags.csv",
    ):
        assert (out / f).is_file()
    # a store given for every command in a --config file yields to an explicit --table
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"store: {tmp_path / 'unused.duckdb'}\n")
    args = ["--config", str(cfg), "pairwise", "--table", str(csv), "--targets", "sft:a"]
    assert main(args + ["--splits", "2", "--n-boot", "5", "--out", str(tmp_path / "o2")]) == 0
    assert main(["pairwise", "--table", str(tmp_path / "nope.csv"), "--out", str(out)]) == 2
    assert main(["pairwise", "--table", str(csv), "--targets", "sft:zz", "--out", str(out)]) == 2


def store_rows() -> list[dict]:
    rows = []
    for r in range(5):
        for step in (10, 20):
            ck = dict(run=f"r{r}", checkpoint=f"r{r}@step{step}", step=step, tokens=step * 100)
            q = r + step / 10  # quality
            for dom, base in (("wiki", 10.0), ("code", 20.0)):
                rows.append(dict(ck, probe="ppl", task=dom, metric="ppl", value=base / q))
                rows.append(dict(ck, probe="ppl", task=dom, metric="bpb", value=2.0 / q))
            rows.append(dict(ck, probe="sc_ppl", task="wiki", metric="sc_ppl", value=30 / q))
            for task, cap in (("capitals", "knowledge"), ("rivers", "knowledge"), ("sums", "math")):
                for shots in (0, 3):
                    rows.append(
                        dict(
                            ck,
                            probe="kshot",
                            task=task,
                            capability=cap,
                            metric="acc",
                            value=0.1 * q + 0.01 * shots,
                            shots=shots,
                        )
                    )
                    rows.append(
                        dict(
                            ck,
                            probe="kshot",
                            task=task,
                            capability=cap,
                            metric="gold_logprob",
                            value=-5 / q,
                            shots=shots,
                        )
                    )
            for task in ("knowledge", "math"):
                rows.append(
                    dict(
                        ck,
                        probe="sft",
                        task=task,
                        metric="score",
                        value=0.05 * q + (r % 2 if task == "knowledge" else 0),
                        spec_hash="abc",
                    )
                )
                rows.append(
                    dict(
                        ck,
                        probe="sft",
                        task=f"{task}/d1",
                        metric="acc",
                        value=0.1 * q,
                        spec_hash="abc",
                    )
                )
    return rows


def test_model_table_from_store():
    df = pd.DataFrame(store_rows())
    tab = model_table_from_store(df, pool="all")
    assert len(tab) == 10
    row = tab.set_index("model").loc["r2@step20"]
    q = 4.0
    assert row["inv_ppl:wiki"] == pytest.approx(q / 10)
    assert row["inv_ppl"] == pytest.approx(math.exp(-(math.log(10 / q) + math.log(20 / q)) / 2))
    assert row["neg_bpb"] == pytest.approx(-2 / q)
    assert row["inv_sc_ppl"] == pytest.approx(q / 30)
    assert row["kshot_acc:capitals"] == pytest.approx(0.1 * q + 0.03)  # largest shot count
    assert row["cap_kshot_acc:knowledge"] == pytest.approx(0.1 * q + 0.03)
    assert row["kshot_logprob"] == pytest.approx(-5 / q)
    assert row["sft:math"] == pytest.approx(0.05 * q)
    assert row["sft:math/d1"] == pytest.approx(0.1 * q)
    final = model_table_from_store(df, pool="final")
    assert sorted(final["model"]) == [f"r{r}@step20" for r in range(5)]
    assert "inv_ppl" in summary_proxies(final) and "sft:math" not in summary_proxies(final)
    zero = model_table_from_store(df, pool="all", shots=0).set_index("model")
    assert zero.loc["r2@step20", "kshot_acc:capitals"] == pytest.approx(0.1 * q)


def test_cli_on_store(tmp_path):
    st = ResultsStore(tmp_path / "s.duckdb")
    st.upsert(store_rows())
    out = tmp_path / "o"
    rc = main(
        [
            "pairwise",
            "--store",
            str(st.path),
            "--pool",
            "all",
            "--splits",
            "2",
            "--n-boot",
            "10",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    acc = pd.read_csv(out / "proxy_accuracy.csv")
    assert set(acc["target"]) == {"sft:knowledge", "sft:math"}
    assert "inv_ppl" in set(acc["proxy"])
    # within the pool, inv_ppl orders sft:math perfectly (both increase with quality q)
    a = acc.set_index(["proxy", "target"]).loc[("inv_ppl", "sft:math")]
    assert a["accuracy"] == 1.0


# -- one input path: `ckpt pairwise --store`, `ckpt demo` and the proxies notebook ----------
def _run_notebook_analysis(store_path, **params):
    """The proxies notebook's parameter and analysis cells, run in-process (no kernel)."""
    import nbformat

    from ckpt_toolkit.reports import notebooks_dir

    nb = nbformat.read(notebooks_dir() / "proxies.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    ns: dict = {}
    exec(code[0].source, ns)  # noqa: S102 - our own notebook
    ns.update(store_path=str(store_path), **params)
    exec(code[1].source, ns)  # noqa: S102
    return ns


def test_cli_and_notebook_analyse_the_same_models_with_the_same_tables(tmp_path):
    """The CLI (and `ckpt demo`, which calls the same evaluate_store with the same defaults)
    and the proxies notebook read one input path: identical models, targets and tables."""
    import io

    st = ResultsStore(tmp_path / "s.duckdb")
    st.upsert(store_rows())
    out = tmp_path / "o"
    args = ["pairwise", "--store", str(st.path), "--splits", "3", "--n-boot", "20",
            "--classifier", "logreg", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    ns = _run_notebook_analysis(st.path, n_splits=3, n_boot=20, classifier="logreg")
    res = ns["res"]
    # default pool "targets": every checkpoint with a fine-tuning score (all ten here)
    assert sorted(res.table["model"]) == sorted(f"r{r}@step{s}" for r in range(5) for s in (10, 20))
    assert res.summary["comparator"]["fitted"]
    models = pd.read_csv(out / "models.csv")
    assert list(models["model"]) == list(res.table["model"])
    for name in ("proxy_accuracy", "comparator", "transfer", "correlations", "gap_quantiles",
                 "topk", "borda", "importance"):  # fmt: skip
        cli = pd.read_csv(out / f"{name}.csv")
        buf = io.StringIO()
        getattr(res, name).to_csv(buf, index=False)
        buf.seek(0)
        assert len(cli), name
        pd.testing.assert_frame_equal(cli, pd.read_csv(buf), obj=name)


def _mixed_store_rows() -> list[dict]:
    """Probe rows on zoo checkpoints plus imported lm-eval rows on other checkpoints (no sft):
    the store on which the proxies report failed with `zero-size array ... fmin`."""
    rows = []
    for r in range(3):
        for step in (10, 20):
            ck = dict(run=f"zoo{r}", checkpoint=f"zoo{r}@{step}", step=step, tokens=step * 100)
            rows.append(dict(ck, probe="ppl", task="wiki", metric="ppl", value=10 / (r + step)))
            rows.append(dict(ck, probe="kshot", task="capitals", metric="acc",
                             value=0.1 * r + step / 100, shots=0))  # fmt: skip
    for r in range(4):
        for step in (1000, 2000, 3000):
            ck = dict(run=f"pythia{r}", checkpoint=f"pythia{r}@{step}", step=step,
                      tokens=step * 2_000_000)  # fmt: skip
            q = r + step / 1000
            for i, task in enumerate(("arc_easy", "piqa", "sciq", "lambada")):
                rows.append(dict(ck, probe="lm-eval", task=task, metric="acc",
                                 value=0.3 + 0.02 * q + 0.01 * ((i * r + step) % 3)))  # fmt: skip
            rows.append(dict(ck, probe="lm-eval", task="lambada", metric="ppl", value=40 / q))
    return rows


def test_store_mixing_probe_and_imported_rows(tmp_path):
    from ckpt_toolkit.analysis.pairwise import pairwise_inputs
    from ckpt_toolkit.errors import ParameterError

    df = pd.DataFrame(_mixed_store_rows())
    inp = pairwise_inputs(df)
    assert inp.stand_in and inp.targets == ["ext_acc:arc_easy", "ext_acc:piqa", "ext_acc:sciq"]
    # the models are the checkpoints that carry the targets; inv_ppl (zoo only) is left out
    assert sorted(inp.table["model"]) == sorted(
        f"pythia{r}@{s}" for r in range(4) for s in (1000, 2000, 3000)
    )
    assert "inv_ppl" not in inp.proxies and "ext_inv_ppl:lambada" in inp.proxies
    assert any("inv_ppl" in n for n in inp.notes)
    # the notebook path (which crashed in np.nanmin) runs to the end
    st = ResultsStore(tmp_path / "mixed.duckdb")
    st.upsert(_mixed_store_rows())
    ns = _run_notebook_analysis(st.path, n_splits=2, n_boot=10, classifier="logreg")
    assert len(ns["res"].table) == 12 and ns["stand_in"] is True
    # proxies named on models that lack them: a named error, not a numpy traceback
    with pytest.raises(ParameterError, match="usable models"):
        from ckpt_toolkit.analysis.pairwise import evaluate_store

        evaluate_store(df, proxies=["inv_ppl"], n_splits=2, n_boot=5, progress=False)
    only_zoo_proxies = df[~((df["probe"] == "lm-eval") & (df["task"] == "lambada"))]
    with pytest.raises(ParameterError, match="no proxy is measured"):
        pairwise_inputs(only_zoo_proxies[only_zoo_proxies["probe"] != "kshot"])


def test_cli_table_with_id_column(tmp_path, capsys):
    t = np.array([0.1, 0.4, 0.2, 0.9, 0.5])
    df = pd.DataFrame({"id": [7, 3, 5, 1, 2], "inv_ppl": t + 0.01, "ppl": 1 / (t + 0.01),
                       "sft:a": t})  # fmt: skip
    csv = tmp_path / "m.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "o"
    rc = main(["pairwise", "--table", str(csv), "--invert", "ppl", "--target-ties", "half",
               "--splits", "2", "--n-boot", "5", "--out", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr()
    both = text.out + text.err
    assert "comparator: not fitted" in both and "5 models" in both
    assert "--invert inv_ppl" not in both
    models = pd.read_csv(out / "models.csv")
    assert list(models["model"]) == [7, 3, 5, 1, 2]
    acc = pd.read_csv(out / "proxy_accuracy.csv")
    assert set(acc["proxy"]) == {"inv_ppl", "ppl", "combo:all"}
    assert (acc.loc[acc["proxy"] == "inv_ppl", "accuracy"] == 1.0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["target_ties"] == "half" and summary["config"]["model_col"] == "id"


def test_cli_prints_the_ground_truth_signal_and_marks_noise(tmp_path, capsys):
    rows = store_rows()
    for r in rows:  # stored standard errors: tight on knowledge, wide on math
        if r["probe"] == "sft" and r["metric"] == "score":
            r["stderr"] = 0.02 if r["task"] == "knowledge" else 0.1
    st = ResultsStore(tmp_path / "s.duckdb")
    st.upsert(rows)
    out = tmp_path / "o"
    args = ["pairwise", "--store", str(st.path), "--splits", "2", "--n-boot", "5",
            "--classifier", "logreg", "--baseline", "none", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    # hand computation over the ten fine-tuned checkpoints (quality q = r + step / 10)
    math_scores = [0.05 * (r + s / 10) for r in range(5) for s in (10, 20)]
    know_scores = [0.05 * (r + s / 10) + r % 2 for r in range(5) for s in (10, 20)]
    ratio_math = np.var(math_scores, ddof=1) / 0.1**2
    ratio_know = np.var(know_scores, ddof=1) / 0.02**2
    assert ratio_math < 4 < ratio_know
    sig = pd.read_csv(out / "ground_truth_signal.csv").set_index("target")
    assert sig.loc["sft:math", "ratio"] == pytest.approx(ratio_math)
    assert sig.loc["sft:knowledge", "ratio"] == pytest.approx(ratio_know)
    assert f"sft:math: ratio {ratio_math:.1f} (within noise)" in printed
    assert f"sft:knowledge: ratio {ratio_know:.1f} (separates models)" in printed
    math_line = next(line for line in printed.splitlines() if "sft:math: best proxies" in line)
    assert "not meaningful" in math_line
    acc = pd.read_csv(out / "proxy_accuracy.csv")
    assert not acc.loc[acc["target"] == "sft:math", "meaningful"].any()
    assert acc.loc[acc["target"] == "sft:knowledge", "meaningful"].all()


def test_cli_defaults_are_the_api_defaults():
    """`ckpt demo` and the notebook call evaluate_store with the API defaults; the CLI's option
    defaults must be the same values, or the three outputs would disagree again."""
    import inspect

    from ckpt_toolkit.analysis.pairwise import evaluate_pairwise, pairwise_inputs
    from ckpt_toolkit.cli.pairwise import pairwise_cmd

    cli = {n: p.default.default for n, p in inspect.signature(pairwise_cmd).parameters.items()
           if hasattr(p.default, "default")}  # fmt: skip
    api = {n: p.default for n, p in inspect.signature(evaluate_pairwise).parameters.items()}
    rename = {"splits": "n_splits"}
    for name in ("splits", "train_frac", "seed", "classifier", "baseline", "ties",
                 "target_ties", "min_gap", "n_boot", "z_max", "drop_flagged", "model_col",
                 "group_col", "ppl_proxy", "max_train_pairs"):  # fmt: skip
        assert cli[name] == api[rename.get(name, name)], name
    assert cli["threads"] == "auto" and api["threads"] is None  # both: the threads policy
    assert cli["no_transfer"] is (not api["transfer"])
    assert cli["no_auto_combine"] is (not api["auto_combine"])
    assert cli["pool"] == inspect.signature(pairwise_inputs).parameters["pool"].default


def test_cli_max_train_pairs_and_threads(tmp_path):
    rng = np.random.default_rng(1)
    t = rng.normal(size=12)
    df = pd.DataFrame({"model": [f"m{i}" for i in range(12)], "good": t + rng.normal(size=12),
                       "noise": rng.normal(size=12), "sft:a": t})  # fmt: skip
    csv = tmp_path / "m.csv"
    df.to_csv(csv, index=False)
    base = ["pairwise", "--table", str(csv), "--splits", "2", "--n-boot", "5", "--classifier",
            "logreg", "--baseline", "none", "--no-progress"]  # fmt: skip
    imp = {}
    for cap, threads in (("5", "2"), ("0", "1")):
        out = tmp_path / f"o{cap}"
        args = ["--max-train-pairs", cap, "--threads", threads, "--out", str(out)]
        assert main(base + args) == 0
        config = json.loads((out / "summary.json").read_text())["config"]
        assert config["max_train_pairs"] == (int(cap) or None)
        imp[cap] = pd.read_csv(out / "importance.csv")["importance_mean"].to_numpy()
    # 7 train models have 21 pairs: 5 of them train another comparator than all 21
    assert not np.allclose(imp["5"], imp["0"])
    assert main(base + ["--threads", "many", "--out", str(tmp_path / "x")]) == 2
    assert main(base + ["--max-train-pairs", "-1", "--out", str(tmp_path / "x")]) == 2
