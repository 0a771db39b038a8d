"""The interactive curve explorer behind ``notebooks/explorer.ipynb`` (``make lab``).

:class:`CurveExplorer` holds the store's rows; :meth:`CurveExplorer.draw` is the callback the
widgets call (runs, capabilities, metric, log-x, per-task or capability mean) and can be called
directly — that is how it is tested and how the exported HTML gets a static figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..errors import ParameterError

#: How curves are grouped: one line per (run, task), or per (run, capability) averaged over tasks.
MODES = ("per task", "capability mean")
#: Dash patterns telling runs apart (seaborn's first five; repeated after that); () = solid.
DASHES: tuple[tuple[float, ...], ...] = ((), (4, 1.5), (1, 1), (3, 1.25, 1.5, 1.25), (5, 1, 1, 1))


def _dash(i: int) -> dict[str, Any]:
    """Line style keywords of the ``i``-th dash pattern."""
    pattern = DASHES[i % len(DASHES)]
    return {"dashes": pattern} if pattern else {"linestyle": "-"}


def _draw_lines(ax: Any, sel: pd.DataFrame) -> None:
    """One line per (run, line) of ``sel``: colour by line, dashes by run, and a legend with a
    section for each (as seaborn's ``lineplot(hue="line", style="run")``)."""
    from matplotlib.lines import Line2D

    from .figures import palette

    colors = palette(list(pd.unique(sel["line"])))
    runs = {run: _dash(i) for i, run in enumerate(pd.unique(sel["run"]))}
    for (run, line), part in sel.groupby(["run", "line"], sort=False):
        ax.plot(part["x"], part["value"], marker="o", ms=4, color=colors[line], **runs[run])
    header = Line2D([], [], linestyle="none")
    handles = [header] + [Line2D([], [], color=c, marker="o", ms=4) for c in colors.values()]
    handles += [header] + [Line2D([], [], color=".2", **style) for style in runs.values()]
    labels = ["line", *map(str, colors), "run", *map(str, runs)]
    ax.legend(handles, labels, bbox_to_anchor=(1.0, 1.0), loc="upper left", frameon=False,
              fontsize=8)  # fmt: skip


class CurveExplorer:
    """Pick runs, capabilities and a metric; see their curves against tokens (or steps)."""

    def __init__(self, df: pd.DataFrame, x: str = "tokens"):
        if df.empty:
            raise ParameterError("the explorer needs a store with measurements; this one is empty")
        data = df.copy()
        cap = data["capability"] if "capability" in data else pd.Series(None, index=data.index)
        # rows without a capability (held-out perplexity, imports) are grouped by their probe
        data["capability"] = cap.where(cap.notna() & (cap != ""), data["probe"]).astype(str)
        if x not in ("tokens", "step"):
            raise ParameterError(f"x must be 'tokens' or 'step', not {x!r}")
        if x == "tokens" and not data["tokens"].notna().all():
            x = "step"
        self.x = x
        self.data = data
        self.runs = sorted(data["run"].dropna().astype(str).unique())
        self.capabilities = sorted(data["capability"].unique())
        self.metrics = sorted(data["metric"].unique())
        self.last: pd.DataFrame | None = None

    def default_metric(self) -> str:
        """The first of acc / exact_match / score / loss the store has, else the first metric."""
        for m in ("acc", "exact_match", "score", "loss", "ppl"):
            if m in self.metrics:
                return m
        return self.metrics[0]

    def selection(
        self,
        runs: Sequence[str],
        capabilities: Sequence[str],
        metric: str,
        mode: str = "per task",
    ) -> pd.DataFrame:
        """The plotted points: columns run, line (task or capability), x, value."""
        if metric not in self.metrics:
            raise ParameterError(f"unknown metric {metric!r}; the store has {self.metrics}")
        if mode not in MODES:
            raise ParameterError(f"mode must be one of {MODES}, not {mode!r}")
        d = self.data
        d = d[d["run"].isin(list(runs)) & d["capability"].isin(list(capabilities))]
        d = d[d["metric"] == metric]
        line = "task" if mode == "per task" else "capability"
        if mode == "capability mean":  # tasks first averaged per (run, checkpoint, capability)
            d = d.groupby(["run", "checkpoint", self.x, "capability", "task"], as_index=False)[
                "value"
            ].mean()
        out = d.groupby(["run", line, self.x], as_index=False)["value"].mean()
        out = out.rename(columns={line: "line", self.x: "x"})
        return out.sort_values(["run", "line", "x"]).reset_index(drop=True)

    def draw(
        self,
        runs: Sequence[str],
        capabilities: Sequence[str],
        metric: str,
        log_x: bool = True,
        mode: str = "per task",
        max_lines: int = 40,
    ) -> Any:
        """Draw the selected curves; returns the matplotlib Figure (also kept: ``self.last``)."""
        import matplotlib.pyplot as plt

        from .figures import format_tokens_axis

        sel = self.selection(runs, capabilities, metric, mode)
        if log_x:
            sel = sel[sel["x"] > 0]
        keys = sel[["run", "line"]].drop_duplicates()
        if len(keys) > max_lines:
            keys = keys.head(max_lines)
            sel = sel.merge(keys, on=["run", "line"])
        self.last = sel
        fig, ax = plt.subplots(figsize=(9, 5))
        if sel.empty:
            ax.text(0.5, 0.5, "nothing selected", ha="center", va="center", transform=ax.transAxes)
        else:
            _draw_lines(ax, sel)
        if log_x:
            ax.set_xscale("log")
        if self.x == "tokens":
            format_tokens_axis(ax)
        xl = "tokens seen" if self.x == "tokens" else "training step"
        ax.set_xlabel(xl + (" (log scale)" if log_x else ""))
        ax.set_ylabel(metric)
        what = "tasks" if mode == "per task" else "capability means"
        ax.set_title(f"{metric} over pretraining ({what})")
        fig.tight_layout()
        return fig

    def widget(self, runs: Sequence[str] = (), capabilities: Sequence[str] = ()) -> Any:
        """The ipywidgets UI: multiselects for runs and capabilities, metric and mode dropdowns,
        a log-x checkbox; the figure redraws on every change."""
        import ipywidgets as w
        import matplotlib.pyplot as plt
        from IPython.display import display

        run_w = w.SelectMultiple(
            options=self.runs,
            value=tuple(runs or self.runs),
            description="runs",
            rows=min(8, len(self.runs)),
        )
        cap_w = w.SelectMultiple(
            options=self.capabilities,
            value=tuple(capabilities or self.capabilities),
            description="capabilities",
            rows=min(8, len(self.capabilities)),
        )
        met_w = w.Dropdown(options=self.metrics, value=self.default_metric(), description="metric")
        mode_w = w.Dropdown(options=MODES, value="capability mean", description="curves")
        logx_w = w.Checkbox(value=True, description="log x")
        out = w.Output()

        def redraw(_change: Any = None) -> None:
            with out:
                out.clear_output(wait=True)
                fig = self.draw(run_w.value, cap_w.value, met_w.value, logx_w.value, mode_w.value)
                display(fig)
                plt.close(fig)

        for control in (run_w, cap_w, met_w, mode_w, logx_w):
            control.observe(redraw, names="value")
        redraw()
        return w.VBox([w.HBox([run_w, cap_w]), w.HBox([met_w, mode_w, logx_w]), out])
