"""The analysis cache of the reports (ckpt_toolkit/reports/cache.py) and the runner's skipping of
unchanged reports: hits, invalidation by new or changed rows, parameters, corrupt entries."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ckpt_toolkit.reports import cache as C
from ckpt_toolkit.store import ResultsStore


def _rows(runs=("a", "b"), steps=(10, 20, 40), tasks=("t1", "t2"), shift=0.0) -> list[dict]:
    rows = []
    for r in runs:
        for s in steps:
            for t in tasks:
                rows.append(
                    dict(run=r, checkpoint=f"{r}@{s}", step=s, tokens=s * 100, probe="kshot",
                         task=t, metric="acc", value=0.25 + s / 100 + shift + 0.01 * len(t),
                         shots=0, spec_hash="k0")
                )  # fmt: skip
    return rows


@pytest.fixture
def store(tmp_path) -> Path:
    path = tmp_path / "s.duckdb"
    ResultsStore(path).upsert(_rows())
    return path


class Counter:
    """A compute function for :func:`C.cached`: the mean value per run, read from the store;
    counts its calls."""

    def __init__(self, store: Path):
        self.store, self.calls = store, 0

    def __call__(self):
        self.calls += 1
        df = ResultsStore(self.store, read_only=True).to_pandas()
        means = df.groupby("run", as_index=False)["value"].mean()
        return {"means": means}, {"n_rows": len(df)}


def _expected_means(rows: list[dict]) -> dict[str, float]:
    """Independent of the code under test: plain Python over the rows written."""
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["run"], []).append(r["value"])
    return {k: sum(v) / len(v) for k, v in by.items()}


def test_same_store_hits_new_row_recomputes(store):
    f = Counter(store)
    first = C.cached(store, "demo", {"k": 1}, f)
    assert f.calls == 1 and not first.hit and first.entry is not None
    second = C.cached(store, "demo", {"k": 1}, f)
    assert f.calls == 1 and second.hit  # read back, not computed
    assert second.meta == {"n_rows": 12}
    got = dict(zip(second.frames["means"]["run"], second.frames["means"]["value"]))
    assert got == pytest.approx(_expected_means(_rows()))
    pd.testing.assert_frame_equal(first.frames["means"], second.frames["means"])

    extra = dict(_rows(runs=("a",), steps=(80,), tasks=("t1",))[0])
    ResultsStore(store).upsert([extra])  # one new row
    third = C.cached(store, "demo", {"k": 1}, f)
    assert f.calls == 2 and not third.hit
    got = dict(zip(third.frames["means"]["run"], third.frames["means"]["value"]))
    assert got == pytest.approx(_expected_means([*_rows(), extra]))
    # the entry for the older rows is gone: one entry per (analysis, parameters)
    assert [p.name for p in (C.cache_dir(store) / "demo").iterdir()] == [third.entry.name]
    assert C.cached(store, "demo", {"k": 1}, f).hit and f.calls == 2


def test_changed_value_recomputes_and_created_at_does_not(store):
    f = Counter(store)
    C.cached(store, "demo", {}, f)
    ResultsStore(store).upsert(_rows())  # same values re-written: only created_at changes
    assert C.cached(store, "demo", {}, f).hit and f.calls == 1
    ResultsStore(store).upsert(_rows(shift=0.001))  # same keys, other values
    assert not C.cached(store, "demo", {}, f).hit and f.calls == 2


def test_different_params_different_entry(store):
    f = Counter(store)
    a = C.cached(store, "demo", {"k": 1}, f)
    b = C.cached(store, "demo", {"k": 2}, f)
    assert f.calls == 2 and a.entry != b.entry and a.entry.is_dir() and b.entry.is_dir()
    assert C.cached(store, "demo", {"k": 1}, f).hit and C.cached(store, "demo", {"k": 2}, f).hit
    assert f.calls == 2


def test_rows_of_other_runs_do_not_invalidate(store):
    f = Counter(store)
    C.cached(store, "demo", {}, f, runs=["a"])
    ResultsStore(store).upsert(_rows(runs=("c",)))
    assert C.cached(store, "demo", {}, f, runs=["a"]).hit and f.calls == 1
    ResultsStore(store).upsert(_rows(runs=("a",), steps=(99,)))
    assert not C.cached(store, "demo", {}, f, runs=["a"]).hit and f.calls == 2


@pytest.mark.parametrize("damage", ["parquet", "meta", "missing"])
def test_corrupt_entry_is_recomputed_not_an_error(store, damage, caplog):
    f = Counter(store)
    entry = C.cached(store, "demo", {}, f).entry
    if damage == "parquet":
        (entry / "means.parquet").write_bytes(b"PAR1 not really parquet")
    elif damage == "meta":
        (entry / "meta.json").write_text('{"format": 1, "tables": {"means": ')
    else:
        (entry / "means.parquet").unlink()
    again = C.cached(store, "demo", {}, f)
    assert f.calls == 2 and not again.hit
    assert "unreadable" in caplog.text
    got = dict(zip(again.frames["means"]["run"], again.frames["means"]["value"]))
    assert got == pytest.approx(_expected_means(_rows()))
    assert C.cached(store, "demo", {}, f).hit and f.calls == 2  # the rewritten entry reads


def test_modes_off_and_refresh(store, monkeypatch):
    f = Counter(store)
    monkeypatch.setenv(C.CACHE_ENV, "off")
    C.cached(store, "demo", {}, f)
    C.cached(store, "demo", {}, f)
    assert f.calls == 2 and not C.cache_dir(store).exists()
    monkeypatch.setenv(C.CACHE_ENV, "on")
    C.cached(store, "demo", {}, f)
    monkeypatch.setenv(C.CACHE_ENV, "refresh")
    assert not C.cached(store, "demo", {}, f).hit and f.calls == 4
    monkeypatch.setenv(C.CACHE_ENV, "on")
    assert C.cached(store, "demo", {}, f).hit and f.calls == 4


def test_mixed_object_columns_round_trip(store):
    frame = pd.DataFrame(
        {
            "mixed": [1, "two", None],
            "nested": [{"a": 1}, {"b": [1, 2]}, None],
            "x": [0.5, np.nan, 2.0],
            "flag": [True, False, True],
        }
    )
    C.cached(store, "mixed", {}, lambda: ({"t": frame}, {}))
    back = C.cached(store, "mixed", {}, lambda: ({"t": frame.iloc[:0]}, {}))
    assert back.hit
    t = back.frames["t"]
    assert list(t["mixed"]) == [1, "two", None] and list(t["nested"]) == [
        {"a": 1},
        {"b": [1, 2]},
        None,
    ]
    assert t["x"].isna().tolist() == [False, True, False] and t["flag"].tolist() == [
        True,
        False,
        True,
    ]


def test_store_digest_per_run(store):
    d1 = C.store_digest(store)
    assert d1.rows == 12 and set(d1.runs) == {"a", "b"}
    ResultsStore(store).upsert(_rows(runs=("b",), steps=(99,)))
    d2 = C.store_digest(store)
    assert d2.rows == 14 and d2.runs["a"] == d1.runs["a"] and d2.runs["b"] != d1.runs["b"]
    assert d2.of_runs(["a"]) == d1.of_runs(["a"]) and d2.total != d1.total


# -- the analyses the notebooks read ------------------------------------------------------------
def _dynamics_store(path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for run, params in (("small", 10**6), ("big", 10**7)):
        for step in (0, 10, 20, 40, 80, 160, 320):
            base = dict(run=run, checkpoint=f"{run}@{step}", step=step, tokens=step * 1000,
                        params=params)  # fmt: skip
            rows.append({**base, "probe": "ppl", "task": "web", "metric": "loss",
                         "value": 4.0 / (1 + step / 50) + rng.normal(0, 0.01)})  # fmt: skip
            for task in ("arc_easy", "piqa", "sciq"):
                acc = 0.25 + 0.5 * step / 320 * (2 if run == "big" else 1) / 2
                rows.append({**base, "probe": "lm-eval", "task": task, "metric": "acc",
                             "value": acc + rng.normal(0, 0.01), "stderr": 0.01})  # fmt: skip
    ResultsStore(path).upsert(rows)
    return path


def test_dynamics_tables_equal_run_dynamics_and_hit(tmp_path, monkeypatch):
    from ckpt_toolkit.analysis import dynamics

    store = _dynamics_store(tmp_path / "d.duckdb")
    direct = dynamics.run_dynamics(ResultsStore(store).to_pandas(), None, x="step", last_n=2)
    calls = []
    real = dynamics.run_dynamics
    monkeypatch.setattr(dynamics, "run_dynamics", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = C.dynamics_tables(store, x="step", last_n=2)
    second = C.dynamics_tables(store, x="step", last_n=2)
    assert len(calls) == 1
    assert list(second) == list(direct)
    for name, df in direct.items():
        pd.testing.assert_frame_equal(second[name], df, obj=name)
        pd.testing.assert_frame_equal(first[name], df, obj=name)
    C.dynamics_tables(store, x="step", last_n=3)  # other parameters: computed
    C.dynamics_tables(store, x="step", last_n=2, runs=["big"])
    assert len(calls) == 3


def test_pairwise_tables_hit_and_warnings_again(tmp_path, monkeypatch):
    from ckpt_toolkit.analysis import pairwise

    store = _dynamics_store(tmp_path / "p.duckdb")
    kw = dict(fallback_targets=["sciq"], classifier="logreg", n_splits=2, n_boot=10, seed=0,
              progress=False)  # fmt: skip
    calls = []
    real = pairwise.evaluate_store
    monkeypatch.setattr(
        pairwise, "evaluate_store", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    with warnings.catch_warnings(record=True) as w1:
        warnings.simplefilter("always")
        i1, r1 = C.pairwise_tables(store, **kw)
    with warnings.catch_warnings(record=True) as w2:
        warnings.simplefilter("always")
        i2, r2 = C.pairwise_tables(store, **kw)
    assert len(calls) == 1
    assert [str(w.message) for w in w2] == [str(w.message) for w in w1]
    # read back, each warning keeps its category (the demo and CLI print PairwiseWarning)
    assert [w.category for w in w2] == [w.category for w in w1]
    assert any(issubclass(w.category, pairwise.PairwiseWarning) for w in w2)
    assert i2.targets == i1.targets and [t.split(":")[-1] for t in i1.targets] == ["sciq"]
    assert i2.proxies == i1.proxies and i2.stand_in is i1.stand_in is True
    assert r2.summary == json.loads(json.dumps(r1.summary))
    for name, df in r1.frames().items():
        pd.testing.assert_frame_equal(getattr(r2, name), df, obj=name)
    pd.testing.assert_frame_equal(r2.table, r1.table)


def test_unwritable_cache_folder_only_loses_the_reuse(store, caplog):
    C.cache_dir(store).write_text("a file where the cache folder would be")
    f = Counter(store)
    a = C.cached(store, "demo", {}, f)
    b = C.cached(store, "demo", {}, f)
    assert f.calls == 2 and not a.hit and not b.hit and a.entry is None
    got = dict(zip(b.frames["means"]["run"], b.frames["means"]["value"]))
    assert got == pytest.approx(_expected_means(_rows()))
    assert "could not write" in caplog.text
