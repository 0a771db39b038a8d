"""Figure and table helpers for the report notebooks (matplotlib in seaborn's style, escaped
tables, text).

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

# seaborn's "colorblind" palette, and its whitegrid style at the notebook context: the report
# figures are drawn with matplotlib alone (importing seaborn cost each kernel ~0.8 s)
COLORBLIND = ("#0173B2", "#DE8F05", "#029E73", "#D55E00", "#CC78BC",
              "#CA9161", "#FBAFE4", "#949494", "#ECE133", "#56B4E9")  # fmt: skip
STYLE: dict[str, Any] = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.edgecolor": ".8",
    "axes.labelcolor": ".15",
    "axes.grid": True,
    "axes.axisbelow": True,
    "axes.linewidth": 1.25,
    "grid.color": ".8",
    "grid.linestyle": "-",
    "grid.linewidth": 1,
    "text.color": ".15",
    "xtick.color": ".15",
    "ytick.color": ".15",
    "xtick.direction": "out",
    "ytick.direction": "out",
    "xtick.bottom": False,
    "ytick.left": False,
    "xtick.top": False,
    "ytick.right": False,
    "xtick.major.width": 1.25,
    "ytick.major.width": 1.25,
    "xtick.minor.width": 1,
    "ytick.minor.width": 1,
    "xtick.major.size": 6,
    "ytick.major.size": 6,
    "xtick.minor.size": 4,
    "ytick.minor.size": 4,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "font.size": 12,
    "font.family": ["sans-serif"],
    "font.sans-serif": [
        "Arial",
        "DejaVu Sans",
        "Liberation Sans",
        "Bitstream Vera Sans",
        "sans-serif",
    ],
    "legend.title_fontsize": 12,
    "lines.linewidth": 1.5,
    "lines.markersize": 6,
    "lines.solid_capstyle": "round",
    "patch.edgecolor": "w",
    "patch.force_edgecolor": True,
    "patch.linewidth": 1,
    # titles at the top of their axes: no axis here has ticks on top, and the automatic
    # placement measured every panel's x tick labels at each layout pass (~25% of a grid's CPU)
    "axes.titley": 1.0,
}
# seaborn's "vlag" diverging colour map (blue - white - red), every 32nd entry of its table
_VLAG = ((0.1385, 0.4133, 0.7405), (0.4038, 0.5462, 0.7455), (0.6093, 0.6821, 0.7942),
         (0.8107, 0.8313, 0.8770), (0.9806, 0.9616, 0.9581), (0.9077, 0.7850, 0.7773),
         (0.8274, 0.5921, 0.5817), (0.7485, 0.4049, 0.3980), (0.6608, 0.2153, 0.2307))  # fmt: skip


def setup(dpi: int = 96) -> None:
    """Matplotlib in the report style (:data:`STYLE`, colour-blind palette) with readable
    fonts; inline figures as embedded PNG."""
    import matplotlib as mpl

    mpl.rcParams.update(STYLE)
    mpl.rcParams.update(
        {
            "axes.prop_cycle": mpl.cycler(color=COLORBLIND),
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


def palette(names: Sequence[Any]) -> dict[Any, str]:
    """One colour per name, in order, from the colour-blind palette (it repeats after ten)."""
    return {n: COLORBLIND[i % len(COLORBLIND)] for i, n in enumerate(names)}


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


def _label_grid(axes: Any, n: int, xlabel: str, ylabel: str) -> None:
    """``ylabel`` on the first panel of each row, ``xlabel`` on each of the ``n`` panels with no
    panel below it."""
    ncol = axes.shape[1]
    for i, ax in enumerate(list(axes.flat)[:n]):
        if i % ncol == 0:
            ax.set_ylabel(ylabel)
        if i + ncol >= n:
            ax.set_xlabel(xlabel)


def _figure_legend(fig: Any, axes: Any, order: Sequence[Any], title: str) -> None:
    """One legend for the whole figure, right of the panels: an entry per name of ``order``
    that some panel drew (with its label), in that order."""
    found: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            found.setdefault(lab, h)
    labels = [str(n) for n in order if str(n) in found]
    fig.legend([found[lab] for lab in labels], labels, title=title, loc="upper left",
               bbox_to_anchor=(1.0, 0.95), frameon=False)  # fmt: skip


def _show(fig: Any, title: str | None) -> Any:
    """Give ``fig`` its ``title``, lay it out and show it; returns it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    plt.show()
    return fig


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
    xlabel: str | None = None,
    title: str | None = None,
    height: float = 2.8,
    max_cols: int = 12,
    errorbars: bool = True,
    ref: float | None = None,
    ylim: tuple[float, float] | None = None,
    xticks: Sequence[float] | None = None,
) -> Any:
    """Line plots of ``y`` against ``x`` per ``hue`` (one panel per ``col`` value), markers on
    the checkpoints, ±stderr bands where a ``stderr`` column exists; optionally a dashed
    horizontal line at ``ref``, y limits and x ticks. ``xlabel`` defaults to a name for tokens
    or steps (plus "(log scale)"). Returns the figure.

    Drawn with matplotlib directly: seaborn's ``relplot`` lays the figure out three more times
    (its grid, its legend), which cost more than the drawing itself."""
    data = df.copy()
    if col and data[col].nunique() > max_cols:
        keep = list(data[col].drop_duplicates())[:max_cols]
        data = data[data[col].isin(keep)]
    if logx:
        data = data[data[x] > 0]  # a log axis cannot show step 0
    data = data.sort_values([c for c in (hue, col, x) if c])
    panels = list(pd.unique(data[col])) if col else [None]
    hue_order = _hue_order(data, hue)
    colors = palette(hue_order)
    bands = errorbars and "stderr" in data and data["stderr"].notna().any()
    fig, axes = _panel_grid(len(panels), col_wrap, height * 1.4, height, sharex=True)
    for ax, panel in zip(axes.flat, panels):
        sub = data[data[col] == panel] if col else data
        for name in hue_order:
            part = sub[sub[hue] == name]
            if part.empty:
                continue
            color = colors[name]
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
        if ref is not None:
            ax.axhline(ref, ls="--", lw=1, color="0.45")
        if ylim is not None:
            ax.set_ylim(*ylim)
        if xticks is not None:
            ax.set_xticks(list(xticks))
        ax.spines[["top", "right"]].set_visible(False)
    if xlabel is None:
        xlabel = {"tokens": "tokens seen", "step": "training step"}.get(x, x)
        xlabel += " (log scale)" if logx else ""
    _label_grid(axes, len(panels), xlabel, ylabel)
    _figure_legend(fig, axes, hue_order, hue)
    return _show(fig, title)


def _categories(values: pd.Series) -> list[Any]:
    """Category order of a categorical axis: numbers sorted, anything else as first seen."""
    cats = list(pd.unique(values.dropna()))
    return sorted(cats) if pd.api.types.is_numeric_dtype(values) else cats


def _category_axis(ax: Any, axis: str, cats: Sequence[Any]) -> None:
    """``cats`` as the ticks 0, 1, … of ``axis`` ("x" or "y"; on y the first is at the top),
    with no grid lines across them."""
    ticks, labels = range(len(cats)), [str(c) for c in cats]
    if axis == "y":
        ax.set_yticks(ticks, labels)
        ax.set_ylim(len(cats) - 0.5, -0.5)
        ax.yaxis.grid(False)
    else:
        ax.set_xticks(ticks, labels)
        ax.set_xlim(-0.5, len(cats) - 0.5)
        ax.xaxis.grid(False)


def strip(
    ax: Any,
    data: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str,
    size: float = 8.0,
    jitter: float = 0.15,
    seed: int = 0,
) -> None:
    """On ``ax``: one point per row at ``x`` in the row of its ``y`` category (first category at
    the top, jittered up or down by at most ``jitter``), coloured by ``hue`` and labelled for a
    legend; ``size`` is the marker diameter in points (seaborn's ``stripplot``)."""
    cats = _categories(data[y])
    hues = _hue_order(data, hue)
    colors = palette(hues)
    rng = np.random.default_rng(seed)
    pos = data[y].map({c: i for i, c in enumerate(cats)}).to_numpy(float)
    pos = pos + rng.uniform(-jitter, jitter, len(pos))
    for h in hues:
        rows = (data[hue] == h).to_numpy()
        ax.scatter(data[x].to_numpy()[rows], pos[rows], s=size**2, color=colors[h],
                   linewidth=0, label=str(h))  # fmt: skip
    _category_axis(ax, "y", cats)


def bars(
    ax: Any,
    data: pd.DataFrame,
    *,
    cat: str,
    value: str,
    hue: str,
    horizontal: bool = True,
    cats: Sequence[Any] | None = None,
    hues: Sequence[Any] | None = None,
    width: float = 0.8,
) -> None:
    """On ``ax``: a bar of the mean ``value`` per ``cat`` category and ``hue``, the ``hue`` bars
    of a category side by side within ``width``, coloured by ``hue`` and labelled for a legend;
    horizontal bars (categories down the y axis, first at the top) or vertical ones. ``cats``
    and ``hues``: the categories and hue values in order (default: those of ``data``, numbers
    sorted, categories else as first seen, runs by size)."""
    cats = list(cats) if cats is not None else _categories(data[cat])
    hues = list(hues) if hues is not None else _hue_order(data, hue)
    colors = palette(hues)
    means = data.groupby([cat, hue], sort=False)[value].mean()
    step = width / max(len(hues), 1)
    for i, h in enumerate(hues):
        at = [(j, means[(c, h)]) for j, c in enumerate(cats) if (c, h) in means.index]
        pos = [j - width / 2 + step * (i + 0.5) for j, _ in at]
        vals = [v for _, v in at]
        draw = ax.barh if horizontal else ax.bar
        draw(pos, vals, step, color=colors[h], label=str(h))
    _category_axis(ax, "y" if horizontal else "x", cats)


def plot_bar_facets(
    df: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str,
    col: str,
    xlabel: str,
    ylabel: str,
    col_wrap: int = 3,
    height: float = 3.0,
    aspect: float = 1.3,
    title: str | None = None,
) -> Any:
    """Vertical bars of the mean ``y`` per ``x`` category, one bar per ``hue`` side by side
    (:func:`bars`), one panel per ``col`` value with shared axes and one legend. Returns the
    figure."""
    panels = list(pd.unique(df[col]))
    cats, hues = _categories(df[x]), _hue_order(df, hue)
    fig, axes = _panel_grid(len(panels), col_wrap, height * aspect, height, sharex=True,
                            sharey=True)  # fmt: skip
    for ax, panel in zip(axes.flat, panels):
        sub = df[df[col] == panel]
        bars(ax, sub, cat=x, value=y, hue=hue, horizontal=False, cats=cats, hues=hues)
        ax.set_title(str(panel))
    _label_grid(axes, len(panels), xlabel, ylabel)
    _figure_legend(fig, axes, hues, hue)
    return _show(fig, title)


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
    ``col``; a dotted line marks chance (0). ``cv`` has columns ``x``, ``y`` and ``smooth``.
    Every panel with no panel below it shows the x axis; the legend lists every ``hue`` drawn."""
    data = cv.copy()
    panels = list(data[col].drop_duplicates())[:max_cols]
    data = data[data[col].isin(panels)]
    if logx:
        data = data[data["x"] > 0]
    hues = _hue_order(data, hue)
    colors = palette(hues)
    fig, axes = _panel_grid(len(panels), col_wrap, height * 1.45, height, sharex=True)
    for ax, panel in zip(axes.flat, panels):
        sub = data[data[col] == panel]
        for h in hues:
            part = sub[sub[hue] == h].sort_values("x")
            if part.empty:
                continue
            ax.plot(part["x"], part[y], "o", ms=3, alpha=0.45, color=colors[h])
            ax.plot(part["x"], part[smooth], "-", lw=1.8, color=colors[h], label=str(h))
        ax.axhline(0.0, ls=":", lw=1, color="0.4")
        ax.set_title(str(panel))
        if logx:
            ax.set_xscale("log")
        format_tokens_axis(ax) if x_label.startswith("tokens") else None
    _label_grid(axes, len(panels), x_label + (" (log scale)" if logx else ""), ylabel)
    _figure_legend(fig, axes, hues, hue)
    return _show(fig, title)


def _colormap(name: str, lo: float, hi: float, center: float | None) -> Any:
    """Colour map ``name`` ("vlag" or a matplotlib name) for values ``lo``..``hi``; with a
    ``center``, cut so that ``center`` gets the map's middle colour (seaborn's heatmap)."""
    import matplotlib as mpl
    from matplotlib.colors import LinearSegmentedColormap, ListedColormap

    if name == "vlag":
        stops = np.append(np.arange(len(_VLAG) - 1) * 32, 255) / 255  # entries 0, 32, …, 255
        cmap = LinearSegmentedColormap.from_list("vlag", list(zip(stops, _VLAG)))
    else:
        cmap = mpl.colormaps[name]
    if center is None or not max(hi - center, center - lo) > 0:
        return cmap
    span = max(hi - center, center - lo)
    return ListedColormap(cmap(np.linspace((lo - center + span) / (2 * span),
                                           (hi - center + span) / (2 * span), 256)))  # fmt: skip


def _text_color(rgba: Sequence[float]) -> str:
    """Dark text on a light cell, white on a dark one (relative luminance above 0.408)."""
    rgb = np.asarray(rgba, dtype=float)[:3]
    rgb = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return ".15" if rgb @ np.array([0.2126, 0.7152, 0.0722]) > 0.408 else "w"


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
    """An annotated heatmap of a wide table (rows × columns, first row at the top) with a
    labelled colour bar; empty cells stay blank, and values are written in each cell when there
    are at most 150. ``vmin``/``vmax`` default to the data's range."""
    import matplotlib.pyplot as plt

    values = wide.to_numpy(dtype=float)
    lo = float(np.nanmin(values)) if vmin is None else vmin
    hi = float(np.nanmax(values)) if vmax is None else vmax
    h = max(3.0, 0.5 * len(wide) + 2.0)
    w = max(6.0, 1.1 * len(wide.columns) + 4)
    fig, ax = plt.subplots(figsize=(min(w, 12), min(h, 10)))
    mesh = ax.pcolormesh(np.ma.masked_invalid(values), cmap=_colormap(cmap, lo, hi, center),
                         vmin=lo, vmax=hi, linewidth=0.5, edgecolor="white")  # fmt: skip
    ax.set_xlim(0, values.shape[1])
    ax.set_ylim(values.shape[0], 0)
    ax.grid(False)
    ax.spines[:].set_visible(False)
    ax.set_xticks(np.arange(values.shape[1]) + 0.5, [str(c) for c in wide.columns], rotation=20)
    ax.set_yticks(np.arange(values.shape[0]) + 0.5, [str(i) for i in wide.index])
    cbar = fig.colorbar(mesh, ax=ax, label=cbar_label)
    cbar.outline.set_linewidth(0)
    if values.size <= 150:
        colors = mesh.to_rgba(values)
        for (i, j), v in np.ndenumerate(values):
            if not np.isnan(v):
                ax.text(j + 0.5, i + 0.5, format(v, fmt), ha="center", va="center",
                        color=_text_color(colors[i, j]))  # fmt: skip
    ax.set_title(title)
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

    panels = list(df[col].drop_duplicates()) if col else [None]
    ncol = min(col_wrap, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    cats = list(df[y].drop_duplicates())
    hues = list(df[hue].drop_duplicates()) if hue else [None]
    colors = palette(hues)
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
                color=colors[h],
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
