"""Explore the committed topologies in JupyterLab: a sweep, a configuration, a seed or the
mean over seeds, and an epoch slider that moves every view at once.

    from synapses_study.figures.explorer import TopologyExplorer
    TopologyExplorer("reproduction").widget      # the last expression of a cell shows it

Views: connections per input pixel (counts, or difference from the uniform share), the
trend curve, ``center_ratio`` and ink ρ against the epoch, train and test loss against the
epoch, each with a marker at the slider's epoch. Compare mode shows configuration A,
configuration B and A − B at that epoch. Only committed results are read: nothing trains.

The data side (:class:`SweepRuns`) and the drawing are separate from the widgets, so the
tests drive the widgets' values and check what is drawn.
"""

from __future__ import annotations

import argparse
import io
import statistics
import textwrap
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..measures.analysis import ink_correlation
from ..measures.topology import SIDE, as_image, trend
from ..reading.results import load_metrics, training_ink
from ..runs.run_dir import RunDir
from ..setup.config import ExperimentConfig
from ..setup.paths import RESULTS
from ..setup.sweep_file import CONFIGS, labelled_groups, load_sweep, sweep_names
from .notebook import check_known_parameters

MEAN = "mean over seeds"
# A and B are not conditions: neutral colours, so that none reads as a decay of the write-up's palette
COLOURS = {"A": "#000000", "B": "#999999"}


@dataclass(frozen=True)
class Selection:
    """What to show: ``label`` of a configuration, one ``seed`` or :data:`MEAN`."""

    label: str
    seed: int | str = MEAN


class SweepRuns:
    """The finished runs of one sweep file, grouped by configuration (seeds pooled).

    Args:
        sweep: name of a sweep file in ``configs/``.
        results_dir: where the run folders are (default: the repository's ``results/``).
    """

    def __init__(self, sweep: str, results_dir: str | Path | None = None) -> None:
        self.sweep = sweep
        self.results_dir = Path(results_dir) if results_dir is not None else RESULTS
        self.groups: dict[str, list[ExperimentConfig]] = labelled_groups(load_sweep(CONFIGS / f"{sweep}.yaml"))

    @property
    def labels(self) -> list[str]:
        return list(self.groups)

    def finished(self, label: str) -> list[ExperimentConfig]:
        return [c for c in self.groups[label] if RunDir(self.results_dir / c.run_id()).problem(c) is None]

    def problem(self, selection: Selection) -> str | None:
        """Why ``selection`` cannot be shown (``None`` when it can)."""
        if selection.label not in self.groups:
            return f"no configuration {selection.label!r} in {self.sweep}"
        configs = self._configs(selection)
        if not configs:
            wanted = "any seed" if selection.seed == MEAN else f"seed {selection.seed}"
            return (
                f"{self.sweep} / {selection.label}: no finished run of {wanted} in {self.results_dir} "
                f"(python -m synapses_study.training.sweep configs/{self.sweep}.yaml trains it)"
            )
        return None

    def seeds(self, label: str) -> list[int]:
        """The seeds of ``label`` with a finished run (the others cannot be shown)."""
        return sorted(c.seed for c in self.finished(label))

    def has_topology(self, label: str) -> bool:
        """Whether the configuration has one to show (a dense baseline has every pair)."""
        return all(c.model != "Dense" for c in self.groups[label])

    def _configs(self, selection: Selection) -> list[ExperimentConfig]:
        finished = self.finished(selection.label)
        return finished if selection.seed == MEAN else [c for c in finished if c.seed == selection.seed]

    def epochs(self, selection: Selection) -> int:
        return self._configs(selection)[0].epochs

    def counts(self, selection: Selection) -> np.ndarray:
        """``(epochs + 1, 784)`` connections per pixel (mean over the finished seeds)."""
        return np.mean([_topology(self.results_dir / c.run_id()) for c in self._configs(selection)], axis=0)

    def curves(self, selection: Selection) -> pd.DataFrame:
        """Per epoch (0 = initialisation): ``center_ratio``, ``ink_rho``, ``train_loss`` and
        ``test_loss``, means over the selected seeds."""
        frames = [_curves(self.results_dir / c.run_id()) for c in self._configs(selection)]
        return pd.concat(frames).groupby("epoch").mean()


@lru_cache(maxsize=64)
def _topology(run_dir: Path) -> np.ndarray:
    return RunDir(run_dir).topology().astype(float)


@lru_cache(maxsize=64)
def _curves(run_dir: Path) -> pd.DataFrame:
    counts = _topology(run_dir)
    frame = pd.DataFrame({"epoch": np.arange(len(counts)), "ink_rho": ink_correlation(counts, training_ink())})
    metrics = load_metrics(run_dir)[["epoch", "center_ratio", "train_loss", "test_loss"]]
    return frame.merge(metrics, on="epoch", how="left")


# ---------------------------------------------------------------------------- drawing
class TopologyFigure:
    """The explorer's figure: heatmap(s) on the left, three curves on the right.

    Everything that does not depend on the epoch is drawn once per selection into a
    background; moving the epoch redraws only the heatmaps, the trend curves, the markers
    and the epoch label over it (blitting), which keeps a slider step well under 150 ms."""

    def __init__(self, runs: SweepRuns, a: Selection, b: Selection | None, difference: bool) -> None:
        self.runs, self.a, self.b, self.difference = runs, a, b, difference
        self.counts = {"A": runs.counts(a)} | ({"B": runs.counts(b)} if b else {})
        self.curves = {"A": runs.curves(a)} | ({"B": runs.curves(b)} if b else {})
        self.last_epoch = min(len(c) for c in self.counts.values()) - 1
        panels = ["A", "B", "A − B"] if b else ["A"]
        self.figure = Figure(figsize=(3.2 * len(panels) + 6.0, 4.8), dpi=80)
        grid = self.figure.add_gridspec(
            4, len(panels) + 1, width_ratios=[1] * len(panels) + [1.6], height_ratios=[1, 1, 1, 0.12]
        )
        self.images = {}
        limit = self._limit()
        axes = {}
        for column, name in enumerate(panels):
            ax = axes[name] = self.figure.add_subplot(grid[:3, column])
            diverging = self.difference or name == "A − B"
            self.images[name] = ax.imshow(
                np.zeros((SIDE, SIDE)),
                cmap="RdBu_r" if diverging else "viridis",
                vmin=-limit if diverging else 0,
                vmax=limit if diverging else self._max_count(),
            )
            ax.set(xticks=[], yticks=[])
            ax.set_title(self._title(name), fontsize=9)
        # one colour scale for A and B, its own for A − B
        label = "connections − uniform share" if self.difference else "connections per pixel"
        counts_panels = 2 if b else 1
        self.figure.colorbar(
            self.images["A"],
            cax=self.figure.add_subplot(grid[3, :counts_panels]),
            orientation="horizontal",
            label=label,
        )
        if b:
            self.figure.colorbar(
                self.images["A − B"],
                cax=self.figure.add_subplot(grid[3, 2]),
                orientation="horizontal",
                label="A − B (connections)",
            )
        self.trend_ax, self.rho_ax, self.loss_ax = (self.figure.add_subplot(grid[row, -1]) for row in range(3))
        self.trend_lines = {
            k: self.trend_ax.plot(np.arange(2, 29, 2), np.zeros(14), marker="o", ms=2, color=COLOURS[k])[0]
            for k in self.counts
        }
        trends = np.concatenate([trend(c) for c in self.counts.values()])
        self.trend_ax.set(ylabel="connections / pixel", ylim=(trends.min() * 0.98, trends.max() * 1.02))
        self.trend_ax.set_xlabel("side of the centred square (px)", fontsize=8, labelpad=1)
        self.epoch_label = self.trend_ax.text(0.98, 0.92, "", transform=self.trend_ax.transAxes, ha="right", fontsize=9)
        self.markers = []
        for key, frame in self.curves.items():
            colour = COLOURS[key]
            self.rho_ax.plot(frame.index, frame["ink_rho"], color=colour, label=f"{key}: ink ρ")
            self.rho_ax.plot(
                frame.index, frame["center_ratio"] - 1, color=colour, ls=":", label=f"{key}: centre ratio − 1"
            )
            self.loss_ax.plot(frame.index, frame["train_loss"], color=colour, ls=":", label=f"{key}: train")
            self.loss_ax.plot(frame.index, frame["test_loss"], color=colour, label=f"{key}: test")
        self.rho_ax.axhline(0, color="black", lw=0.6)
        self.rho_ax.set(ylabel="topology")
        self.loss_ax.set(xlabel="epoch", ylabel="loss (nll)", yscale="log")
        for ax in (self.rho_ax, self.loss_ax):
            self.markers.append(ax.axvline(0, color="grey", lw=1))
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.05), frameon=False)
        self.figure.subplots_adjust(left=0.02, right=0.8, top=0.88, bottom=0.1, wspace=0.3, hspace=0.9)
        self.moving = [*self.images.values(), *self.trend_lines.values(), *self.markers, self.epoch_label]
        for artist in self.moving:
            artist.set_animated(True)  # left out of the background
        self.canvas = FigureCanvasAgg(self.figure)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)
        self.epoch = 0

    def _title(self, name: str) -> str:
        if name == "A − B":
            return "A − B"
        selection = self.a if name == "A" else self.b
        assert selection is not None
        n = len(self.runs._configs(selection))
        label = textwrap.fill(f"{name}: {selection.label}", width=30, max_lines=2, placeholder=" …")
        return f"{label}\n{f'mean over {n} seeds' if selection.seed == MEAN else f'seed {selection.seed}'}"

    def _max_count(self) -> float:
        return max(float(c.max()) for c in self.counts.values())

    def _limit(self) -> float:
        spreads = [np.abs(c - c.mean(axis=1, keepdims=True)).max() for c in self.counts.values()]
        if len(self.counts) == 2:
            spreads.append(
                np.abs(self.counts["A"][: self.last_epoch + 1] - self.counts["B"][: self.last_epoch + 1]).max()
            )
        return float(max(spreads)) or 1.0

    def shown(self) -> dict[str, np.ndarray]:
        """The ``(28, 28)`` arrays the heatmaps show now."""
        return {name: np.asarray(image.get_array()) for name, image in self.images.items()}

    def set_epoch(self, epoch: int) -> None:
        """Show ``epoch`` (0: initialisation) in every view."""
        self.epoch = min(max(epoch, 0), self.last_epoch)
        rows = {k: c[self.epoch] for k, c in self.counts.items()}
        for key, row in rows.items():
            self.images[key].set_data(as_image(row - row.mean() if self.difference else row))
            self.trend_lines[key].set_ydata(trend(row))
        if "B" in rows:
            self.images["A − B"].set_data(as_image(rows["A"] - rows["B"]))
        self.epoch_label.set_text(f"epoch {self.epoch}")
        for marker in self.markers:
            marker.set_xdata([self.epoch, self.epoch])

    def png(self) -> bytes:
        """The figure at the current epoch as PNG bytes."""
        from PIL import Image

        self.canvas.restore_region(self.background)
        for artist in self.moving:
            self.figure.draw_artist(artist)
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(self.canvas.buffer_rgba())).save(buffer, format="png", compress_level=1)
        return buffer.getvalue()


# ---------------------------------------------------------------------------- widgets
class TopologyExplorer:
    """The widgets around :class:`TopologyFigure` (``.widget`` to display).

    Args:
        sweep: the sweep file shown first (any name in ``configs/``).
        results_dir: where the run folders are (default: the repository's ``results/``).
    """

    def __init__(self, sweep: str = "reproduction", results_dir: str | Path | None = None) -> None:
        import ipywidgets as w  # the notebooks' extra: the module's plain functions work without it

        check_known_parameters()  # a misspelt papermill parameter is refused, not run as the default

        self.results_dir = results_dir
        self.sweep = w.Dropdown(options=sweep_names(), value=sweep, description="sweep")
        self.config_a = w.Dropdown(description="A")
        self.seed_a = w.Dropdown(description="seed")
        self.compare = w.Checkbox(value=False, description="compare with B")
        self.config_b = w.Dropdown(description="B")
        self.seed_b = w.Dropdown(description="seed")
        self.view = w.ToggleButtons(options=["counts", "difference from uniform"], value="counts")
        self.epoch = w.IntSlider(
            min=0, max=1, value=0, description="epoch", continuous_update=True, layout=w.Layout(width="60%")
        )
        self.play = w.Play(min=0, max=1, step=1, interval=60)
        w.jslink((self.play, "value"), (self.epoch, "value"))
        self.message = w.HTML()
        self.image = w.Image(format="png")
        self.figure: TopologyFigure | None = None
        self.widget = w.VBox(
            [
                w.HBox([self.sweep, self.view]),
                w.HBox([self.config_a, self.seed_a]),
                w.HBox([self.compare, self.config_b, self.seed_b]),
                w.HBox([self.play, self.epoch]),
                self.message,
                self.image,
            ]
        )
        self._load_sweep()
        self.sweep.observe(lambda change: self._load_sweep(), names="value")
        for control in (self.config_a, self.config_b):
            control.observe(lambda change: self._on_config(), names="value")
        for control in (self.seed_a, self.seed_b, self.compare, self.view):
            control.observe(lambda change: self._rebuild(), names="value")
        self.epoch.observe(lambda change: self._move(change["new"]), names="value")

    # -- state from the widgets
    def selections(self) -> tuple[Selection, Selection | None]:
        a = Selection(self.config_a.value, self.seed_a.value)
        b = Selection(self.config_b.value, self.seed_b.value) if self.compare.value else None
        return a, b

    def _load_sweep(self) -> None:
        self.runs = SweepRuns(self.sweep.value, self.results_dir)
        self._hold = True
        # a configuration without a topology (a dense baseline) is never offered: its ~1,000
        # connections per pixel would swamp the colour scale of any sparse one beside it
        sparse = [label for label in self.runs.labels if self.runs.has_topology(label)] or self.runs.labels
        self.config_a.options = self.config_b.options = sparse
        self.config_a.value = sparse[0]
        self.config_b.value = sparse[-1] if len(sparse) > 1 else sparse[0]
        self._seed_options()
        self._hold = False
        self._rebuild()

    def _on_config(self) -> None:
        if getattr(self, "_hold", False):
            return
        self._hold = True
        self._seed_options()
        self._hold = False
        self._rebuild()

    def _seed_options(self) -> None:
        for config, seed in ((self.config_a, self.seed_a), (self.config_b, self.seed_b)):
            if config.value is not None:
                seeds = self.runs.seeds(config.value)
                seed.options = [(f"mean over {len(seeds)} seeds", MEAN), *((f"seed {s}", s) for s in seeds)]
                seed.value = MEAN

    def _rebuild(self) -> None:
        if getattr(self, "_hold", False):
            return
        a, b = self.selections()
        problems = [p for s in (a, b) if s is not None and (p := self.runs.problem(s))]
        if problems:
            self.figure = None
            self.message.value = "<br>".join(f"<b>Nothing to show:</b> {p}" for p in problems)
            self.image.layout.display = "none"
            return
        self.message.value = ""
        self.image.layout.display = None
        self.figure = TopologyFigure(self.runs, a, b, self.view.value != "counts")
        self.epoch.max = self.play.max = self.figure.last_epoch
        self._move(min(self.epoch.value, self.figure.last_epoch))

    def _move(self, epoch: int) -> None:
        if self.figure is None:
            return
        self.figure.set_epoch(epoch)
        self.image.value = self.figure.png()


def slider_redraw_ms(sweep: str = "reproduction", compare: bool = False, steps: int = 50) -> float:
    """Median milliseconds for one slider step (set the epoch, redraw, encode the PNG)."""
    explorer = TopologyExplorer(sweep)
    explorer.compare.value = compare
    last = explorer.epoch.max
    times = []
    for step in range(steps):
        start = time.perf_counter()
        explorer.epoch.value = (step * 37) % (last + 1)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m synapses_study.figures.explorer",
        description="The topology explorer runs in JupyterLab (notebooks/explore.ipynb; make lab). "
        "From the command line this only times its redraw: one slider step, one configuration and compare mode.",
    )
    parser.add_argument(
        "--time-redraw", action="store_true", help="time 50 slider steps of each mode and print the medians"
    )
    args = parser.parse_args(argv)
    if not args.time_redraw:
        parser.print_help()
        return 0
    for compare in (False, True):
        print(
            f"slider step, {'compare mode' if compare else 'one configuration'}: "
            f"{slider_redraw_ms(compare=compare):.1f} ms (median of 50)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
