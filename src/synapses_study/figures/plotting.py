"""Figures of the demo and the study (matplotlib; the notebooks only choose what to show).

Every function draws into an ``ax`` (or makes a figure) and returns it; :func:`save_figure`
writes a PNG with fixed metadata, so that regenerating a figure from the same results gives
the same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import pandas as pd
from scipy import stats

from ..measures.topology import as_image, trend
from ..setup.paths import FIGURES


def save_figure(fig: matplotlib.figure.Figure, name: str, directory: str | Path | None = None, dpi: int = 110) -> Path:
    """Save ``fig`` as ``<directory>/<name>.png`` (default: the repository's figures/),
    after :func:`legibility_problems` finds none (else ``ValueError`` listing them)."""
    problems = legibility_problems(fig)
    if problems:
        raise ValueError(f"figure {name!r} is hard to read: " + "; ".join(problems))
    directory = Path(directory) if directory is not None else FIGURES
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    # No software version or date in the file: same results, same bytes.
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


def weight_histogram(ax: plt.Axes, weights: np.ndarray, title: str, bins: int = 80) -> plt.Axes:
    ax.hist(np.asarray(weights), bins=bins, color="#000000")
    ax.set(title=title, xlabel="weight", ylabel="connections")
    return ax


def connections_per_input(ax: plt.Axes, counts: np.ndarray, title: str = "Connections per input index") -> plt.Axes:
    ax.bar(np.arange(len(counts)), counts, width=1.0, color="#000000")
    ax.set(title=title, xlabel="input index", ylabel="connections")
    return ax


def pixel_heatmap(
    ax: plt.Axes,
    counts: np.ndarray,
    title: str = "Connections per input pixel",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
) -> plt.Axes:
    """28 x 28 heatmap of ``counts`` ``(784,)``, viridis as in the original."""
    image = ax.imshow(as_image(counts), cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set(title=title, xticks=[], yticks=[])
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def trend_curve(ax: plt.Axes, counts: np.ndarray, label: str | None = None, **style) -> plt.Axes:
    """Mean connections over centred squares of side 2..28; falling = positive learning."""
    sides = 2 * np.arange(1, 15)
    ax.plot(sides, trend(counts), marker="o", ms=3, label=label, **style)
    ax.set(xlabel="side of the centred square (pixels)", ylabel="mean connections per pixel")
    return ax


def history(axes: Sequence[plt.Axes], metrics: pd.DataFrame, label: str | None = None, **style) -> None:
    """Loss (``axes[0]``) and accuracy (``axes[1]``), train dashed and test solid."""
    for ax, kind in zip(axes, ("loss", "acc")):
        ax.plot(metrics["epoch"], metrics[f"train_{kind}"], ls="--", label=f"{label or ''} train".strip(), **style)
        ax.plot(metrics["epoch"], metrics[f"test_{kind}"], ls="-", label=f"{label or ''} test".strip(), **style)
        ax.set(xlabel="epoch", ylabel="accuracy" if kind == "acc" else "loss (nll)")


def band(
    ax: plt.Axes,
    runs: pd.DataFrame,
    y: str,
    by: str,
    palette: str | None = None,
    label: str = "",
    x: str = "epoch",
    spread: str = "ci95",
    **style,
) -> plt.Axes:
    """Mean of ``y`` against ``x`` per value of ``by``, with a band across seeds.

    ``runs`` is tidy (one row per run and epoch, e.g. from ``load_runs``). With
    ``spread="ci95"`` the band is mean +- t(0.975, n-1) * std / sqrt(n) over the n seeds at
    each ``x``; with ``"range"`` it spans the lowest to the highest seed (more telling than a
    t-interval for two seeds, whose t factor is 12.7); none with a single seed. ``label``
    prefixes the legend entries, which read as :func:`group_label` writes them; colours come
    from :func:`group_colours` (``palette``: a matplotlib colormap instead). Accuracies are
    drawn in percent; the axes carry :func:`axis_label`'s names; ``style`` goes to ``ax.plot``.
    """
    if spread not in ("ci95", "range"):
        raise ValueError(f"spread must be 'ci95' or 'range', got {spread!r}")
    values = sorted(runs[by].unique())
    colours = (
        list(plt.get_cmap(palette)(np.linspace(0, 0.9, len(values))))
        if palette
        else list(group_colours(by, values).values())
    )
    scale = 100.0 if y.endswith("_acc") else 1.0
    for colour, value in zip(colours, values):
        group = (runs[runs[by] == value].set_index(x)[y] * scale).groupby(level=0)
        mean, std, n = group.mean(), group.std(), group.count()
        ax.plot(mean.index, mean.values, color=colour, label=f"{label}{group_label(by, value)}", **style)
        if n.max() > 1 and spread == "range":
            ax.fill_between(mean.index, group.min(), group.max(), color=colour, alpha=0.2, lw=0)
        elif n.max() > 1:
            half = stats.t.ppf(0.975, (n - 1).clip(lower=1)) * std / np.sqrt(n)
            ax.fill_between(mean.index, mean - half, mean + half, color=colour, alpha=0.2, lw=0)
    ax.set(xlabel=axis_label(x), ylabel=axis_label(y))
    return ax


def dose_response(ax: plt.Axes, last: pd.DataFrame, y: str, x: str = "weight_decay", **style) -> plt.Axes:
    """Mean of ``y`` across seeds against a coefficient ``x`` (log axis), with 95%
    t-interval error bars; ``x = 0`` is drawn one decade left of the smallest non-zero
    value and labelled 0. ``last`` has one row per run (e.g. the last epoch of each)."""
    group = last.groupby(x)[y]
    mean, std, n = group.mean(), group.std().fillna(0), group.count()
    half = stats.t.ppf(0.975, (n - 1).clip(lower=1)) * std / np.sqrt(n)
    values = mean.index.to_numpy(dtype=float)
    nonzero = values[values > 0]
    zero_at = nonzero.min() / 10 if len(nonzero) else 1.0
    where = np.where(values > 0, values, zero_at)
    ax.errorbar(where, mean.to_numpy(), yerr=half.to_numpy(), marker="o", capsize=3, **style)
    ax.set_xscale("log")
    ticks = sorted(set(where))
    ax.set_xticks(ticks, [("0" if t == zero_at and 0 in values else f"{t:g}") for t in ticks], fontsize=8)
    ax.set(xlabel=axis_label(x), ylabel=axis_label(y))
    return ax


# The metric panel's rows: a metric and its level of "no effect" (a dotted line), if any.
PANEL_ROWS: tuple[tuple[str, float | None], ...] = (
    ("center_ratio", 1.0),
    ("ink_rho", 0.0),
    ("test_loss", None),
    ("test_acc", None),
)


def metric_panel(
    axes: Sequence[plt.Axes],
    runs: pd.DataFrame,
    by: str,
    rows: Sequence[tuple[str, float | None]] = PANEL_ROWS,
    **band_style,
) -> None:
    """One metric of :data:`PANEL_ROWS` per axis of ``axes`` (a column of a figure): the
    seed band of each group ``by`` over epochs, the no-effect level dotted, the test loss on
    a log axis. ``band_style`` goes to :func:`band` (``spread``, ``palette``, ``x``, ``ls``...)."""
    for ax, (y, level) in zip(axes, rows):
        band(ax, runs, y, by=by, **band_style)
        if level is not None:
            ax.axhline(level, color="grey", lw=0.8, ls=":")
        if y == "test_loss":
            ax.set_yscale("log")
        if y.endswith("_acc"):
            zoom_to_trained(ax)


def heatmap_rows(
    axes: np.ndarray, rows: Sequence[Sequence[tuple[str, np.ndarray]]], ylabels: Sequence[str] | None = None
) -> None:
    """Pixel heatmaps in a grid, one colour scale per row: ``rows[i]`` is a list of
    ``(title, counts (784,))`` drawn on ``axes[i]`` (a 2-d array of axes, as
    ``plt.subplots(..., squeeze=False)`` gives), with a colour bar at the row's last map and
    spare axes hidden."""
    for i, (ax_row, row) in enumerate(zip(axes, rows)):
        low, high = min(c.min() for _, c in row), max(c.max() for _, c in row)
        for j, (ax, (title, counts)) in enumerate(zip(ax_row, row)):
            pixel_heatmap(ax, counts, title, vmin=low, vmax=high, colorbar=j == len(row) - 1)
            ax.title.set_fontsize(8)
        for ax in ax_row[len(row) :]:
            ax.axis("off")
        if ylabels is not None:
            ax_row[0].set_ylabel(axis_label(ylabels[i]))


# ---------------------------------------------------------------------------- the write-up's figures
# One colour per configuration in every figure of the write-up's main text (Okabe-Ito,
# readable with the common colour-vision deficiencies).
CONFIG_COLOURS = {
    "no decay": "#D55E00",
    "L2 1e-3": "#0072B2",
    "L2 1e-2": "#009E73",
    "inputs in [0, 1]": "#E69F00",
    "L1 1e-4": "#CC79A7",
    "decoupled 2e-5": "#56B4E9",
    "near-parents": "#000000",
}


def configuration_colour(label: str) -> str:
    """The write-up's colour of a configuration label (grey for one without a colour)."""
    return CONFIG_COLOURS.get(label, "#999999")


def seed_band(
    ax: plt.Axes, runs: pd.DataFrame, y: str, x: str = "epoch", order: Sequence[str] | None = None, **style
) -> plt.Axes:
    """Mean of ``y`` over seeds against ``x``, one line per ``configuration``, with a band
    from the lowest to the highest seed, in the configuration's colour.

    ``runs``: tidy, with columns ``configuration``, ``seed``, ``x`` and ``y``. The legend
    entries say how many seeds each line pools (``"L2 1e-3 (n=3)"``).
    """
    for label in order or sorted(runs["configuration"].unique()):
        group = runs[runs["configuration"] == label].groupby(x)[y]
        mean, n = group.mean(), runs.loc[runs["configuration"] == label, "seed"].nunique()
        colour = configuration_colour(label)
        ax.plot(mean.index, mean.to_numpy(), color=colour, label=f"{label} (n={n})", **style)
        if n > 1:
            ax.fill_between(mean.index, group.min(), group.max(), color=colour, alpha=0.2, lw=0)
    return ax


def legend_outside(ax: plt.Axes, **kwargs) -> None:
    """The legend to the right of the axes, outside the data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, **kwargs)


def legend_below(ax: plt.Axes, ncols: int = 2, **kwargs) -> None:
    """The legend under the axes (below its x label), outside the data: for panels side by
    side, where a legend to the right would cover the next panel."""
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), ncols=ncols, frameon=False, **kwargs)


def seed_strip(
    ax: plt.Axes, finals: pd.DataFrame, y: str = "ink_rho", colours: dict[str, str] | None = None
) -> plt.Axes:
    """Every seed's ``y`` as a dot, one row per ``configuration`` (top to bottom in the
    order of ``finals``), with a zero line: the verdicts without any threshold. Rows are
    coloured by ``colours`` (label -> colour), else by :func:`configuration_colour`."""
    labels = list(dict.fromkeys(finals["configuration"]))
    for row, label in enumerate(labels):
        values = finals.loc[finals["configuration"] == label, y].to_numpy()
        colour = (colours or {}).get(label, configuration_colour(label))
        ax.scatter(values, np.full(len(values), row), s=22, color=colour, zorder=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    return ax


def difference_heatmap(ax: plt.Axes, counts: np.ndarray, limit: float, title: str) -> matplotlib.image.AxesImage:
    """Connections per pixel minus the uniform share (the mean count), 28 x 28, on a
    diverging scale from ``-limit`` to ``+limit``: red where a pixel has more connections
    than uniform placement gives it, blue where it has fewer."""
    counts = np.asarray(counts, dtype=float)
    image = ax.imshow(as_image(counts - counts.mean()), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set(title=title, xticks=[], yticks=[])
    return image


def benchmark_chart(table: pd.DataFrame) -> matplotlib.figure.Figure:
    """The benchmark's timings (``ours_ms`` against ``baseline_ms``, log scale) and speedups,
    one row per ``benchmark`` of ``table`` (as :func:`synapses_study.bench.kernels.run_all` gives)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.7 * len(table) + 1.5), gridspec_kw=dict(width_ratios=[3, 2]))
    y = np.arange(len(table))
    axes[0].barh(y + 0.2, table["baseline_ms"], height=0.4, color="#999999", label="baseline")
    axes[0].barh(y - 0.2, table["ours_ms"], height=0.4, color="#000000", label="synapses")
    axes[0].set(yticks=y, yticklabels=table["benchmark"], xscale="log", xlabel="milliseconds (log)")
    axes[0].legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False)  # above the bars, off them
    axes[1].barh(y, table["speedup"], color="#000000")
    axes[1].axvline(1, color="black", lw=0.8)
    axes[1].set(yticks=y, yticklabels=[], xscale="log", xlabel="speedup over the baseline (log)")
    for yy, speedup in zip(y, table["speedup"]):
        axes[1].text(speedup, yy, f" {speedup:.1f}x", va="center")
    for ax in axes:
        ax.invert_yaxis()
    fig.tight_layout()
    return fig


def selection_panel(ax: plt.Axes, table: pd.DataFrame, k: int, classifier: str) -> plt.Axes:
    """Test accuracy on the top-``k`` pixels of each ranking, one classifier: a dot per seed
    and a dash at the mean, one column per ranking, the learned rankings coloured by weight
    decay (grey: the rankings that need no training). No bars: the axis does not start at 0.

    ``table``: the rows of :func:`synapses_study.reading.selection.score_table`.
    """
    rows = table[(table["k"] == k) & (table["classifier"] == classifier)]
    learned = rows[rows["weight_decay"].notna()]
    decays = sorted(learned["weight_decay"].unique())
    rankings = list(dict.fromkeys(learned["ranking"])) + [
        r for r in dict.fromkeys(rows["ranking"]) if r not in set(learned["ranking"])
    ]
    width = 0.8 / max(len(decays), 1)
    for column, ranking in enumerate(rankings):
        chosen = rows[rows["ranking"] == ranking]
        groups = (
            [(wd, chosen[chosen["weight_decay"] == wd]) for wd in decays]
            if chosen["weight_decay"].notna().any()
            else [(None, chosen)]
        )
        for slot, (wd, group) in enumerate(groups):
            x = column + (slot - (len(groups) - 1) / 2) * width
            label = decay_label(wd) if wd is not None else None
            colour = configuration_colour(label) if label else "#999999"
            values = 100 * group["test_acc"].to_numpy()
            ax.scatter(
                [x],
                [values.mean()],
                marker="_",
                s=250,
                linewidths=2,
                color=colour,
                label=label if column == 0 else None,
                zorder=4,
            )
            ax.scatter(np.full(len(values), x), values, s=10, color=colour, alpha=0.7, zorder=3)
    ax.set_xticks(range(len(rankings)), rankings, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{classifier.replace('_', ' ')}, K = {k} pixels")
    low = 100 * rows["test_acc"].min()
    ax.set_ylim(max(0.0, low - 5), 100)
    ax.grid(axis="y", color="#dddddd", lw=0.6)
    return ax


def zoom_to_trained(ax: plt.Axes, skip: float = 0.05) -> None:
    """Start the y axis at the lowest value its lines reach after the first ``skip`` of the
    x range (the first epochs' low accuracies would otherwise flatten every difference)."""
    lows = []
    for line in ax.get_lines():
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        if len(x) > 1 and np.isfinite(y).any():
            later = y[x >= x.min() + skip * (x.max() - x.min())]
            if np.isfinite(later).any():
                lows.append(np.nanmin(later))
    if lows:
        top = ax.get_ylim()[1]
        low = min(lows)
        ax.set_ylim(low - 0.05 * (top - low), top)


# Human names of the results' columns, with their units, for every axis.
METRIC_LABELS = {
    "epoch": "epoch",
    "chained_epoch": "epoch (both phases)",
    "center_ratio": "centre ratio (centre / mean connections)",
    "ink_rho": "ink ρ (Spearman)",
    "test_loss": "test loss (NLL)",
    "train_loss": "train loss (NLL)",
    "test_acc": "test accuracy (%)",
    "train_acc": "train accuracy (%)",
    "weight_decay": "L2 weight decay",
    "share_of_pruned": "blank pixels' share",
    "share_of_connections": "blank pixels' share",
    "pruned_fraction": "fraction of the region's connections pruned",
    "mean_abs_weight": "mean |weight|",
}

# Human names of grouping columns in legends ("entry" and "label" values speak for themselves).
GROUP_NAMES = {"inputs": "inputs", "regrowth": "regrowth", "epsilon": "epsilon", "zeta": "zeta", "l1": "L1"}

# One colour per condition in every figure (CONFIG_COLOURS); the values of other groupings
# take, in order, colours that no condition of the write-up's main figures uses.
SPARE_COLOURS = ("#000000", "#999999", "#56B4E9", "#CC79A7", "#E69F00")
# Ink bands are ordered (never < rare < medium < core): four hues told apart at a glance
# (grey for no ink, pink, violet, dark brown), light to dark in that order, none of them a
# condition's colour. (A ramp of one brown, used before, merged its four shades.)
BAND_COLOURS = {"never": "#A6A6A6", "rare": "#E7298A", "medium": "#7570B3", "core": "#3B2A14"}

# About the width at which a markdown page (GitHub's column) shows a wider image, in pixels.
SHOWN_WIDTH_PX = 800


def axis_label(column: str) -> str:
    """The axis name of a results column (``"test_acc"`` -> ``"test accuracy (%)"``)."""
    return METRIC_LABELS.get(column, column.replace("_", " "))


def group_label(by: str, value: object) -> str:
    """A legend entry for the group ``by == value``: ``"L2 1e-3"`` for a weight decay, the
    value alone for ``entry`` and ``label``, else ``"inputs: scaled"``."""
    if by == "weight_decay":
        return decay_label(float(value))  # type: ignore[arg-type]
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if by in ("entry", "label") else f"{GROUP_NAMES.get(by, by.replace('_', ' '))}: {text}"


def group_colours(by: str, values: Sequence[object]) -> dict[object, str]:
    """The colour of each group: a weight decay or a named condition its colour of
    :data:`CONFIG_COLOURS`, an ink band its ramp colour, anything else the spare colours in
    order (cycling past five)."""
    colours, spare = {}, 0
    for value in values:
        name = group_label(by, value)
        if name in CONFIG_COLOURS:
            colours[value] = CONFIG_COLOURS[name]
        elif str(value) in BAND_COLOURS:
            colours[value] = BAND_COLOURS[str(value)]
        else:
            colours[value] = SPARE_COLOURS[spare % len(SPARE_COLOURS)]
            spare += 1
    return colours


def legibility_problems(fig: matplotlib.figure.Figure) -> list[str]:
    """What makes ``fig`` hard to read, as sentences (empty when nothing):

    - an axis label that is a raw column name (an underscore in it);
    - a legend drawn over the data (a point of a labelled line of its axes inside its box);
    - legend text under 6 points;
    - two axes' titles overlapping, or a title overlapping another axes.
    """
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") else None  # Agg has one
    fig.canvas.draw()
    problems = []
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    for ax in axes:
        for which, text in (("x", ax.get_xlabel()), ("y", ax.get_ylabel())):
            if "_" in text:
                problems.append(f"{which} axis labelled with the raw name {text!r}")
        legend = ax.get_legend()
        if legend is None or not legend.get_visible():
            continue
        if any(float(t.get_fontsize()) < 6 for t in legend.get_texts()):
            problems.append(f"legend text under 6 pt in {ax.get_title()!r}")
        box, frame = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        for line in ax.get_lines():
            if str(line.get_label()).startswith("_"):
                continue
            points = line.get_transform().transform(
                np.column_stack([np.asarray(v, dtype=float) for v in line.get_data()])
            )
            if len(points) > 1:  # the segments between vertices are drawn too: sample them
                steps = np.linspace(0, 1, 8)[:, None, None]
                points = (points[:-1] + steps * (points[1:] - points[:-1])).reshape(-1, 2)
            drawn = (
                (points[:, 0] >= frame.x0)
                & (points[:, 0] <= frame.x1)
                & (points[:, 1] >= frame.y0)
                & (points[:, 1] <= frame.y1)
            )  # clipped points are not drawn
            inside = (
                drawn
                & (points[:, 0] > box.x0)
                & (points[:, 0] < box.x1)
                & (points[:, 1] > box.y0)
                & (points[:, 1] < box.y1)
            )
            if inside.any():
                problems.append(f"legend over the data in {ax.get_title()!r} ({line.get_label()!r})")
                break
    titled = [(ax, ax.title.get_window_extent(renderer)) for ax in axes if ax.get_title()]
    for i, (ax, box) in enumerate(titled):
        for other, other_box in titled[i + 1 :]:
            if box.overlaps(other_box):
                problems.append(f"titles {ax.get_title()!r} and {other.get_title()!r} overlap")
        if any(other is not ax and box.overlaps(other.get_window_extent(renderer)) for other in axes):
            problems.append(f"title {ax.get_title()!r} overlaps another plot")
    return problems


def shown_scale(fig: matplotlib.figure.Figure, dpi: int = 110, shown_width_px: int = SHOWN_WIDTH_PX) -> float:
    """How much a page showing the PNG of ``fig`` (saved by :func:`save_figure` at ``dpi``,
    cropped tight) at most ``shown_width_px`` wide shrinks it: 1 for a narrower figure."""
    fig.canvas.draw()
    width_px = (fig.get_tightbbox().width + 0.2) * dpi  # savefig's tight crop pads 0.1 inch a side
    return min(1.0, shown_width_px / width_px)


def small_text(
    fig: matplotlib.figure.Figure, min_pt: float = 7.0, dpi: int = 110, shown_width_px: int = SHOWN_WIDTH_PX
) -> list[str]:
    """The texts of ``fig`` (tick labels, axis labels, titles, legends) smaller than
    ``min_pt`` points once shown at most ``shown_width_px`` wide (:func:`shown_scale`), as
    ``"'label' 5.2 pt"``; empty when every text is large enough."""
    scale = shown_scale(fig, dpi, shown_width_px)
    found = []
    for text in fig.findobj(matplotlib.text.Text):
        if text.get_visible() and text.get_text().strip() and text.get_figure() is not None:
            shown = float(text.get_fontsize()) * scale
            if shown < min_pt - 1e-9:
                found.append(f"{text.get_text()[:30]!r} {shown:.1f} pt")
    return found


def require_text_size(fig: matplotlib.figure.Figure, min_pt: float = 7.0, dpi: int = 110) -> None:
    """Raise ``ValueError`` naming the texts of ``fig`` under ``min_pt`` as shown (:func:`small_text`)."""
    found = small_text(fig, min_pt, dpi)
    if found:
        raise ValueError(f"text under {min_pt:g} pt at {SHOWN_WIDTH_PX} px shown width: " + "; ".join(found[:8]))


def decay_label(weight_decay: float) -> str:
    """The write-up's label of a coupled L2 decay: ``"no decay"``, ``"L2 1e-3"``, ..."""
    if weight_decay == 0:
        return "no decay"
    mantissa, exponent = f"{weight_decay:.0e}".split("e")
    return f"L2 {mantissa}e{int(exponent)}"
