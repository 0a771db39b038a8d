"""Figure and table helpers for the report notebooks (seaborn style, escaped tables, text).

Notebooks stay thin: they call the analyses, then these helpers to show the results. Everything
shown as HTML is escaped here, because run names, task names and manifest values are user text
(a run named ``<script>…`` must show as text, never run).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def setup(dpi: int = 110) -> None:
    """Seaborn theme with readable fonts; inline figures as embedded PNG."""
    import warnings

    import matplotlib as mpl
    import seaborn as sns

    # seaborn's heatmap calls Colormap.set_bad, which matplotlib marks as pending deprecation:
    # a library-internal notice that would otherwise print inside the HTML report
    warnings.filterwarnings(
        "ignore", message="The set_bad function", category=PendingDeprecationWarning
    )
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    mpl.rcParams.update(
        {
            "figure.dpi": dpi,
            "savefig.dpi": dpi,
            "figure.figsize": (8, 4.5),
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 9,
            "text.usetex": False,
            "axes.formatter.use_mathtext": True,
        }
    )
    try:
        from IPython import get_ipython

        ip = get_ipython()
        if ip is not None:
            ip.run_line_magic("matplotlib", "inline")
            ip.run_line_magic("config", "InlineBackend.figure_formats = ['png']")
    except ImportError:  # pragma: no cover - outside IPython
        pass


def esc(value: Any) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def md_html(template: str, **values: Any) -> str:
    """Render a Markdown ``template`` (trusted text from the notebook) to HTML, then put the
    ``values`` (user text such as run names) in as escaped text. Numbers keep format specs
    (``{n:,}``); lists are joined with commas."""
    import mistune

    tokens: dict[str, Any] = {}
    subst: dict[str, str] = {}
    for i, (k, v) in enumerate(values.items()):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            tokens[k] = v
        else:
            token = f"CKPTVALUE{i}TOKEN"
            tokens[k] = token
            subst[token] = esc(", ".join(map(str, v)) if isinstance(v, (list, tuple, set)) else v)
    out = mistune.html(template.format(**tokens))
    for token, text in subst.items():
        out = out.replace(token, text)
    return out


def md(template: str, **values: Any) -> None:
    """Display :func:`md_html` of ``template`` and ``values``."""
    from IPython.display import HTML, display

    display(HTML(md_html(template, **values)))


def _fmt_number(v: Any, precision: int) -> str:
    if pd.isna(v):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if abs(v) >= 1e5 or (v != 0 and abs(v) < 10**-precision):
        return f"{v:.{precision}g}"
    return f"{v:.{precision}f}"


def table_html(
    df: pd.DataFrame,
    *,
    caption: str | None = None,
    precision: int = 3,
    max_rows: int = 60,
    index: bool = False,
    percent: Sequence[str] = (),
    tokens: Sequence[str] = (),
) -> str:
    """An escaped, formatted HTML table: numbers at ``precision`` digits, whole numbers with
    thousands separators, ``percent`` columns as percentages, ``tokens`` columns as 1.5B, at most
    ``max_rows`` rows (a note says how many were left out)."""
    shown = df.head(max_rows)
    fmt: dict[str, Any] = {}
    for col in shown.columns:
        s = shown[col]
        if col in percent:
            fmt[col] = lambda v: "" if pd.isna(v) else f"{100 * v:.1f}%"
        elif col in tokens:
            fmt[col] = lambda v: "" if pd.isna(v) else human_tokens(float(v))
        elif pd.api.types.is_bool_dtype(s):
            fmt[col] = lambda v: "yes" if v else "no"
        elif pd.api.types.is_integer_dtype(s) or (
            pd.api.types.is_float_dtype(s)
            and s.notna().any()
            and np.all(np.mod(s.dropna(), 1) == 0)
            and s.abs().max() < 1e15
        ):
            fmt[col] = lambda v: "" if pd.isna(v) else f"{int(v):,}"
        elif pd.api.types.is_float_dtype(s):
            fmt[col] = lambda v, p=precision: _fmt_number(v, p)
    styler = shown.style.format(fmt, escape="html", na_rep="")
    styler = styler.format_index(escape="html", axis=0).format_index(escape="html", axis=1)
    if not index:
        styler = styler.hide(axis="index")
    if caption:
        styler = styler.set_caption(esc(caption))
    out = styler.to_html()
    if len(df) > max_rows:
        out += f"<p><em>{len(df) - max_rows} more rows not shown.</em></p>"
    return out


def show_table(df: pd.DataFrame, **kwargs: Any) -> None:
    """Display :func:`table_html` of ``df``."""
    from IPython.display import HTML, display

    display(HTML(table_html(df, **kwargs)))


def human_tokens(x: float, _pos: Any = None) -> str:
    """1.5e9 → '1.5B' (axis tick labels for token counts)."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:g}{unit}"
    return f"{x:g}"


def format_tokens_axis(ax: Any, axis: str = "x") -> None:
    """Token-count ticks as 10M / 1.5B."""
    from matplotlib.ticker import FuncFormatter

    getattr(ax, f"{axis}axis").set_major_formatter(FuncFormatter(human_tokens))


def load_store(store_path: str | Path) -> pd.DataFrame:
    """The store's tidy measurements table, opened read-only."""
    from ..store import ResultsStore

    return ResultsStore(store_path, read_only=True).to_pandas()


def x_column(df: pd.DataFrame, preferred: str = "tokens") -> str:
    """``preferred`` when it is filled in for every row, else ``step``."""
    if preferred in df and df[preferred].notna().all() and (df[preferred] > 0).any():
        return preferred
    return "step"


def _hue_order(data: pd.DataFrame, hue: str) -> list[Any]:
    """Legend order: runs by size (``params``), then name; any other hue by name."""
    if hue == "run" and "params" in data:
        from .summaries import runs_by_size

        return [r for r in runs_by_size(data) if r in set(data["run"].dropna())]
    return sorted(data[hue].dropna().unique(), key=str)


def _panel_grid(n: int, col_wrap: int, width: float, height: float, **kw: Any) -> tuple[Any, Any]:
    """A figure of ``n`` panels, ``col_wrap`` to a row; unused slots hidden, and x tick labels
    shown on every panel with no panel below it (``sharex`` hides the rest)."""
    import matplotlib.pyplot as plt

    ncol = max(1, min(col_wrap, n))
    nrow = max(1, int(np.ceil(n / ncol)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * width, nrow * height), squeeze=False, **kw)
    flat = list(axes.flat)
    for i, ax in enumerate(flat):
        if i >= n:
            ax.set_visible(False)
        elif i + ncol >= n:
            ax.xaxis.set_tick_params(labelbottom=True)
    return fig, axes


def plot_curves(
    df: pd.DataFrame,
    *,
    x: str = "tokens",
    y: str = "value",
    hue: str = "run",
    col: str | None = "task",
    col_wrap: int = 3,
    logx: bool = True,
    logy: bool = False,
    ylabel: str = "score",
    title: str | None = None,
    height: float = 2.8,
    max_cols: int = 12,
    errorbars: bool = True,
) -> Any:
    """Line plots of ``y`` against ``x`` per ``hue`` (one panel per ``col`` value), markers on
    the checkpoints, ±stderr bands where a ``stderr`` column exists. Returns the figure.

    Drawn with matplotlib directly: seaborn's ``relplot`` lays the figure out three more times
    (its grid, its legend), which cost more than the drawing itself."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = df.copy()
    if col and data[col].nunique() > max_cols:
        keep = list(data[col].drop_duplicates())[:max_cols]
        data = data[data[col].isin(keep)]
    if logx:
        data = data[data[x] > 0]  # a log axis cannot show step 0
    data = data.sort_values([c for c in (hue, col, x) if c])
    panels = list(pd.unique(data[col])) if col else [None]
    hue_order = _hue_order(data, hue)
    palette = dict(zip(hue_order, sns.color_palette("colorblind", max(len(hue_order), 1))))
    bands = errorbars and "stderr" in data and data["stderr"].notna().any()
    fig, axes = _panel_grid(len(panels), col_wrap, height * 1.4, height, sharex=True)
    for ax, panel in zip(axes.flat, panels):
        sub = data[data[col] == panel] if col else data
        for name in hue_order:
            part = sub[sub[hue] == name]
            if part.empty:
                continue
            color = palette[name]
            ax.plot(part[x], part[y], marker="o", ms=4, mec="w", mew=0.75, color=color,
                    label=str(name))  # fmt: skip
            part = part.dropna(subset=["stderr"]) if bands else part.iloc[0:0]
            if len(part):
                ax.fill_between(part[x], part[y] - part["stderr"], part[y] + part["stderr"],
                                alpha=0.15, color=color, linewidth=0)  # fmt: skip
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        if x == "tokens":
            format_tokens_axis(ax)
        if col:
            ax.set_title(str(panel))
        ax.spines[["top", "right"]].set_visible(False)
    xlabel = {"tokens": "tokens seen", "step": "training step"}.get(x, x)
    if logx:
        xlabel += " (log scale)"
    ncol = axes.shape[1]
    for i, ax in enumerate(list(axes.flat)[: len(panels)]):
        if i % ncol == 0:
            ax.set_ylabel(ylabel)
        if i + ncol >= len(panels):
            ax.set_xlabel(xlabel)
    found: dict[str, Any] = {}  # one entry per hue value, whichever panel has it
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            found.setdefault(lab, h)
    labels = [str(n) for n in hue_order if str(n) in found]
    fig.legend([found[lab] for lab in labels], labels, title=hue, loc="upper left", bbox_to_anchor=(1.0, 0.95),
               frameon=False)  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    plt.show()
    return fig


def chance_normalize(values: np.ndarray, chance: float, top: float = 1.0) -> np.ndarray:
    """(v − chance) / (top − chance): 0 at chance, 1 at a perfect score."""
    return (np.asarray(values, dtype=float) - chance) / (top - chance)


def plot_smoothed(
    cv: pd.DataFrame,
    *,
    col: str = "benchmark",
    hue: str = "run",
    y: str = "norm",
    smooth: str = "smooth",
    logx: bool = True,
    x_label: str = "tokens seen",
    ylabel: str = "chance-normalised score",
    title: str | None = None,
    col_wrap: int = 3,
    max_cols: int = 12,
    height: float = 2.8,
) -> Any:
    """Measured points (markers) and their LOWESS curve (line) per ``hue`` in one panel per
    ``col``; a dotted line marks chance (0). ``cv`` has columns ``x``, ``y`` and ``smooth``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = cv.copy()
    panels = list(data[col].drop_duplicates())[:max_cols]
    data = data[data[col].isin(panels)]
    if logx:
        data = data[data["x"] > 0]
    hues = _hue_order(data, hue)
    palette = dict(zip(hues, sns.color_palette("colorblind", max(len(hues), 1))))
    ncol = min(col_wrap, len(panels)) or 1
    nrow = int(np.ceil(len(panels) / ncol)) or 1
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(ncol * height * 1.45, nrow * height), squeeze=False, sharex=True
    )
    for ax, panel in zip(axes.flat, panels):
        sub = data[data[col] == panel]
        for h in hues:
            part = sub[sub[hue] == h].sort_values("x")
            if part.empty:
                continue
            ax.plot(part["x"], part[y], "o", ms=3, alpha=0.45, color=palette[h])
            ax.plot(part["x"], part[smooth], "-", lw=1.8, color=palette[h], label=str(h))
        ax.axhline(0.0, ls=":", lw=1, color="0.4")
        ax.set_title(str(panel))
        if logx:
            ax.set_xscale("log")
        format_tokens_axis(ax) if x_label.startswith("tokens") else None
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in axes[-1, :]:
        ax.set_xlabel(x_label + (" (log scale)" if logx else ""))
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, title=hue, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False
    )
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    plt.show()
    return fig


def plot_heatmap(
    wide: pd.DataFrame,
    *,
    title: str,
    cbar_label: str,
    fmt: str = ".2f",
    center: float | None = 0,
    vmin: float | None = -1,
    vmax: float | None = 1,
    cmap: str = "vlag",
) -> Any:
    """An annotated heatmap of a wide table (rows × columns) with a labelled colour bar."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    h = max(3.0, 0.5 * len(wide) + 2.0)
    w = max(6.0, 1.1 * len(wide.columns) + 4)
    fig, ax = plt.subplots(figsize=(min(w, 12), min(h, 10)))
    sns.heatmap(
        wide,
        annot=len(wide) * len(wide.columns) <= 150,
        fmt=fmt,
        center=center,
        vmin=vmin,
        vmax=vmax,
        cmap=cmap,
        cbar_kws={"label": cbar_label},
        ax=ax,
        linewidths=0.5,
    )
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=20)
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_xlabel(wide.columns.name or "")
    ax.set_ylabel(wide.index.name or "")
    fig.tight_layout()
    plt.show()
    return fig


def plot_intervals(
    df: pd.DataFrame,
    *,
    y: str,
    x: str,
    lo: str,
    hi: str,
    hue: str | None = None,
    col: str | None = None,
    xlabel: str,
    title: str,
    ref: float | None = 0.5,
    ref_label: str = "chance (0.5)",
    col_wrap: int = 3,
    xlim: tuple[float, float] | None = (0.0, 1.0),
) -> Any:
    """Horizontal point estimates with interval bars (``lo``..``hi``) per ``y`` category, one
    colour per ``hue``, one panel per ``col``; a dashed reference line at ``ref``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    panels = list(df[col].drop_duplicates()) if col else [None]
    ncol = min(col_wrap, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    cats = list(df[y].drop_duplicates())
    hues = list(df[hue].drop_duplicates()) if hue else [None]
    palette = dict(zip(hues, sns.color_palette("colorblind", max(len(hues), 1))))
    height = max(2.2, 0.3 * len(cats) * max(1, len(hues)) ** 0.5 + 1.0)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(3.3 * ncol + 2.2, height * nrow), squeeze=False, sharey=True
    )
    offsets = np.linspace(-0.25, 0.25, len(hues)) if len(hues) > 1 else [0.0]
    for ax, panel in zip(axes.flat, panels):
        sub = df[df[col] == panel] if col else df
        for off, h in zip(offsets, hues):
            part = sub[sub[hue] == h] if hue else sub
            pos = np.array([cats.index(c) for c in part[y]], dtype=float) + off
            err = np.vstack([part[x] - part[lo], part[hi] - part[x]]).clip(min=0)
            ax.errorbar(
                part[x],
                pos,
                xerr=err,
                fmt="o",
                ms=5,
                capsize=3,
                color=palette[h],
                label=None if h is None else str(h),
            )
        if ref is not None:
            ax.axvline(ref, ls="--", lw=1, color="0.45")
        ax.set_yticks(range(len(cats)))
        ax.set_yticklabels([str(c) for c in cats])
        ax.invert_yaxis()
        if xlim:
            ax.set_xlim(*xlim)
        ax.set_xlabel(xlabel)
        if panel is not None:
            ax.set_title(str(panel))
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if labels:
        fig.legend(
            handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, title=hue
        )
    if ref is not None:
        title = f"{title}; dashed line: {ref_label}"
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    plt.show()
    return fig
