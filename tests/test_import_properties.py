"""Property-based tests (hypothesis) for the importers and the mapping / option readers: for any
generated malformed input the result is a named error (a CkptError) or a reported skip — never
a traceback, never a wrong stored value. Expected values are computed here from the generated
cells, independently of the importer."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ckpt_toolkit.errors import CkptError, ImportFormatError
from ckpt_toolkit.importers import (
    import_csv,
    import_results,
    load_mapping,
    parse_tokens_per_step,
)
from ckpt_toolkit.store import ResultsStore

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MAX = 2**63 - 1

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)

# -- tidy CSV: every cell either right or refused ------------------------------------------------

GOOD_INT = st.integers(min_value=0, max_value=10**12).map(lambda v: (str(v), v))
BAD_INT = st.sampled_from(["1.7", "ten", "-1", str(2**63), "1e40", "0x10", "3 4"]).map(
    lambda v: (v, "bad")
)
INT_CELL = st.one_of(GOOD_INT, st.just(("", None)), st.just(("7.0", 7)), BAD_INT)
GOOD_FLOAT = st.floats(allow_nan=False, allow_infinity=False).map(lambda v: (repr(v), v))
VALUE_CELL = st.one_of(
    GOOD_FLOAT, st.sampled_from(["abc", "", "inf", "-inf", "1;5"]).map(lambda v: (v, "skip"))
)
STDERR_CELL = st.one_of(
    st.floats(min_value=0, max_value=1).map(lambda v: (repr(v), v)),
    st.just(("", None)),
    st.just(("x", "bad")),
)
ROW = st.fixed_dictionaries(
    {
        "run": st.sampled_from(["m-70m", "r"]),
        "step": INT_CELL,
        "tokens": INT_CELL,
        "n": INT_CELL,
        "shots": INT_CELL,
        "value": VALUE_CELL,
        "stderr": STDERR_CELL,
    }
)
TPS = {"m-70m": 3, "r": 5}


@SETTINGS
@given(rows=st.lists(ROW, min_size=1, max_size=6))
def test_tidy_csv_cells_are_stored_exactly_or_refused(rows):
    cols = ["step", "tokens", "n", "shots", "value", "stderr"]
    text = "run,task,metric," + ",".join(cols) + "\n"
    for i, r in enumerate(rows):
        text += f"{r['run']},t{i},acc," + ",".join(r[c][0] for c in cols) + "\n"
    bad = any(r[c][1] == "bad" for r in rows for c in ("step", "tokens", "n", "shots", "stderr"))
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "t.csv"
        f.write_text(text)
        store = ResultsStore(Path(tmp) / "s.duckdb")
        try:
            rep = import_csv(f, store, tokens_per_step=TPS)
        except ImportFormatError as exc:
            assert bad, f"refused a valid file: {exc}"
            assert str(f) in str(exc)
            assert len(store) == 0
            return
        assert not bad, "a bad cell was accepted"
        df = store.to_pandas().set_index("task")
    kept = {f"t{i}": r for i, r in enumerate(rows) if r["value"][1] != "skip"}
    assert set(df.index) == set(kept)
    assert rep.n_skipped == len(rows) - len(kept)
    for task, r in kept.items():
        got = df.loc[task]
        assert got["value"] == r["value"][1]
        step = r["step"][1]
        assert (got["step"] == step) if step is not None else pd.isna(got["step"])
        tokens = r["tokens"][1]
        if tokens is None and step is not None:
            tokens = step * TPS[r["run"]]
        assert (got["tokens"] == tokens) if tokens is not None else pd.isna(got["tokens"])
        n = r["n"][1]
        assert (got["n"] == n) if n is not None else pd.isna(got["n"])
        assert got["shots"] == (r["shots"][1] or 0)
        se = r["stderr"][1]
        assert (got["stderr"] == se) if se is not None else pd.isna(got["stderr"])


# -- lm-eval JSON: any value at any key -----------------------------------------------------------

BASE = {
    "results": {
        "arc_easy": {"acc,none": 0.6, "acc_stderr,none": 0.01},
        "piqa": {"acc,none": 0.7},
    },
    "n-shot": {"arc_easy": 0, "piqa": 5},
    "n-samples": {"arc_easy": {"original": 100, "effective": 90}},
    "versions": {"arc_easy": 1.0},
    "group_subtasks": {"arc_easy": [], "piqa": []},
    "config": {
        "model_args": "pretrained=org/m-70m,revision=step10",
        "num_fewshot": 0,
        "model_num_parameters": 70_000_000,
    },
}
PATHS = [
    "results",
    "results.arc_easy",
    "results.arc_easy.acc,none",
    "results.piqa.acc,none",
    "n-shot",
    "n-shot.arc_easy",
    "n-shot.piqa",
    "n-samples",
    "n-samples.arc_easy",
    "n-samples.arc_easy.effective",
    "versions",
    "versions.arc_easy",
    "group_subtasks",
    "group_subtasks.piqa",
    "config",
    "config.num_fewshot",
    "config.model_num_parameters",
    "config.model_args",
    "model_name",
]


def _set(doc, path, value):
    *parents, last = path.split(".")
    cur = doc
    for p in parents:
        if not isinstance(cur, dict) or not isinstance(cur.get(p), dict):
            return
        cur = cur[p]
    cur[last] = value


def _import_json(doc, name: str, **kwargs):
    """Import ``doc`` written as JSON file ``name`` into a fresh store: the stored rows, or None
    when the import was refused (and then nothing was stored)."""
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / name
        f.write_text(json.dumps(doc))
        store = ResultsStore(Path(tmp) / "s.duckdb")
        try:
            import_results(f, store, progress=False, **kwargs)
        except CkptError:
            event("refused")
            assert len(store) == 0
            return None
        df = store.to_pandas()
    event(f"imported {len(df)} rows")
    return df


def _as_whole(raw):
    """An independent reading of what the importer may store for a count: the number itself."""
    return int(float(raw))


@SETTINGS
@given(changes=st.lists(st.tuples(st.sampled_from(PATHS), JSON), min_size=1, max_size=3))
def test_lm_eval_any_value_anywhere(changes):
    doc = copy.deepcopy(BASE)
    for path, value in changes:
        _set(doc, path, value)
    df = _import_json(doc, "r.json", tokens_per_step=1000)
    if df is None:
        return
    for row in df.itertuples():
        metrics = doc["results"][row.task]
        key = row.metric if "," in row.metric else f"{row.metric},none"
        raw = metrics.get(key, metrics.get(row.metric))
        assert row.value == float(raw)
        shots = (doc.get("n-shot") or {}).get(row.task)
        if shots is None:
            shots = (doc.get("config") or {}).get("num_fewshot") or 0
        assert row.shots == _as_whole(shots) and row.shots >= 0
        assert row.step == 10 and row.tokens == 10_000
        assert 0 <= row.params <= MAX


# -- mapping YAML and wide tables -----------------------------------------------------------------

REGEX = st.sampled_from(
    [
        "(?P<task>.+)_acc",
        "(?P<task>[a-z]+)_(?P<shots>\\d+)",
        "(?P<task>[a-z]+)_(?P<metric>[a-z]+)",
        "(?P<task>.*)",
        "(?P<task>",
        "arc(?P<metric>.*)",
    ]
)
VALID_RULE_VALUES = {
    "metric": st.sampled_from(["acc", "ce_loss"]),
    "shots": st.integers(0, 5),
    "loss": st.booleans(),
    "skip": st.booleans(),
    "task": st.just("arc"),
}
# mostly valid rules; now and then any JSON value in one of their keys
RULE = st.fixed_dictionaries(
    {"match": REGEX}, optional={k: v for k, v in VALID_RULE_VALUES.items()}
) | st.fixed_dictionaries({"match": REGEX}, optional={k: JSON for k in VALID_RULE_VALUES})
OVERRIDES = st.dictionaries(
    st.sampled_from(
        [
            "run",
            "run_name",
            "step",
            "tokens",
            "params",
            "params_value",
            "tokens_per_step",
            "tokens_by_step",
            "shots",
            "columns",
            "checkpoint",
            "files",
            "filename",
            "junk",
        ]
    ),
    st.one_of(
        JSON,
        st.sampled_from(
            [
                "model",
                "step",
                "arc_acc",
                "{size}",
                "{size}-{b}",
                "(?P<size>[^-]+)-(?P<b>.+)\\.csv",
                "(?P<size>.+)\\.csv",
                "(",
                "*.csv",
                "/abs/*.csv",
                "**",
                "w*",
            ]
        ),
    ),
    max_size=2,
)
# a valid mapping with rules, then up to two keys replaced by anything
MAPPING = st.tuples(st.lists(RULE, min_size=1, max_size=3), OVERRIDES).map(
    lambda t: {"run": "model", "step": "step", "columns": t[0], **t[1]}
)
WIDE = "model,step,arc_acc,piqa_5,notes\nm-1b,10,0.25,0.5,a\nm-1b,20,0.5,0.75,b\n"
# every number in WIDE: with `step: null` the step column is a metric column like any other
CELLS = {0.25, 0.5, 0.75, 10.0, 20.0}


@settings(SETTINGS, max_examples=60)
@given(mapping=MAPPING)
def test_any_mapping_is_read_or_refused_and_never_invents_values(mapping):
    with tempfile.TemporaryDirectory() as tmp:
        m = Path(tmp) / "map.yaml"
        m.write_text(yaml.safe_dump(mapping))
        try:
            load_mapping(m)
        except ImportFormatError as exc:
            event("mapping refused")
            assert str(m) in str(exc)
            return
        d = Path(tmp) / "runs"  # a folder: files / filename / run templates all take part
        d.mkdir()
        (d / "wide.csv").write_text(WIDE)
        (d / "1B-x.csv").write_text(WIDE)
        store = ResultsStore(Path(tmp) / "s.duckdb")
        try:
            import_csv(d, store, mapping=m)
        except CkptError:
            event("import refused")
            assert len(store) == 0
            return
        df = store.to_pandas()
    event(f"imported {'some' if len(df) else 'no'} rows")
    assert set(df["value"]) <= CELLS
    assert (df["shots"] >= 0).all()


@SETTINGS
@given(text=st.text(max_size=12))
def test_tokens_per_step_text(text):
    try:
        out = parse_tokens_per_step(text)
    except ImportFormatError as exc:
        assert "--tokens-per-step" in str(exc)
        return
    if out is None:
        assert text == ""
    elif isinstance(out, int):
        assert out == int(text) and 0 < out <= MAX
    else:
        for part in text.split(","):
            if part.strip():
                run, _, n = part.partition("=")
                assert out[run.strip()] == int(n) or run.strip() in out
        assert all(0 < v <= MAX for v in out.values())


# -- columnar aggregate JSON: any value at any key -------------------------------------------------

COLUMNAR = {
    "tokens": [1000, 2000, 3000],
    "checkpoints": [1, 2, 3],
    "results": {"arc_easy": {"acc": [0.1, 0.2, 0.3], "acc_stderr": [0.01, 0.02, 0.03]}},
}
COLUMNAR_PATHS = [
    "tokens",
    "checkpoints",
    "results",
    "results.arc_easy",
    "results.arc_easy.acc",
    "results.arc_easy.acc_stderr",
    "num_fewshot",
]
LIST_OF_3 = st.lists(
    st.one_of(st.integers(0, 10**6), st.floats(0, 1), st.none(), st.just("global_step7"), JSON),
    min_size=3,
    max_size=3,
)


@SETTINGS
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(COLUMNAR_PATHS), st.one_of(JSON, LIST_OF_3)),
        min_size=1,
        max_size=2,
    )
)
def test_columnar_any_value_anywhere(changes):
    doc = copy.deepcopy(COLUMNAR)
    for path, value in changes:
        _set(doc, path, value)
    df = _import_json(doc, "run-a_agg.json")
    if df is None:
        return
    steps = [
        int(c.removeprefix("global_step")) if isinstance(c, str) else _as_whole(c)
        for c in doc["checkpoints"]
    ]
    for row in df.itertuples():
        i = steps.index(row.step)
        assert row.run == "run-a" and row.value == float(doc["results"][row.task][row.metric][i])
        tok = doc["tokens"][i] if isinstance(doc.get("tokens"), list) else None
        assert (row.tokens == _as_whole(tok)) if tok is not None else pd.isna(row.tokens)
