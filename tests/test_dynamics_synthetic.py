"""Dynamics analyses on constructed curves with known answers, and on zoo-like probe rows with
only a few checkpoints (everything must degrade to 'skipped' with a reason, never crash)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import tidy_rows

from ckpt_toolkit.analysis.dynamics import (
    curves,
    discordant_share,
    fit_curves,
    phases,
    run_dynamics,
    score_table,
)

STEPS = [0] + [int(round(10**e)) for e in np.arange(1, 5.01, 0.25)]  # 0, 10 .. 100000


def _rows(run, task, values, stderr, chance=0.25, probe="kshot", capability="world_knowledge",
          steps=STEPS, metric="acc", params=1_000_000):  # fmt: skip
    return tidy_rows(run, task, values, steps=steps, params=params, stderr=stderr, chance=chance,
                     metric=metric, probe=probe, capability=capability, spec_hash="h")  # fmt: skip


def _logistic(steps, mid, top=0.9, chance=0.25):
    lx = np.log10(np.maximum(steps, 1) * 1000.0)
    return chance + (top - chance) / (1 + np.exp(-4 * (lx - mid)))


def test_phase_landmarks_of_a_logistic_curve():
    vals = _logistic(STEPS, mid=6.5)  # midpoint at 10^6.5 tokens
    df = pd.DataFrame(_rows("r", "capitals", vals, stderr=0.005))
    cv = curves(df)
    ph = phases(cv).set_index(["level", "benchmark"]).loc[("benchmark", "capitals")]
    final = (vals[-1] - 0.25) / 0.75
    assert ph["final_norm"] == pytest.approx(final, abs=0.02)
    # tokens to 50% of the final score: the logistic's midpoint, up to one grid step (0.25 dec)
    # the final point sits at 99.8% of the asymptote, so 50% of final ≈ the midpoint 10^6.5
    x50_true = 10**6.5
    assert abs(np.log10(ph["x_50"]) - np.log10(x50_true)) <= 0.3
    assert ph["x_50"] < ph["x_90"]
    # emergence: first point above the step-0 baseline by 2 stderrs, computed here
    norm = (vals - 0.25) / 0.75
    se = 0.005 / 0.75
    thr = max(0, norm[0]) + 2 * np.sqrt(2) * se
    first = next(i for i in range(1, len(norm)) if norm[i] > thr and norm[i + 1] > thr)
    assert ph["emergence_x"] == STEPS[first] * 1000
    assert not ph["peak_then_decline"]


@pytest.mark.parametrize("stderr, flagged", [(0.01, True), (0.3, False)])
def test_peak_then_decline_only_beyond_noise(stderr, flagged):
    lx = np.log10(np.maximum(STEPS, 1))
    vals = 0.25 + 0.6 * np.exp(-((lx - 3.5) ** 2) / 0.8)  # rises, peaks at 10^3.5, falls back
    vals = np.clip(vals, 0.25, 1)
    ph = phases(curves(pd.DataFrame(_rows("r", "capitals", vals, stderr=stderr))))
    row = ph[(ph.level == "benchmark")].iloc[0]
    assert row["decline"] > 0.3
    assert bool(row["peak_then_decline"]) is flagged


def test_power_law_fit_recovers_parameters():
    steps = [int(s) for s in np.geomspace(10, 1e5, 20)]
    u = np.array(steps) / steps[-1]
    norm = 0.8 * u**0.3
    vals = 0.25 + 0.75 * norm  # chance 0.25 → norm exactly 0.8 u^0.3
    cv = curves(pd.DataFrame(_rows("r", "capitals", vals, stderr=0.01, steps=steps)))
    fits = fit_curves(cv)
    pl = fits[(fits.level == "benchmark") & (fits.model == "power_law")].iloc[0]
    assert json.loads(pl["params"]) == pytest.approx([0.8, 0.3], rel=1e-3)
    assert pl["rmse_heldout"] < 1e-4 and abs(pl["error_final"]) < 1e-4


def test_discordant_share_by_hand():
    loss = np.array([3.0, 2.5, 2.0, 1.9])
    score = np.array([0.1, 0.3, 0.2, 0.4])
    # pairs: (0,1) ok (0,2) ok (0,3) ok (1,2) discordant (1,3) ok (2,3) ok → 1/6
    share, share_sig, n = discordant_share(loss, score, np.full(4, 0.01))
    assert n == 6 and share == pytest.approx(1 / 6) and share_sig == pytest.approx(1 / 6)
    share, share_sig, _ = discordant_share(loss, score, np.full(4, 0.1))
    assert np.isnan(share_sig) or share_sig == 0.0  # differences within 2 stderrs don't count


def _zoo_like(n_ckpt=3):
    """Probe rows as the zoo sweep writes them: kshot (capability + chance in provenance),
    ppl (loss), for two runs with only a few checkpoints."""
    rng = np.random.default_rng(0)
    steps = [0, 50, 100, 200, 400][:n_ckpt]
    rows = []
    tasks = {
        "capitals": "world_knowledge",
        "birthplaces": "world_knowledge",
        "where_is": "reading_comprehension",
        "category": "commonsense",
        "arithmetic": "math",
        "code_output": "code",
    }
    for run, params in (("tiny-a", 100_000), ("tiny-b", 400_000)):
        for task, cap in tasks.items():
            vals = 0.25 + np.linspace(0, 0.3, len(steps)) + rng.normal(0, 0.02, len(steps))
            rows += _rows(run, task, vals, 0.03, capability=cap, steps=steps, params=params)
        rows += _rows(
            run,
            "wiki",
            np.linspace(6, 4, len(steps)),
            None,
            probe="ppl",
            capability="language_modeling",
            metric="loss",
            steps=steps,
            params=params,
        )
        rows += _rows(
            run,
            "capitals",
            [0.5] * len(steps),
            None,
            probe="sft",
            metric="score",
            steps=steps,
            params=params,
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n_ckpt", [1, 3, 5])
def test_few_checkpoints_degrade_gracefully(tmp_path, n_ckpt):
    df = _zoo_like(n_ckpt)
    t = run_dynamics(df, tmp_path, x="step")
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == sorted(f"{k}.csv" for k in t)
    cv = t["curves"]
    assert set(cv[cv.level == "category"]["benchmark"]) == {
        "knowledge",
        "reading_comprehension",
        "commonsense",
        "reasoning_math",
        "code",
    }
    assert "sft" not in set(cv["metric"]) and cv["x"].max() == [0, 50, 100, 200, 400][n_ckpt - 1]
    for name, tab in t.items():
        if "status" in tab:
            skipped = tab[tab["status"] == "skipped"]
            assert skipped["reason"].astype(str).str.len().gt(0).all(), name
    if n_ckpt <= 3:
        assert (t["fits"]["status"] == "skipped").all()
        assert "status" in t["phases"]
    if n_ckpt == 5:
        la = t["loss_agreement"]
        assert (la["status"] == "ok").any() and (la["loss_source"] == "probe=ppl/metric=loss").all()


def test_score_table_chance_from_provenance():
    df = _zoo_like(3)
    st = score_table(df)
    r = st[(st.run == "tiny-a") & (st.benchmark == "capitals")].sort_values("x")
    raw = df[(df.run == "tiny-a") & (df.task == "capitals") & (df.probe == "kshot")]
    assert r["norm"].to_numpy() == pytest.approx(((raw["value"] - 0.25) / 0.75).to_numpy())


def test_dynamics_on_real_probe_rows(tmp_path, tiny_tokenizer):
    """The probe sweep's own rows (kshot + ppl on three tiny checkpoints) go through the same
    analyses: categories from the rows' capability, chance from their provenance, the ppl probe
    loss as the loss-like metric. Uses the smoke zoo's store instead when that fixture exists."""
    from helpers import make_tiny_checkpoint

    from ckpt_toolkit.probes import run_probes
    from ckpt_toolkit.store import ResultsStore
    from ckpt_toolkit.tasks import write_task_file

    run = tmp_path / "tiny-run"
    for seed, step in enumerate((10, 20, 40)):
        make_tiny_checkpoint(run / f"checkpoint-{step}", seed=seed, tokenizer=tiny_tokenizer)
    items = []
    for cap, task in (("math", "add"), ("world_knowledge", "capitals")):
        rows = [
            {
                "context": f"Q{i}: {i} and {i + 1}?\nA:",
                "choices": [" yes", " no", " maybe"],
                "gold": i % 3,
                "capability": cap,
                "split": "train" if i < 2 else "test",
            }
            for i in range(8)
        ]
        items.append(write_task_file(tmp_path / "tasks" / f"{task}.jsonl", rows))
    held = tmp_path / "heldout"
    held.mkdir()
    (held / "wiki.jsonl").write_text(
        json.dumps({"text": "The capital of Avalon is Brill. " * 6}) + "\n"
    )
    store = ResultsStore(tmp_path / "r.duckdb")
    run_probes(
        str(run),
        store,
        tasks=tmp_path / "tasks",
        heldout=held,
        shots=(0,),
        batch_size=8,
        progress=False,
    )
    df = store.to_pandas()
    t = run_dynamics(df, tmp_path / "out", x="step")
    cv = t["curves"]
    cats = set(cv[cv.level == "category"]["benchmark"])
    assert cats == {"knowledge", "reasoning_math"}
    add = cv[(cv.benchmark == "add") & (cv.step == 20)].iloc[0]
    raw = df[(df.task == "add") & (df.metric == "acc") & (df.step == 20)].iloc[0]
    chance = json.loads(raw["provenance"])["chance"]
    assert chance == pytest.approx(1 / 3)
    assert add["norm"] == pytest.approx((raw["value"] - chance) / (1 - chance))
    from ckpt_toolkit.analysis.dynamics import loss_table

    lt = loss_table(df, x="step").set_index("checkpoint")
    assert set(lt["loss_source"]) == {"probe=ppl/metric=loss"} and len(lt) == 3
    want = df[(df.probe == "ppl") & (df.metric == "loss")].groupby("checkpoint")["value"].mean()
    assert lt["loss"].to_dict() == pytest.approx(want.to_dict())
    la = t["loss_agreement"]
    assert len(la) > 0 and la["reason"].notna().all()
    if (la["status"] == "ok").any():
        assert (la[la.status == "ok"]["loss_source"] == "probe=ppl/metric=loss").all()


def test_missing_x_axis_is_a_clear_error():
    from ckpt_toolkit.errors import ParameterError

    df = _zoo_like(3).assign(tokens=None)
    with pytest.raises(ParameterError, match="x='step'"):
        run_dynamics(df, None, x="tokens")
    assert len(run_dynamics(df, None, x="step")["curves"]) > 0


def test_dynamics_on_the_smoke_zoo(smoke_zoo, tmp_path):
    """The zoo's own probe rows (4 runs x 3 checkpoints) through every analysis."""
    from ckpt_toolkit.probes import run_probes
    from ckpt_toolkit.store import ResultsStore

    store = ResultsStore(tmp_path / "zoo.duckdb")
    run_probes(
        str(smoke_zoo), store, probes=("ppl", "kshot"), limit=6, batch_size=16, progress=False
    )
    df = store.to_pandas()
    t = run_dynamics(df, tmp_path / "out")
    cv = t["curves"]
    cats = set(cv[cv.level == "category"]["benchmark"])
    assert {"knowledge", "reading_comprehension", "commonsense", "reasoning_math", "code"} <= cats
    assert cv.groupby("run")["checkpoint"].nunique().min() >= 2
    # categories come from the rows' own capability labels
    caps = df[df.probe == "kshot"].groupby("task")["capability"].first()
    bench = cv[cv.level == "benchmark"].groupby("benchmark")["category"].first()
    alias = {"world_knowledge": "knowledge", "math": "reasoning_math"}
    for task, cap in caps.items():
        assert bench[task] == alias.get(cap, cap)
    assert set(t["loss_agreement"]["loss_source"].dropna()) <= {"probe=ppl/metric=loss"}
    for name, tab in t.items():
        assert (tmp_path / "out" / f"{name}.csv").is_file()
        if "status" in tab:
            assert tab.loc[tab["status"] == "skipped", "reason"].astype(str).str.len().gt(0).all()
