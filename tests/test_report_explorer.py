"""The explorer's redraw callback, called directly (no kernel, no widgets front-end)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from test_notebooks import EVIL, probe_rows  # noqa: E402

from ckpt_toolkit.errors import ParameterError  # noqa: E402
from ckpt_toolkit.reports.explorer import CurveExplorer  # noqa: E402


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return pd.DataFrame(probe_rows()[0])


def test_options_come_from_the_store(rows):
    ex = CurveExplorer(rows)
    assert ex.runs == sorted(rows["run"].unique())
    # probe rows without a capability (held-out ppl, sft task=capability) are grouped by probe
    assert {"world_knowledge", "math", "reading_comprehension", "ppl"} <= set(ex.capabilities)
    assert ex.default_metric() == "acc"


def test_draw_per_task_matches_the_rows(rows):
    import matplotlib.pyplot as plt

    ex = CurveExplorer(rows)
    fig = ex.draw(["zoo-small"], ["math"], "acc", log_x=True, mode="per task")
    sel = ex.last
    assert set(sel["run"]) == {"zoo-small"} and set(sel["line"]) == {"addition", "counting"}
    assert (sel["x"] > 0).all()  # step 0 cannot sit on a log axis
    want = (
        rows[
            (rows.run == "zoo-small")
            & (rows.task == "addition")
            & (rows.metric == "acc")
            & (rows.tokens > 0)
        ]
        .sort_values("tokens")["value"]
        .to_numpy()
    )
    got = sel[sel.line == "addition"].sort_values("x")["value"].to_numpy()
    np.testing.assert_allclose(got, want)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "acc"
    assert len([ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1]) == 2
    plt.close(fig)


def test_draw_capability_mean_and_linear_axis(rows):
    import matplotlib.pyplot as plt

    ex = CurveExplorer(rows)
    fig = ex.draw(
        [EVIL, "zoo-base"], ["world_knowledge"], "acc", log_x=False, mode="capability mean"
    )
    sel = ex.last
    assert set(sel["line"]) == {"world_knowledge"} and set(sel["run"]) == {EVIL, "zoo-base"}
    sub = rows[
        (rows.run == "zoo-base") & (rows.capability == "world_knowledge") & (rows.metric == "acc")
    ]
    want = sub.groupby("tokens")["value"].mean()  # mean over capitals and inventors
    got = sel[sel.run == "zoo-base"].set_index("x")["value"]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy())
    assert 0 in set(sel["x"])  # linear axis keeps step 0
    assert fig.axes[0].get_xscale() == "linear"
    plt.close(fig)


def test_changing_the_selection_changes_the_curves(rows):
    import matplotlib.pyplot as plt

    ex = CurveExplorer(rows)
    plt.close(ex.draw(ex.runs, ["math"], "acc"))
    first = ex.last.copy()
    plt.close(ex.draw(ex.runs, ["math"], "gold_logprob"))
    assert not np.allclose(first["value"].to_numpy(), ex.last["value"].to_numpy())
    plt.close(ex.draw([], ["math"], "acc"))
    assert ex.last.empty


def test_widget_builds_and_redraws_on_change(rows):
    import ipywidgets as w

    ex = CurveExplorer(rows)
    box = ex.widget()
    run_w, cap_w = box.children[0].children
    met_w, mode_w, logx_w = box.children[1].children
    assert isinstance(run_w, w.SelectMultiple) and run_w.value == tuple(ex.runs)
    met_w.value = "acc_norm"  # the observer redraws with the new metric
    assert set(ex.last.columns) == {"run", "line", "x", "value"}
    assert np.isclose(
        ex.last["value"].max(),
        rows[rows.metric == "acc_norm"]
        .groupby(["run", "tokens", "capability"])["value"]
        .mean()
        .max(),
    )
    cap_w.value = ("math",)
    assert set(ex.last["line"]) == {"math"}


def test_bad_choices_are_errors(rows):
    ex = CurveExplorer(rows)
    with pytest.raises(ParameterError, match="unknown metric 'nope'"):
        ex.selection(ex.runs, ex.capabilities, "nope")
    with pytest.raises(ParameterError, match="mode"):
        ex.selection(ex.runs, ex.capabilities, "acc", mode="sideways")
    with pytest.raises(ParameterError, match="empty"):
        CurveExplorer(rows.iloc[0:0])
