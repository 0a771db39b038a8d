"""The results store: round trips, idempotent upserts, transactions, crash safety, export."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from ckpt_toolkit.errors import StoreError
from ckpt_toolkit.store import COLUMNS, ResultsStore


def _row(ck="r@step1", metric="acc", value=0.5, **kw):
    base = dict(
        run="r",
        checkpoint=ck,
        step=1,
        tokens=100,
        params=10,
        probe="kshot",
        task="t",
        capability="math",
        metric=metric,
        value=value,
        stderr=0.1,
        n=20,
        shots=5,
        spec_hash="abc",
        fingerprint="fp1",
    )
    base.update(kw)
    return base


def test_round_trip_and_columns(tmp_path):
    st = ResultsStore(tmp_path / "s.duckdb")
    assert st.upsert([_row(), _row(metric="acc_norm", value=0.25)]) == 2
    df = st.to_pandas()
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 2
    got = df.set_index("metric")["value"].to_dict()
    assert got == {"acc": 0.5, "acc_norm": 0.25}
    assert (df["toolkit_version"] == "0.1.0").all()
    assert df["created_at"].notna().all()
    assert st.to_pandas(metric="acc")["value"].tolist() == [0.5]
    assert st.has("fp1", "abc") and not st.has("fp1", "other")
    assert st.done() == {("fp1", "abc")}


def test_upsert_is_idempotent_on_key(tmp_path):
    st = ResultsStore(tmp_path / "s.duckdb")
    st.upsert([_row(value=0.1)])
    st.upsert([_row(value=0.9)])  # same key → replaced, not duplicated
    st.upsert([_row(value=0.9, shots=0)])  # different shots → new row
    df = st.to_pandas()
    assert len(df) == 2
    assert sorted(df["value"]) == [0.9, 0.9]


def test_bad_rows_are_rejected_whole(tmp_path):
    st = ResultsStore(tmp_path / "s.duckdb")
    st.upsert([_row()])
    with pytest.raises(StoreError, match="not finite"):
        st.upsert([_row(metric="x", value=1.0), _row(metric="y", value=math.nan)])
    with pytest.raises(StoreError, match="required column 'probe'"):
        st.upsert([{"checkpoint": "a", "metric": "m", "value": 1.0}])
    with pytest.raises(StoreError, match="unknown column"):
        st.upsert([_row(colour="red")])
    with pytest.raises(StoreError, match="share the key"):
        st.upsert([_row(), _row()])
    with pytest.raises(StoreError, match="not a number"):
        st.upsert([_row(value="high")])
    assert len(st) == 1  # nothing of the failed calls landed


def test_checkpoint_metadata(tmp_path):
    st = ResultsStore(tmp_path / "s.duckdb")
    st.upsert(
        [_row()],
        checkpoints=[
            {
                "checkpoint": "r@step1",
                "run": "r",
                "step": 1,
                "config": {"objective": "clm", "lr": 1e-3},
            }
        ],
    )
    ck = st.checkpoints()
    assert ck.loc[0, "config"] == {"objective": "clm", "lr": 1e-3}


def test_export_csv_and_parquet(tmp_path):
    st = ResultsStore(tmp_path / "s.duckdb")
    st.upsert([_row(), _row(metric="bpb", value=1.25)])
    csv = st.export(tmp_path / "out.csv")
    pq = st.export(tmp_path / "out.parquet")
    a, b = pd.read_csv(csv), pd.read_parquet(pq)
    assert sorted(a["value"]) == sorted(b["value"]) == [0.5, 1.25]
    with pytest.raises(StoreError, match="csv or parquet"):
        st.export(tmp_path / "out.xlsx")


def test_read_only_missing_store(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        ResultsStore(tmp_path / "nope.duckdb", read_only=True)


WRITER = textwrap.dedent(
    """
    import sys, time, duckdb
    sys.path.insert(0, {root!r})
    from ckpt_toolkit.store import ResultsStore, normalize_row
    st = ResultsStore({path!r})
    con = duckdb.connect({path!r})
    con.execute("BEGIN TRANSACTION")
    for i in range(500):
        r = normalize_row(dict(checkpoint="half@step%d" % i, probe="p", metric="m", value=i))
        cols = list(r)
        con.execute("INSERT INTO measurements (%s) VALUES (%s)" % (",".join(cols), ",".join("?" * len(cols))), list(r.values()))
    print("inserted", flush=True)
    time.sleep(60)
    """
)


def test_killed_writer_leaves_previous_state(tmp_path):
    """A writer SIGKILLed mid-transaction: the store opens afterwards with exactly the old rows."""
    path = str(tmp_path / "s.duckdb")
    st = ResultsStore(path)
    st.upsert([_row(), _row(metric="acc_norm")])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(root=root, path=path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "inserted"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(0.2)
    df = ResultsStore(path).to_pandas()
    assert len(df) == 2
    assert not df["checkpoint"].str.startswith("half").any()
    st.upsert([_row(metric="new")])  # and it is writable again
    assert len(st) == 3
