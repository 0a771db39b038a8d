"""ResultsStore.bulk_upsert: vectorised checks, one transaction, idempotent, metadata merge."""

from __future__ import annotations

import pandas as pd
import pytest

from ckpt_toolkit.errors import StoreError
from ckpt_toolkit.store import ResultsStore


def _frame(n: int, value: float = 0.5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run": "r",
            "checkpoint": [f"r@step{i}" for i in range(n)],
            "step": range(n),
            "probe": "import",
            "task": "piqa",
            "metric": "acc",
            "value": value,
            "shots": 0,
            "spec_hash": "h",
        }
    )


def test_bulk_upsert_is_idempotent_and_replaces(tmp_path):
    s = ResultsStore(tmp_path / "s.duckdb")
    assert s.bulk_upsert(_frame(5)) == 5
    assert s.bulk_upsert(_frame(5, value=0.75)) == 5  # same keys: replaced, not added
    df = s.to_pandas()
    assert len(df) == 5 and set(df["value"]) == {0.75}
    mixed = pd.concat([_frame(7, value=0.25).iloc[3:]], ignore_index=True)  # 2 old, 2 new
    s.bulk_upsert(mixed)
    df = s.to_pandas().set_index("step")["value"]
    assert len(df) == 7 and df[2] == 0.75 and df[3] == 0.25 and df[6] == 0.25


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"value": float("inf")}, "not a finite number"),
        ({"value": "high"}, "not a finite number"),
        ({"checkpoint": None}, "required column 'checkpoint'"),
        ({"step": 1.5}, "step 1.5 is not a whole number"),
        ({"colour": "red"}, "unknown column"),
    ],
)
def test_bulk_upsert_refuses_bad_rows_and_writes_nothing(tmp_path, change, needle):
    s = ResultsStore(tmp_path / "s.duckdb")
    s.bulk_upsert(_frame(2))
    bad = _frame(3)
    for col, val in change.items():
        bad[col] = bad[col].astype(object) if col in bad else None
        bad.loc[2, col] = val
    with pytest.raises(StoreError, match=needle):
        s.bulk_upsert(bad)
    assert len(s) == 2


def test_bulk_upsert_refuses_duplicate_keys(tmp_path):
    s = ResultsStore(tmp_path / "s.duckdb")
    f = pd.concat([_frame(2), _frame(1)], ignore_index=True)
    with pytest.raises(StoreError, match="rows 0 and 2 share the key"):
        s.bulk_upsert(f)
    assert len(s) == 0


def test_metadata_merge_rule(tmp_path):
    s = ResultsStore(tmp_path / "s.duckdb")
    known = {
        "checkpoint": "r@step0",
        "run": "r",
        "fingerprint": "fp",
        "path": "/c",
        "config": {"lr": 1, "imports": [{"source": "a"}]},
    }
    s.upsert([], checkpoints=[known])
    imp = {
        "checkpoint": "r@step0",
        "run": "r",
        "step": 0,
        "fingerprint": None,
        "config": {"lr": 2, "size": "1B", "imports": [{"source": "a"}, {"source": "b"}]},
    }
    s.bulk_upsert(_frame(1), [imp])  # prefer="existing": fills gaps only
    ck = s.checkpoints().set_index("checkpoint").loc["r@step0"]
    assert (ck["fingerprint"], ck["path"], ck["step"]) == ("fp", "/c", 0)
    assert ck["config"] == {
        "lr": 1,
        "size": "1B",
        "imports": [{"source": "a"}, {"source": "b"}],
    }
    s.bulk_upsert(_frame(0), [dict(imp, fingerprint="new")], prefer="incoming")
    ck = s.checkpoints().set_index("checkpoint").loc["r@step0"]
    assert ck["fingerprint"] == "new" and ck["config"]["lr"] == 2 and ck["path"] == "/c"
