"""Importers on crafted inputs: lm-eval 0.4.x layout, tidy and wide CSV, malformed input,
idempotent re-import, and the ``ckpt import`` CLI."""

from __future__ import annotations

import json

import pytest

from ckpt_toolkit.cli import main
from ckpt_toolkit.errors import ImportFormatError
from ckpt_toolkit.importers import import_csv, import_lm_eval, parse_size, parse_step
from ckpt_toolkit.store import ResultsStore

V04 = {
    "results": {
        "arc_easy": {
            "alias": "arc_easy",
            "acc,none": 0.6132,
            "acc_stderr,none": 0.0099,
            "acc_norm,none": 0.55,
            "acc_norm_stderr,none": "N/A",
        },
        "mmlu": {"alias": "mmlu", "acc,none": 0.27, "acc_stderr,none": 0.004},
        "mmlu_anatomy": {"alias": " - anatomy", "acc,none": 0.3, "acc_stderr,none": 0.04},
        "mmlu_virology": {"alias": " - virology", "acc,none": 0.24, "acc_stderr,none": 0.03},
        "gsm8k": {
            "alias": "gsm8k",
            "exact_match,strict-match": 0.02,
            "exact_match_stderr,strict-match": 0.004,
            "exact_match,flexible-extract": 0.03,
            "exact_match_stderr,flexible-extract": 0.005,
        },
        "piqa": {"alias": "piqa", "acc,none": "n/a", "acc_norm,none": 0.66},
    },
    "groups": {"mmlu": {"alias": "mmlu", "acc,none": 0.27, "acc_stderr,none": 0.004}},
    "group_subtasks": {"mmlu": ["mmlu_anatomy", "mmlu_virology"], "arc_easy": [], "gsm8k": []},
    "configs": {"arc_easy": {"num_fewshot": 0}},
    "versions": {"arc_easy": 1.0, "mmlu_anatomy": 1.0, "gsm8k": 3.0},
    "n-shot": {"arc_easy": 0, "mmlu_anatomy": 5, "mmlu_virology": 5, "gsm8k": 5, "piqa": 0},
    "n-samples": {"arc_easy": {"original": 2376, "effective": 2376}},
    "config": {
        "model": "hf",
        "model_args": "pretrained=EleutherAI/pythia-160m,revision=step3000,dtype=float32",
        "model_num_parameters": 162322944,
        "batch_size": "auto",
        "limit": None,
    },
}


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_parse_helpers():
    assert parse_size("EleutherAI/pythia-v1.1-70m") == 70_426_624  # published count
    assert parse_size("pythia-1.4b-deduped") == 1_414_647_808
    assert parse_size("my-model-350m") == 350_000_000
    assert parse_size("gpt2") is None
    assert parse_step("step143000") == 143000 and parse_step("main") is None


def test_lm_eval_04_layout(tmp_path):
    # the file name says step 1 but the data says step 3000: the data wins
    f = _write(tmp_path / "results_step1.json", V04)
    store = ResultsStore(tmp_path / "s.duckdb")
    rep = import_lm_eval(f, store, progress=False)
    df = store.to_pandas()
    assert set(df["checkpoint"]) == {"pythia-160m@step3000"}
    assert set(df["step"]) == {3000} and set(df["tokens"]) == {3000 * 2_097_152}
    assert set(df["params"]) == {162322944}
    assert set(df["probe"]) == {"lm-eval"}
    arc = df[(df.task == "arc_easy") & (df.metric == "acc")].iloc[0]
    assert arc["value"] == pytest.approx(0.6132) and arc["stderr"] == pytest.approx(0.0099)
    assert arc["n"] == 2376 and arc["shots"] == 0 and arc["capability"] == "knowledge"
    assert json.loads(arc["provenance"])["source"] == str(f.resolve())
    norm = df[(df.task == "arc_easy") & (df.metric == "acc_norm")].iloc[0]
    assert norm["value"] == 0.55 and norm["stderr"] != norm["stderr"]  # "N/A" → missing
    assert not df["metric"].str.contains("stderr").any()  # stderr joined, not stored
    anat = df[df.task == "mmlu_anatomy"].iloc[0]
    assert anat["shots"] == 5 and anat["value"] == 0.3
    assert "mmlu" not in set(df["task"])  # group aggregate skipped (subtasks present)
    gsm = df[df.task == "gsm8k"].set_index("metric")["value"].to_dict()
    assert gsm == {"exact_match,strict-match": 0.02, "exact_match,flexible-extract": 0.03}
    reasons = {s["item"]: s["reason"] for s in rep.skipped}
    assert reasons["piqa/acc,none"] == "non-numeric metric"
    assert "group aggregate" in reasons["mmlu"]
    assert rep.rows_written == len(df) == 7


def test_lm_eval_model_args_mapping_and_nan(tmp_path):
    data = json.loads(json.dumps(V04))
    data["config"]["model_args"] = {"pretrained": "org/my-model-1b", "revision": "step20"}
    data["config"].pop("model_num_parameters")
    data["results"]["arc_easy"]["acc,none"] = float("nan")
    f = tmp_path / "r.json"
    f.write_text(json.dumps(data))  # json writes NaN literally, as lm-eval does
    store = ResultsStore(tmp_path / "s.duckdb")
    rep = import_lm_eval(f, store, tokens_per_step=1000, progress=False)
    df = store.to_pandas()
    assert set(df["checkpoint"]) == {"my-model-1b@step20"}
    assert set(df["tokens"]) == {20_000} and set(df["params"]) == {1_000_000_000}
    assert not ((df.task == "arc_easy") & (df.metric == "acc")).any()
    assert {"item": "arc_easy/acc,none", "reason": "NaN/inf score"}.items() <= {
        k: v for s in rep.skipped if s["item"] == "arc_easy/acc,none" for k, v in s.items()
    }.items()


@pytest.mark.parametrize(
    "content, needle",
    [
        ('{"results": {"arc": {"acc": 0.5}', "not valid JSON"),
        ('{"versions": {}, "config": {}}', "missing key 'results'"),
        ('{"results": {"arc": 0.5}, "config": {"model_args": "pretrained=a/b"}}', "results.arc"),
        ('{"results": {"arc": {"acc": 0.5}}, "config": {}}', "pretrained="),
        ("[1, 2]", "top level"),
    ],
)
def test_lm_eval_malformed(tmp_path, content, needle):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(ImportFormatError, match=needle) as info:
        import_lm_eval(f, tmp_path / "s.duckdb", progress=False)
    assert str(f) in str(info.value)


def test_group_without_groups_key_still_not_double_counted(tmp_path):
    data = {k: v for k, v in V04.items() if k != "groups"}
    store = ResultsStore(tmp_path / "s.duckdb")
    import_lm_eval(_write(tmp_path / "r.json", data), store, progress=False)
    assert "mmlu" not in set(store.to_pandas()["task"])


def test_reimport_is_idempotent(tmp_path):
    f = _write(tmp_path / "r.json", V04)
    store = ResultsStore(tmp_path / "s.duckdb")
    import_lm_eval(f, store, progress=False)
    n = len(store)
    import_lm_eval(tmp_path, store, progress=False)  # folder form, same file
    assert len(store) == n


TIDY = """run,step,tokens,task,metric,value,stderr,shots
m-70m,100,1000,arc_easy,acc,0.30,0.01,0
m-70m,200,2000,arc_easy,acc,0.35,0.01,0
m-70m,200,2000,piqa,acc,nan,0.01,0
m-70m,200,2000,lambada_openai,ppl,40.5,,0
"""


def test_tidy_csv(tmp_path):
    f = tmp_path / "tidy.csv"
    f.write_text(TIDY)
    store = ResultsStore(tmp_path / "s.duckdb")
    rep = import_csv(f, store)
    df = store.to_pandas()
    assert len(df) == 3 and set(df["probe"]) == {"import"}
    row = df[(df.step == 200) & (df.task == "arc_easy")].iloc[0]
    assert row["checkpoint"] == "m-70m@step200" and row["tokens"] == 2000
    assert row["value"] == 0.35 and row["capability"] == "knowledge"
    assert row["params"] == 70_000_000
    assert any("NaN" in s["reason"] for s in rep.skipped)
    import_csv(f, store)
    assert len(store) == 3  # idempotent


WIDE = """model,step,arc,arc_se,piqa,notes
m-1b,10,0.26,0.01,0.52,x
m-1b,20,0.31,0.01,0.58,y
"""


def test_wide_csv_with_mapping(tmp_path):
    f = tmp_path / "wide.csv"
    f.write_text(WIDE)
    m = tmp_path / "map.yaml"
    m.write_text(
        "run: model\nstep: step\ntokens_per_step: 500\n"
        "columns:\n  arc: {task: arc_easy, metric: acc, stderr: arc_se}\n  piqa: {task: piqa}\n"
    )
    store = ResultsStore(tmp_path / "s.duckdb")
    rep = import_csv(f, store, mapping=m)
    df = store.to_pandas()
    assert len(df) == 4 and set(df["tokens"]) == {5000, 10000}
    arc = df[(df.task == "arc_easy") & (df.step == 20)].iloc[0]
    assert arc["value"] == 0.31 and arc["stderr"] == 0.01 and arc["metric"] == "acc"
    assert json.loads(arc["provenance"])["column"] == "arc"
    assert {s["item"] for s in rep.skipped} == {"column notes"}


def test_wide_csv_mapping_errors(tmp_path):
    f = tmp_path / "wide.csv"
    f.write_text(WIDE)
    m = tmp_path / "map.yaml"
    m.write_text("run: model\nstep: step\ncolumns:\n  hellaswag: {task: hellaswag}\n")
    with pytest.raises(ImportFormatError, match="'hellaswag' is not in"):
        import_csv(f, tmp_path / "s.duckdb", mapping=m)
    m.write_text("run: model\nstep: step\nkolumns: {}\n")
    with pytest.raises(ImportFormatError, match="kolumns"):
        import_csv(f, tmp_path / "s.duckdb", mapping=m)
    with pytest.raises(ImportFormatError, match="needs --mapping"):
        import_csv(f, tmp_path / "s.duckdb")  # a wide CSV without mapping


def test_cli_import(tmp_path, capsys):
    f = _write(tmp_path / "r.json", V04)
    s = tmp_path / "s.duckdb"
    assert main(["import", "lm-eval", str(f), "--store", str(s)]) == 0
    assert "imported 7 rows" in capsys.readouterr().out
    c = tmp_path / "tidy.csv"
    c.write_text(TIDY)
    assert main(["import", "csv", str(c), "--store", str(s)]) == 0
    assert len(ResultsStore(s)) == 10
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["import", "lm-eval", str(bad), "--store", str(s)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


# -- format detection: `ckpt import PATH` --------------------------------------------------------

COLUMNAR = {
    "tokens": [2_000_000_000, 4_000_000_000, 6_000_000_000],
    "checkpoints": [1000, 2000, "global_step3000"],
    "results": {
        "arc_easy": {"acc": [0.40, 0.45, None], "acc_stderr": [0.010, 0.011, 0.012]},
        "lambada": {"ppl": [80.5, 40.25, 30.0]},
        "mystery_task": {"acc": [0.1, 0.2, 0.3]},
    },
}


def test_columnar_aggregate_json(tmp_path, capsys):
    f = _write(tmp_path / "tr3d-1B3-oscar-checkpoints_agg.json", COLUMNAR)
    s = tmp_path / "s.duckdb"
    assert main(["import", str(f), "--store", str(s)]) == 0
    out = capsys.readouterr().out
    df = ResultsStore(s).to_pandas()
    # 3 tasks x 3 checkpoints, minus the one null score
    assert len(df) == 8 and set(df["run"]) == {"tr3d-1B3-oscar"}
    assert set(df["checkpoint"]) == {f"tr3d-1B3-oscar@step{k}" for k in (1000, 2000, 3000)}
    assert set(df["params"]) == {1_300_000_000}  # "1B3" is 1.3 billion
    arc = df[df.task == "arc_easy"].set_index("step")
    assert arc.loc[2000, "value"] == 0.45 and arc.loc[2000, "stderr"] == 0.011
    assert arc.loc[2000, "tokens"] == 4_000_000_000 and 3000 not in arc.index
    lam = df[df.task == "lambada"].set_index("step")
    assert lam.loc[3000, "value"] == 30.0 and set(lam["capability"]) == {"language_modeling"}
    assert "1 x null, NaN or non-numeric value" in out
    assert "mystery_task" in out and "not in the taxonomy" in out
    assert "(1 columnar)" in out


def _olmo_csv(path, steps, tokens_per_step, base):
    """A wide CSV as an experiment tracker exports it (OLMo-ladder-like columns)."""
    lines = [
        "_step,throughput/total_tokens,eval/downstream/hellaswag_val_rc_5shot_len_norm,"
        "eval/downstream/arc_easy_val_mc_0shot,eval/c4_en-validation/CrossEntropyLoss,"
        "eval/downstream/hellaswag_val_rc_5shot_len_norm_stderr,train/lr"
    ]
    for i, st in enumerate(steps):
        hs = "" if i == 0 else f"{base + 0.01 * i:.4f}"  # first eval row missing
        lines.append(
            f"{st},{st * tokens_per_step},{hs},{0.3 + 0.02 * i:.4f},{4.0 - 0.1 * i:.4f},"
            f"0.005,0.0003"
        )
    path.write_text("\n".join(lines) + "\n")


OLMO_MAPPING = r"""
files: "*.csv"
filename: '(?P<size>[0-9.]+[MB])-(?P<budget>[0-9]+xC)\.csv'  # single quotes: no YAML escapes
run: "{size}-{budget}"
step: _step
tokens: throughput/total_tokens
columns:
  - {match: '.*_stderr', skip: true}
  - match: 'eval/downstream/(?P<task>.+?)_(?P<shots>\d+)shot(_(?P<metric>len_norm))?'
  - match: 'eval/(?P<task>[^/]+)/CrossEntropyLoss'
    metric: ce_loss
    loss: true
"""


def test_wide_folder_with_one_pattern_mapping(tmp_path, capsys):
    d = tmp_path / "ladder"
    d.mkdir()
    _olmo_csv(d / "1B-5xC.csv", [100, 200, 300], 4_194_304, 0.50)
    _olmo_csv(d / "1B-10xC.csv", [100, 200], 4_194_304, 0.55)
    _olmo_csv(d / "190M-5xC.csv", [50, 100], 1_048_576, 0.40)
    (d / "summary.csv").write_text("a,b\n1,2\n")  # matches files: but not filename:
    m = tmp_path / "ladder.yaml"
    m.write_text(OLMO_MAPPING)
    s = tmp_path / "s.duckdb"
    assert main(["import", str(d), "--store", str(s), "--mapping", str(m)]) == 0
    out = capsys.readouterr().out
    store = ResultsStore(s)
    df = store.to_pandas()
    # per file: 3 value columns x rows, minus the first (empty) hellaswag cell
    assert len(df) == (3 * 3 - 1) + (3 * 2 - 1) + (3 * 2 - 1)
    assert set(df["run"]) == {"1B-5xC", "1B-10xC", "190M-5xC"}
    hs = df[(df.run == "1B-5xC") & (df.step == 300)].set_index("task")
    row = hs.loc["hellaswag_val_rc"]
    assert (row["metric"], row["shots"], row["value"]) == ("len_norm", 5, 0.52)
    assert row["capability"] == "commonsense" and row["tokens"] == 300 * 4_194_304
    assert row["params"] == 1_000_000_000
    arc = hs.loc["arc_easy_val_mc"]
    assert (arc["metric"], arc["shots"], arc["capability"]) == ("acc", 0, "knowledge")
    ce = hs.loc["c4_en-validation"]
    assert ce["metric"] == "ce_loss" and ce["capability"] == "language_modeling"
    assert json.loads(ce["provenance"])["loss"] is True
    small = df[df.run == "190M-5xC"]
    assert set(small["params"]) == {190_000_000}
    assert set(small["tokens"]) == {50 * 1_048_576, 100 * 1_048_576}
    # the file-name groups are the run's variant configuration
    cks = store.checkpoints().set_index("checkpoint")
    cfg = cks.loc["1B-10xC@step200", "config"]
    assert (cfg["size"], cfg["budget"]) == ("1B", "10xC")
    # unmatched column reported once for the mapping (not once per file); bad name skipped
    assert out.count("train/lr") == 1 and "1 x no column or rule of the mapping" in out
    assert "1 x file name does not match the mapping's filename" in out
    # the loss rows are the runs' loss series for the analyses
    from ckpt_toolkit.analysis.taxonomy import load_taxonomy

    tax = load_taxonomy()
    assert {"probe": "import", "metric": "ce_loss"} in tax.loss_metrics
    assert tax.is_loss_metric("ce_loss")
    from ckpt_toolkit.analysis.dynamics import loss_table

    lt = loss_table(df, tax).set_index("checkpoint")
    assert set(lt["loss_source"]) == {"probe=import/metric=ce_loss"}
    # the CSV's CrossEntropyLoss at row 3 of 1B-5xC is 4.0 - 0.1 * 2
    assert lt.loc["1B-5xC@step300", "loss"] == pytest.approx(3.8)


def test_tidy_and_wide_parquet(tmp_path):
    import pandas as pd

    tidy = pd.DataFrame(
        {
            "run": ["m-70m"] * 3,
            "step": [10, 20, 20],
            "task": ["piqa", "piqa", "boolq"],
            "metric": ["acc", "acc", "acc"],
            "value": [0.55, 0.60, 0.62],
            "shots": [0, 0, 5],
        }
    )
    tidy.to_parquet(tmp_path / "tidy.parquet", index=False)
    wide = pd.DataFrame({"model": ["m-1b", "m-1b"], "step": [5, 6], "arc": [0.3, 0.35]})
    wide.to_parquet(tmp_path / "wide.parquet", index=False)
    s = ResultsStore(tmp_path / "s.duckdb")
    from ckpt_toolkit.importers import import_results

    rep = import_results(tmp_path / "tidy.parquet", s, tokens_per_step="m-70m=100")
    assert rep.rows_written == 3 and rep.formats == {"tidy": 1} and not rep.warnings
    m = {"run": "model", "step": "step", "tokens_per_step": 7, "columns": {"arc": "arc_easy"}}
    rep = import_results(tmp_path / "wide.parquet", s, mapping=m)
    df = s.to_pandas().set_index(["run", "step", "task"])
    assert df.loc[("m-70m", 20, "boolq"), "shots"] == 5
    assert df.loc[("m-70m", 20, "piqa"), "tokens"] == 2000
    assert df.loc[("m-1b", 6, "arc_easy"), "value"] == 0.35
    assert df.loc[("m-1b", 6, "arc_easy"), "tokens"] == 42


def test_mixed_folder_detects_each_format(tmp_path, capsys):
    d = tmp_path / "mixed"
    d.mkdir()
    _write(d / "results_step3000.json", V04)
    _write(d / "tr3d-1B3-oscar_agg.json", COLUMNAR)
    (d / "tidy.csv").write_text(TIDY)
    (d / "README.md").write_text("not results")
    _write(d / "config.json", {"lr": 0.1})
    s = tmp_path / "s.duckdb"
    assert main(["import", str(d), "--store", str(s)]) == 0
    out = capsys.readouterr().out
    assert "(1 columnar, 1 lm-eval, 1 tidy)" in out
    assert len(ResultsStore(s)) == 7 + 8 + 3
    assert "1 x JSON without 'results'" in out and "README" not in out  # only result suffixes


# -- tokens per step ----------------------------------------------------------------------------


def test_pythia_batch_size_variants_are_not_given_2m_tokens(tmp_path):
    from ckpt_toolkit.importers import family_tokens_per_step, import_results

    assert family_tokens_per_step("pythia-160m")[0] == 1024 * 2048
    assert family_tokens_per_step("pythia-160m-0.5MtokBS")[0] == 256 * 2048
    assert family_tokens_per_step("pythia-160m-4MtokBS")[0] == 2048 * 2048
    assert family_tokens_per_step("pythia-160m-bs512")[0] is None  # a marker we cannot read
    assert family_tokens_per_step("gpt2")[0] is None
    rows = "run,step,task,metric,value\n"
    rows += "pythia-160m-0.5MtokBS,10,piqa,acc,0.5\npythia-160m-bs512,10,piqa,acc,0.5\n"
    rows += "my-model,10,piqa,acc,0.5\n"
    f = tmp_path / "t.csv"
    f.write_text(rows)
    s = ResultsStore(tmp_path / "s.duckdb")
    rep = import_results(f, s, tokens_per_step="my-model=3")
    tok = s.to_pandas().set_index("run")["tokens"]
    assert tok["pythia-160m-0.5MtokBS"] == 10 * 524_288
    assert tok.isna()["pythia-160m-bs512"] and tok["my-model"] == 30
    assert len(rep.warnings) == 2  # one assumed, one unknown; none for the given run
    assert any("assumed" in w and "0.5MtokBS" in w for w in rep.warnings)
    assert any("unknown" in w and "bs512" in w for w in rep.warnings)


def test_lm_eval_assumed_tokens_warn_and_given_tokens_do_not(tmp_path):
    f = _write(tmp_path / "r.json", V04)
    rep = import_lm_eval(f, tmp_path / "a.duckdb", progress=False)
    assert any("pythia-160m" in w and "assumed" in w for w in rep.warnings)
    rep = import_lm_eval(f, tmp_path / "b.duckdb", tokens_per_step="pythia-160m=5", progress=False)
    assert rep.warnings == []
    assert set(ResultsStore(tmp_path / "b.duckdb").to_pandas()["tokens"]) == {15_000}


# -- metadata: an import never erases what the store knows ---------------------------------------


def test_import_keeps_checkpoint_metadata_and_adds_provenance(tmp_path):
    s = ResultsStore(tmp_path / "s.duckdb")
    probe_meta = {
        "checkpoint": "m-70m@step200",
        "run": "m-70m",
        "step": 200,
        "tokens": 2000,
        "params": 70_123_456,
        "fingerprint": "abc123",
        "path": "/ckpts/m-70m/checkpoint-200",
        "config": {"objective": "clm", "lr": 0.001},
    }
    s.upsert(
        [
            {
                "checkpoint": "m-70m@step200",
                "probe": "ppl",
                "task": "wiki",
                "metric": "ppl",
                "value": 12.0,
                "fingerprint": "abc123",
            }
        ],
        checkpoints=[probe_meta],
    )
    f = tmp_path / "tidy.csv"
    f.write_text(TIDY)
    import_csv(f, s)
    import_csv(f, s)  # twice: provenance is not duplicated
    ck = s.checkpoints().set_index("checkpoint").loc["m-70m@step200"]
    assert ck["fingerprint"] == "abc123" and ck["path"] == "/ckpts/m-70m/checkpoint-200"
    assert ck["params"] == 70_123_456  # the probe's exact count, not the name's 70M
    assert ck["config"]["objective"] == "clm" and ck["config"]["lr"] == 0.001
    assert ck["config"]["imports"] == [
        {"format": "tidy", "importer": "import", "source": str(f.resolve())}
    ]
    # a later probe write updates what it measures and keeps the import's provenance
    s.upsert([], checkpoints=[dict(probe_meta, fingerprint="def456", config={"lr": 0.002})])
    ck = s.checkpoints().set_index("checkpoint").loc["m-70m@step200"]
    assert ck["fingerprint"] == "def456" and ck["config"]["lr"] == 0.002
    assert ck["config"]["objective"] == "clm" and len(ck["config"]["imports"]) == 1
    # a checkpoint the store did not know gets the import's metadata
    new = s.checkpoints().set_index("checkpoint").loc["m-70m@step100"]
    assert new["tokens"] == 1000 and new["path"] != new["path"]  # NaN: no path known
