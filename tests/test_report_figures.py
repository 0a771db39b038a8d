"""Figure helpers of the report notebooks (drawn with matplotlib's Agg backend, no kernel)."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
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


def test_plot_curves_reference_line_limits_ticks_and_label(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda: None)
    rows = _rows().rename(columns={"step": "quantile"})
    fig = F.plot_curves(rows, x="quantile", hue="run", col="task", logx=False, xlabel="q",
                        ref=0.5, ylim=(0, 1.02), xticks=[0, 1, 2])  # fmt: skip
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in shown] == ["", "q", "q", "q"]
    assert all(ax.get_xscale() == "linear" for ax in shown)
    assert all(ax.get_ylim() == (0, 1.02) for ax in shown)
    assert list(shown[0].get_xticks()) == [0, 1, 2]
    # the big run's line (step 0 kept on a linear axis) and the dashed line at 0.5
    big, ref = shown[0].lines
    assert list(big.get_xdata()) == [0, 1, 2] and list(ref.get_ydata()) == [0.5, 0.5]
    assert ref.get_linestyle() == "--"
    plt.close(fig)


def _ranks() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "category": ["math", "math", "code", "code", "math"],
            "run": ["big", "small", "big", "small", "big"],
            "params": [1e8, 1e6, 1e8, 1e6, 1e8],
            "share": [0.2, 0.4, 0.6, 0.8, 0.4],
        }
    )


def test_strip_points_rows_and_colours():
    fig, ax = plt.subplots()
    F.strip(ax, _ranks(), x="share", y="category", hue="run", size=8, jitter=0.15)
    small, big = ax.collections  # runs by size
    assert [c.get_label() for c in ax.collections] == ["small", "big"]
    assert small.get_sizes()[0] == 64  # diameter 8 points
    pts = big.get_offsets()
    assert list(pts[:, 0]) == [0.2, 0.6, 0.4]
    rows = np.array([0, 1, 0])  # math first (first seen), then code
    assert np.all(np.abs(pts[:, 1] - rows) <= 0.15) and not np.allclose(pts[:, 1], rows)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["math", "code"]
    assert ax.get_ylim() == (1.5, -0.5)  # first category at the top
    assert matplotlib.colors.to_hex(small.get_facecolor()[0]) == F.COLORBLIND[0].lower()
    plt.close(fig)


def test_bars_dodged_means():
    fig, ax = plt.subplots()
    F.bars(ax, _ranks(), cat="category", value="share", hue="run")
    assert len(ax.patches) == 4
    bars = sorted(
        (p.get_y() + p.get_height() / 2, p.get_height(), p.get_width()) for p in ax.patches
    )
    # math at 0, code at 1; small above big in each, 0.4 high; big's two math rows averaged
    want = [(-0.2, 0.4, 0.4), (0.2, 0.4, 0.3), (0.8, 0.4, 0.8), (1.2, 0.4, 0.6)]
    np.testing.assert_allclose(bars, want)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["math", "code"]
    assert ax.get_legend_handles_labels()[1] == ["small", "big"]
    plt.close(fig)

    fig, ax = plt.subplots()
    F.bars(ax, _ranks(), cat="category", value="share", hue="run", horizontal=False)
    assert sorted(round(p.get_x() + p.get_width() / 2, 3) for p in ax.patches) == [
        -0.2, 0.2, 0.8, 1.2,
    ]  # fmt: skip
    assert [t.get_text() for t in ax.get_xticklabels()] == ["math", "code"]
    plt.close(fig)


def test_plot_bar_facets_panels_legend_and_colours(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda: None)
    rows = pd.DataFrame(
        {
            "target": ["t1"] * 4 + ["t2"] * 2,
            "method": ["a", "b", "a", "b", "b", "b"],
            "k": [2, 2, 1, 1, 1, 2],
            "recall": [0.5, 0.6, 0.3, 0.4, 0.9, 1.0],
        }
    )
    fig = F.plot_bar_facets(rows, x="k", y="recall", hue="method", col="target", xlabel="k",
                            ylabel="recall", title="T")  # fmt: skip
    one, two = fig.axes
    assert [one.get_title(), two.get_title()] == ["t1", "t2"]
    assert [one.get_ylabel(), two.get_ylabel()] == ["recall", ""]
    assert [one.get_xlabel(), two.get_xlabel()] == ["k", "k"]
    assert [t.get_text() for t in one.get_xticklabels()] == ["1", "2"]  # numbers sorted
    assert len(one.patches) == 4 and len(two.patches) == 2
    # "b" keeps its colour and its slot in a panel without "a"
    colors = {matplotlib.colors.to_hex(p.get_facecolor()) for p in two.patches}
    assert colors == {F.COLORBLIND[1].lower()}
    assert sorted(round(p.get_x() + p.get_width() / 2, 3) for p in two.patches) == [0.2, 1.2]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    assert fig._suptitle.get_text() == "T"
    plt.close(fig)


def test_plot_heatmap_cells_annotations_and_colours(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda: None)
    wide = pd.DataFrame({"x": [1.0, -1.0], "y": [0.0, np.nan]}, index=["r1", "r2"])
    wide.index.name, wide.columns.name = "run", "category"
    fig = F.plot_heatmap(wide, title="H", cbar_label="rho")
    ax, cbar = fig.axes
    assert [t.get_text() for t in ax.texts] == ["1.00", "0.00", "-1.00"]  # the empty cell blank
    assert [t.get_text() for t in ax.get_yticklabels()] == ["r1", "r2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("category", "run", "H")
    assert cbar.get_ylabel() == "rho"
    mesh = ax.collections[0]
    rgba = mesh.to_rgba(np.array([-1.0, 0.0, 1.0]))
    assert rgba[0][2] > rgba[0][0] and rgba[2][0] > rgba[2][2]  # blue low, red high (vlag)
    assert rgba[1][:3].min() > 0.9  # near white at the centre
    # dark text on the light centre cell, white on the saturated ones
    assert [t.get_color() for t in ax.texts] == ["w", ".15", "w"]
    plt.close(fig)


def test_centered_colour_map_puts_the_centre_in_the_middle():
    cmap = F._colormap("RdYlGn", 0.2, 1.0, 0.5)  # 0.5 gets the middle colour of RdYlGn
    middle = matplotlib.colormaps["RdYlGn"](0.5)
    np.testing.assert_allclose(cmap((0.5 - 0.2) / 0.8), middle, atol=0.01)


def test_figures_and_explorer_draw_without_seaborn():
    """Each kernel is spared seaborn's import (and scipy.stats with it)."""
    code = (
        "import sys, matplotlib; matplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt, pandas as pd\n"
        "from ckpt_toolkit.reports import figures as F\n"
        "from ckpt_toolkit.reports.explorer import CurveExplorer\n"
        "plt.show = lambda: None\n"
        "F.setup()\n"
        "d = pd.DataFrame({'run': ['a', 'a', 'b'], 'task': 't', 'capability': 'c', 'probe': 'p',\n"
        "                  'metric': 'acc', 'checkpoint': ['1', '2', '1'], 'step': [1, 2, 1],\n"
        "                  'tokens': [1e6, 2e6, 1e6], 'value': [0.1, 0.2, 0.3]})\n"
        "F.plot_curves(d); F.plot_bar_facets(d, x='step', y='value', hue='run', col='task',\n"
        "    xlabel='k', ylabel='v'); F.plot_heatmap(d.pivot_table(index='run', columns='step',\n"
        "    values='value'), title='h', cbar_label='v')\n"
        "fig, ax = plt.subplots(); F.strip(ax, d, x='value', y='task', hue='run')\n"
        "F.bars(ax, d, cat='task', value='value', hue='run')\n"
        "CurveExplorer(d).draw(['a', 'b'], ['c'], 'acc')\n"
        "assert 'seaborn' not in sys.modules, 'seaborn imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plot_smoothed_labels_every_bottom_panel_and_every_run(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda: None)
    cv = _rows().rename(columns={"task": "benchmark", "tokens": "x", "value": "norm"})
    cv["smooth"] = cv["norm"]
    fig = F.plot_smoothed(cv, col_wrap=3, title="S")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["a", "b", "c", "d"]
    xlabel = "tokens seen (log scale)"
    assert [ax.get_xlabel() for ax in shown] == ["", xlabel, xlabel, xlabel]
    assert [ax.xaxis.get_tick_params()["labelbottom"] for ax in shown] == [False, True, True, True]
    assert [ax.get_ylabel() for ax in shown][::3] == ["chance-normalised score"] * 2
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["small", "big"]  # small not in "a"
    # points and LOWESS line per run, then the dotted chance line
    assert len(shown[1].lines) == 5 and list(shown[1].lines[-1].get_ydata()) == [0, 0]
    plt.close(fig)
