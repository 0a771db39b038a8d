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

from ckpt_toolkit.errors import StoreError, StoreLockedError
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


# -- opening, locking and exporting (issue 13) ------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect({path!r})
    print("holding", flush=True)
    time.sleep({seconds})
    con.close()
    """
)


def _hold_lock(path, seconds):
    """A real second process that opens the store for writing and keeps it for ``seconds``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(path=str(path), seconds=seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "holding"
    return proc


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), b"run,checkpoint\nr,a\n" * 50, b""],
    ids=["bytes", "text", "empty"],
)
def test_not_a_duckdb_file_fails_at_once(tmp_path, content):
    bad = tmp_path / "results.duckdb"
    bad.write_bytes(content)
    t0 = time.monotonic()
    for read_only in (False, True):
        with pytest.raises(StoreError, match="results.duckdb is not a DuckDB file"):
            ResultsStore(bad, read_only=read_only)
    assert time.monotonic() - t0 < 5  # no 25 s of "lock" retries
    assert bad.read_bytes() == content  # and the file is left as it was


def test_store_path_that_is_a_folder_or_below_a_file(tmp_path):
    (tmp_path / "dir.duckdb").mkdir()
    with pytest.raises(StoreError, match="dir.duckdb is a folder, not a DuckDB file"):
        ResultsStore(tmp_path / "dir.duckdb")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match=r"notes.txt is a file, not a folder"):
        ResultsStore(tmp_path / "notes.txt" / "deeper" / "s.duckdb")


def test_export_refuses_to_overwrite_the_store(tmp_path):
    path = tmp_path / "s.duckdb"
    st = ResultsStore(path)
    st.upsert([_row(), _row(metric="bpb", value=1.25)])
    before = path.read_bytes()
    (tmp_path / "alias.csv").symlink_to(path)
    other = tmp_path / "other.duckdb"
    ResultsStore(other).upsert([_row(value=0.75)])
    for out, fmt, msg in [
        (path, "csv", "onto the results store itself"),
        (path, "parquet", "onto the results store itself"),
        (tmp_path / "alias.csv", None, "onto the results store itself"),
        (tmp_path / "sub" / ".." / "s.duckdb", "csv", "onto the results store itself"),
        (other, "parquet", "other.duckdb: it is a DuckDB database"),
    ]:
        with pytest.raises(StoreError, match=msg):
            st.export(out, fmt)
    assert path.read_bytes() == before
    assert len(ResultsStore(path)) == 2 and len(ResultsStore(other)) == 1


def test_locked_store_waits_with_a_message_then_writes(tmp_path, capfd):
    """A second process holds the write lock for ~3 s: the upsert waits, names the holder's
    PID on stderr, and lands once the lock is released."""
    path = tmp_path / "s.duckdb"
    st = ResultsStore(path, lock_timeout=60)
    st.upsert([_row()])
    holder = _hold_lock(path, 3)
    t0 = time.monotonic()
    assert st.upsert([_row(metric="after", value=0.25)]) == 1
    waited = time.monotonic() - t0
    holder.wait()
    err = capfd.readouterr().err
    assert waited > 1.0  # it really waited for the other process
    assert f"locked by PID {holder.pid}" in err and "waiting up to 60 s" in err
    assert "lock released" in err
    assert sorted(st.to_pandas()["metric"]) == ["acc", "after"]


def test_lock_that_never_frees_keeps_the_rows(tmp_path, capfd):
    """The lock outlives the timeout: a named error, and the rows are kept and written at the
    next writable open instead of being discarded."""
    path = tmp_path / "s.duckdb"
    st = ResultsStore(path, lock_timeout=0.5)
    st.upsert([_row()])
    holder = _hold_lock(path, 4)
    try:
        with pytest.raises(StoreLockedError, match=f"locked by PID {holder.pid}") as info:
            st.upsert(
                [_row(ck="r@step2", value=0.125), _row(ck="r@step2", metric="n", value=7.0)],
                checkpoints=[{"checkpoint": "r@step2", "run": "r", "step": 2}],
            )
        kept = info.value.kept
        assert kept is not None and kept.is_file() and str(kept) in str(info.value)
    finally:
        holder.wait()
    reopened = ResultsStore(path)
    df = reopened.to_pandas()
    got = df[df.checkpoint == "r@step2"].set_index("metric")["value"].to_dict()
    assert got == {"acc": 0.125, "n": 7.0}
    assert "r@step2" in set(reopened.checkpoints()["checkpoint"])
    assert not kept.exists() and not kept.parent.exists()
    assert "wrote 2 row(s) kept" in capfd.readouterr().err


def test_lock_timeout_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CKPT_STORE_LOCK_TIMEOUT", "2.5")
    assert ResultsStore(tmp_path / "s.duckdb").lock_timeout == 2.5
    monkeypatch.setenv("CKPT_STORE_LOCK_TIMEOUT", "soon")
    with pytest.raises(StoreError, match="CKPT_STORE_LOCK_TIMEOUT='soon'"):
        ResultsStore(tmp_path / "s.duckdb")
