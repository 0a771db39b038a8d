"""Figure helpers of the report notebooks (drawn with matplotlib's Agg backend, no kernel)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ckpt_toolkit.reports import figures as F  # noqa: E402


def _rows() -> pd.DataFrame:
    rows = []
    for task in ("a", "b", "c", "d"):
        for run, params in (("small", 1e6), ("big", 1e8)):
            if task == "a" and run == "small":
                continue  # a run missing from the first panel still gets a legend entry
            for step, tokens in ((0, 0), (1, 1e6), (2, 2e6)):
                rows.append({"run": run, "params": params, "task": task, "step": step,
                             "tokens": tokens, "value": step / 2, "stderr": 0.1})  # fmt: skip
    return pd.DataFrame(rows)


def test_plot_curves_panels_legend_and_labels(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda: None)
    fig = F.plot_curves(_rows(), col="task", col_wrap=3, ylabel="acc", title="T")
    axes = fig.axes
    assert len(axes) == 6  # 2 rows of 3, two slots unused
    shown = [ax for ax in axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["a", "b", "c", "d"]
    assert [ax.get_ylabel() for ax in shown] == ["acc", "", "", "acc"]
    # every panel with no panel below it carries the x label and its tick labels
    xlabel = "tokens seen (log scale)"
    assert [ax.get_xlabel() for ax in shown] == ["", xlabel, xlabel, xlabel]
    labelled = [ax.xaxis.get_tick_params()["labelbottom"] for ax in shown]
    assert labelled == [False, True, True, True]
    assert all(ax.get_xscale() == "log" for ax in shown)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["small", "big"]  # by size
    # step 0 is dropped on a log axis; one ±stderr band per run and panel
    line = shown[0].lines[0]
    assert list(line.get_xdata()) == [1e6, 2e6]
    assert len(shown[1].collections) == 2
    assert fig._suptitle.get_text() == "T"
    plt.close(fig)
