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
