"""Plot helpers for capability curves (matplotlib; imported only when called)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def plot_curves(
    curve_df: pd.DataFrame,
    level: str = "category",
    benchmarks: list[str] | None = None,
    logx: bool = True,
    smooth: bool = True,
    col_wrap: int = 3,
) -> Any:
    """One panel per benchmark (or category), one line per run coloured by size: the
    cross-size overlay of :func:`~.dynamics.curves` output.

    Points are the chance-normalised scores (``norm``), lines the LOWESS curve (``smooth``);
    ``logx`` puts x (tokens or steps) on a log axis, with step 0 one decade left of the first
    checkpoint. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    d = curve_df[curve_df["level"] == level]
    names = benchmarks or sorted(d["benchmark"].unique())
    n = max(1, len(names))
    ncol = min(col_wrap, n)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow), squeeze=False)
    runs = d.sort_values("params", na_position="first")["run"].unique().tolist()
    cmap = plt.get_cmap("viridis", max(2, len(runs)))
    for ax, name in zip(axes.flat, names):
        g = d[d["benchmark"] == name]
        for i, run in enumerate(runs):
            h = g[g["run"] == run].sort_values("x")
            if h.empty:
                continue
            xs = 10 ** h["log10_x"] if logx else h["x"]
            ax.scatter(xs, h["norm"], s=8, color=cmap(i), alpha=0.6)
            if smooth:
                ax.plot(xs, h["smooth"], color=cmap(i), label=run)
        ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        if logx:
            ax.set_xscale("log")
        ax.set_title(name)
        ax.set_ylabel("normalised score")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
