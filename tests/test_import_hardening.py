"""Issue 13, importer cases: every bad input gives a named error (message naming the file and
the key, row or option) or a reported skip — never a traceback, never a wrong stored value."""

from __future__ import annotations

import copy
import json

import pytest

from ckpt_toolkit.cli import main
from ckpt_toolkit.errors import CkptError, ImportFormatError, ParameterError
from ckpt_toolkit.importers import import_csv, import_lm_eval, import_results, load_mapping
from ckpt_toolkit.store import ResultsStore

BASE = {
    "results": {"arc_easy": {"acc,none": 0.6, "acc_stderr,none": 0.01}},
    "n-shot": {"arc_easy": 0},
    "n-samples": {"arc_easy": {"original": 100, "effective": 100}},
    "versions": {"arc_easy": 1.0},
    "group_subtasks": {"arc_easy": []},
    "config": {"model_args": "pretrained=org/m-70m,revision=step10", "num_fewshot": 0},
}


def _json(tmp_path, doc, name="r.json"):
    f = tmp_path / name
    f.write_text(json.dumps(doc))
    return f


def _with(path: str, value):
    doc = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    cur = doc
    for p in parents:
        cur = cur[p]
    cur[last] = value
    return doc


def _store_is_empty(tmp_path) -> bool:
    p = tmp_path / "s.duckdb"
    return not p.exists() or len(ResultsStore(p)) == 0


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("n-shot", [0, 5], "'n-shot' must be a mapping"),
        ("n-samples", [100], "'n-samples' must be a mapping"),
        ("versions", ["1.0"], "'versions' must be a mapping"),
        ("group_subtasks", [["a"]], "'group_subtasks' must be a mapping"),
        ("group_subtasks", {"arc_easy": "arc"}, "group_subtasks.arc_easy must be a list"),
        ("n-shot", {"arc_easy": [5]}, "n-shot.arc_easy: expected a whole number"),
        ("n-shot", {"arc_easy": -1}, "n-shot.arc_easy: -1 is out of range"),
        ("n-shot", {"arc_easy": 2.5}, "n-shot.arc_easy: 2.5 is not a whole number"),
        ("config.num_fewshot", -3, "config.num_fewshot: -3 is out of range"),
        ("config.model_num_parameters", 2**63, "model_num_parameters: 9223372036854775808"),
        ("n-samples", {"arc_easy": {"effective": 2**64}}, "n-samples.arc_easy"),
        ("n-samples", {"arc_easy": [1, 2]}, "n-samples.arc_easy must be a mapping"),
        ("config.model_args", "pretrained=org/m,revision=step" + "9" * 25, "step"),
    ],
)
def test_lm_eval_wrong_types_and_ranges_are_named_errors(tmp_path, key, value, needle):
    f = _json(tmp_path, _with(key, value))
    with pytest.raises(ImportFormatError, match=needle) as info:
        import_lm_eval(f, tmp_path / "s.duckdb", progress=False)
    assert str(f) in str(info.value)
    assert _store_is_empty(tmp_path)


def test_lm_eval_tokens_beyond_range(tmp_path):
    f = _json(tmp_path, _with("config.model_args", f"pretrained=org/m,revision=step{2**40}"))
    with pytest.raises(ImportFormatError, match="tokens = step .* out of range"):
        import_lm_eval(f, tmp_path / "s.duckdb", tokens_per_step=2**30, progress=False)


def test_not_utf8_and_deeply_nested_json(tmp_path):
    f = tmp_path / "latin1.json"
    f.write_bytes('{"results": {"caf\xe9": {"acc": 0.5}}}'.encode("latin-1"))
    with pytest.raises(ImportFormatError, match="not UTF-8") as info:
        import_results(f, tmp_path / "s.duckdb")
    assert str(f) in str(info.value)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ImportFormatError, match="nested too deeply"):
        import_results(deep, tmp_path / "s.duckdb")
    c = tmp_path / "latin1.csv"
    c.write_bytes("run,task,metric,value\nm,caf\xe9,acc,0.5\n".encode("latin-1"))
    with pytest.raises(ImportFormatError, match="not UTF-8"):
        import_results(c, tmp_path / "s.duckdb")


TIDY_HEAD = "run,step,tokens,params,task,metric,value,stderr,n,shots\n"
GOOD = "m-70m,10,1000,70000000,piqa,acc,0.5,0.01,100,0\n"


@pytest.mark.parametrize(
    "row, needle",
    [
        ("m-70m,1.7,1000,7,piqa,acc,0.5,0.01,100,0", "row 2 \\(line 3\\): step '?1.7'? is not"),
        ("m-70m,ten,1000,7,piqa,acc,0.5,0.01,100,0", "step 'ten' is not a whole number"),
        ("m-70m,10,1000,7,piqa,acc,0.5,big,100,0", "stderr 'big' is not a number"),
        ("m-70m,10,1000,7,piqa,acc,0.5,0.01,many,0", "n 'many' is not a whole number"),
        ("m-70m,10,1000,7,piqa,acc,0.5,0.01,100,five", "shots 'five' is not a whole number"),
        ("m-70m,10,1000,7,piqa,acc,0.5,0.01,100,-1", "shots '?-1'? is out of range"),
        (f"m-70m,{2**63},1000,7,piqa,acc,0.5,0.01,100,0", "step '?9223372036854775808'? is out"),
        (f"m-70m,10,{2**64},7,piqa,acc,0.5,0.01,100,0", "tokens .* is out of range"),
        (f"m-70m,10,1000,{10**30},piqa,acc,0.5,0.01,100,0", "params .* is out of range"),
        ("m-70m,10,1000,7,piqa,acc,0.5,0.01,1e40,0", "n .* is out of range"),
    ],
)
def test_tidy_csv_bad_cells_are_named_errors_and_nothing_is_stored(tmp_path, row, needle):
    f = tmp_path / "t.csv"
    f.write_text(TIDY_HEAD + GOOD + row + "\n")
    with pytest.raises(ImportFormatError, match=needle) as info:
        import_csv(f, tmp_path / "s.duckdb")
    assert str(f) in str(info.value)
    assert _store_is_empty(tmp_path)


def test_huge_exact_integers_round_trip(tmp_path):
    # 2^63 - 1 and a value beyond float precision (2^53 + 1) are stored exactly
    big, odd = 2**63 - 1, 2**53 + 1
    f = tmp_path / "t.csv"
    f.write_text(TIDY_HEAD + f"m,1,{big},{odd},piqa,acc,0.5,,,\nm,2,,{odd},piqa,acc,0.6,,,\n")
    s = ResultsStore(tmp_path / "s.duckdb")
    import_csv(f, s, tokens_per_step="m=1")
    df = s.to_pandas().set_index("step")
    assert int(df.loc[1, "tokens"]) == big and int(df.loc[1, "params"]) == odd
    assert int(df.loc[2, "tokens"]) == 2


def test_text_values_are_reported_skips(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text(TIDY_HEAD + GOOD + "m-70m,20,2000,7,piqa,acc,high,0.01,100,0\n")
    rep = import_csv(f, tmp_path / "s.duckdb")
    assert rep.rows_written == 1 and rep.skip_counts == {"NaN, empty or non-numeric value": 1}


@pytest.mark.parametrize(
    "option, needle",
    [
        ("abc", "--tokens-per-step 'abc': 'abc' is not a whole number"),
        ("runA=x", "--tokens-per-step 'runA=x': 'x' is not a whole number"),
        ("=5", "'=5' is not RUN=N"),
        ("0", "must be between 1"),
        ("runA=-4", "must be between 1"),
        (str(2**63), "must be between 1"),
    ],
)
def test_tokens_per_step_option_errors(tmp_path, capsys, option, needle):
    f = _json(tmp_path, BASE)
    for cmd in (["import"], ["import", "lm-eval"]):
        rc = main(
            [*cmd, str(f), "--store", str(tmp_path / "s.duckdb"), "--tokens-per-step", option]
        )
        assert rc == 2
        assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, needle",
    [
        ("- run\n- step\n", "must hold a mapping"),
        ("columns: [{match: '(?P<task>'}]\n", "invalid regular expression"),
        ("columns: [{match: 'acc_.*'}]\n", "give the task"),
        ("columns: [{match: '(?P<task>.+)', shots: -2}]\n", "shots: -2 is out of range"),
        ("columns: [{match: '(?P<task>.+)', loss: maybe}]\n", "loss: must be true or false"),
        ("columns: [{match: '(?P<task>.+)', colour: red}]\n", "unknown key.*colour"),
        ("filename: '(?P<size>.+)\\.csv'\nrun: '{size}-{seed}'\ncolumns: {a: x}\n", "seed"),
        ("tokens_per_step: lots\ncolumns: {a: x}\n", "tokens_per_step: 'lots'"),
        ("tokens_per_step: {runA: x}\ncolumns: {a: x}\n", "tokens_per_step.runA"),
        ("params_value: 1.5\ncolumns: {a: x}\n", "params_value: 1.5 is not a whole"),
        ("columns: 7\n", "'columns' must map"),
        ("run: [a]\ncolumns: {a: x}\n", "'run' must be text"),
    ],
)
def test_mapping_errors_name_the_mapping_and_key(tmp_path, text, needle):
    m = tmp_path / "map.yaml"
    m.write_text(text)
    with pytest.raises(ImportFormatError, match=needle) as info:
        load_mapping(m)
    assert str(m) in str(info.value)


def test_wide_bad_step_is_a_named_error(tmp_path):
    f = tmp_path / "w.csv"
    f.write_text("model,step,arc\nm,10,0.3\nm,1.5,0.4\n")
    m = {"run": "model", "step": "step", "columns": {"arc": "arc_easy"}}
    with pytest.raises(ImportFormatError, match="row 2 \\(line 3\\): step 1.5 is not"):
        import_csv(f, tmp_path / "s.duckdb", mapping=m)


def test_columnar_errors(tmp_path):
    doc = {"checkpoints": [1, 2], "results": {"arc": {"acc": [0.1]}}}
    with pytest.raises(ImportFormatError, match="results.arc.acc must be a list of 2"):
        import_results(_json(tmp_path, doc, "x_agg.json"), tmp_path / "s.duckdb")
    doc = {"checkpoints": [1, "final"], "results": {"arc": {"acc": [0.1, 0.2]}}}
    with pytest.raises(ImportFormatError, match="checkpoints\\[1\\]: 'final' names no step"):
        import_results(_json(tmp_path, doc, "x_agg.json"), tmp_path / "s.duckdb")
    doc = {"checkpoints": [1, "step1"], "results": {"arc": {"acc": [0.1, 0.2]}}}
    with pytest.raises(ImportFormatError, match="checkpoints\\[1\\] repeats step 1"):
        import_results(_json(tmp_path, doc, "x_agg.json"), tmp_path / "s.duckdb")
    doc = {"checkpoints": [1, None], "results": {"arc": {"acc": [0.1, 0.2]}}}
    with pytest.raises(ImportFormatError, match="checkpoints\\[1\\]: a value is required"):
        import_results(_json(tmp_path, doc, "x_agg.json"), tmp_path / "s.duckdb")
    doc = {"checkpoints": [1, 2], "tokens": [1, -5], "results": {"arc": {"acc": [0.1, 0.2]}}}
    with pytest.raises(ImportFormatError, match="tokens\\[1\\]: -5 is out of range"):
        import_results(_json(tmp_path, doc, "x_agg.json"), tmp_path / "s.duckdb")


def test_report_params_yaml_that_is_a_list(tmp_path):
    from ckpt_toolkit.reports import run_reports

    p = tmp_path / "params.yaml"
    p.write_text("- runs\n- x\n")
    ResultsStore(tmp_path / "s.duckdb")
    with pytest.raises(ParameterError, match="params .*params.yaml must be a mapping"):
        run_reports(["overview"], tmp_path / "s.duckdb", tmp_path / "out", params=p)


def test_errors_are_ckpt_errors():
    assert issubclass(ImportFormatError, CkptError)


def test_rule_stderr_template(tmp_path):
    m = tmp_path / "map.yaml"
    m.write_text("columns: [{match: '(?P<task>.+)_acc', stderr: '{task}_se{x}'}]\n")
    with pytest.raises(ImportFormatError, match="uses \\['x'\\]"):
        load_mapping(m)
    f = tmp_path / "w.csv"
    f.write_text("model,step,arc_acc,arc_se\nm,1,0.5,0.02\n")
    m.write_text(
        "run: model\nstep: step\ncolumns:\n  - {match: '(?P<task>.+)_acc', stderr: '{task}_se'}\n"
    )
    s = ResultsStore(tmp_path / "s.duckdb")
    rep = import_csv(f, s, mapping=m)
    row = s.to_pandas().iloc[0]
    assert (row["task"], row["value"], row["stderr"]) == ("arc", 0.5, 0.02)
    assert rep.n_skipped == 0  # the stderr column is used, not reported as unmatched


def test_rule_with_null_shots_uses_the_mapping_default(tmp_path):
    # found by the property tests: `shots: null` on a rule used to fail inside pandas
    f = tmp_path / "w.csv"
    f.write_text("model,step,arc_acc\nm,1,0.5\n")
    m = {
        "run": "model",
        "step": "step",
        "shots": 3,
        "columns": [{"match": "(?P<task>.+)_acc", "shots": None}],
    }
    s = ResultsStore(tmp_path / "s.duckdb")
    import_csv(f, s, mapping=m)
    assert s.to_pandas()["shots"].tolist() == [3]


def test_optional_filename_group_in_the_run_template(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    for name in ("1B.csv", "1B-s2.csv"):
        (d / name).write_text("step,arc_acc\n1,0.5\n")
    m = {
        "filename": r"(?P<size>[0-9]+B)(-(?P<seed>s[0-9]+))?\.csv",
        "run": "{size}{seed}",
        "step": "step",
        "columns": [{"match": "(?P<task>.+)_acc"}],
    }
    s = ResultsStore(tmp_path / "s.duckdb")
    import_results(d, s, mapping=m)
    assert sorted(s.to_pandas()["run"]) == ["1B", "1Bs2"]


@pytest.mark.parametrize(
    "glob, needle", [("", "files is empty"), ("/abs/*.csv", "files .* is not a glob relative")]
)
def test_files_glob_that_is_not_relative(tmp_path, glob, needle):
    (tmp_path / "a.csv").write_text("step,arc_acc\n1,0.5\n")
    m = {"files": glob, "columns": [{"match": "(?P<task>.+)_acc"}]}
    with pytest.raises(ImportFormatError, match=needle):
        import_results(tmp_path, tmp_path / "s.duckdb", mapping=m)
