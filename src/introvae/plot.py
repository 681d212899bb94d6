"""The figures of a run, drawn with matplotlib.

* `plot_dynamics`: the training dynamics after Fig. 5 of the IntroVAE paper, one panel per `Panel` the objective
  declares in its `dynamics` (IntroVAE: the KLs of real, reconstructed and sampled images against the margin m, and
  L_AE), or, for a log of unknown origin, panels derived from its keys; no objective is named here.
  `dynamics_figure` returns the matplotlib Figure itself, for restyling; `draw_run_dynamics` draws a run's
  dynamics.png.
* `plot_samples` and `plot_density`: the 2-D benchmark's real-against-generated scatter and decoded density.

matplotlib is imported inside the functions, so `import introvae` stays light; figures are drawn on `Figure` objects
with the Agg canvas, never through pyplot, so nothing here changes the backend or the state of a caller's session.
Every file is written atomically (temporary file, then rename): a page refreshing the figure during training never
sees half an image.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from introvae.atomic import atomic_write_bytes
from introvae.config import Config
from introvae.objectives.base import Panel, Series
from introvae.rundir import RunDir
from introvae.runlog import read_log

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw_run_dynamics", "dynamics_figure", "panels_from_log", "plot_density", "plot_dynamics", "plot_samples"]

DPI = 100  # with the sizes below: 500 x 420 px per dynamics panel, small PNG files
_PANEL_INCHES = (5.0, 4.2)
_MAX_COLUMNS = 3
# Keys every training log has that are bookkeeping, not dynamics.
_BOOKKEEPING_KEYS = frozenset({"step", "time"})
# matplotlib's "tab10" colours, given out in order over the whole figure so no two series share one.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")
_NO_DATA_GREY = "#6e6e6e"


# ------------------------------------------------------------------------------------------------ the series


def _finite(value: Any) -> float | None:
    """The value as a float if it is a finite number, else None (bools and strings are not data points)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _measurements(records: Sequence[Any]) -> list[tuple[int, dict]]:
    """(position, record) of the records that hold measurements: events (a margin chosen, a roll-back) are not."""
    return [(index, record) for index, record in enumerate(records)
            if isinstance(record, dict) and "event" not in record]


def _points(records: Sequence[Any], key: str) -> tuple[np.ndarray, np.ndarray]:
    """The finite (step, value) points of `key`, sorted by step; a record without a step stands at its position."""
    points = []
    for index, record in _measurements(records):
        x = _finite(record.get("step", index))
        y = _finite(record.get(key))
        if x is not None and y is not None:
            points.append((x, y))
    points.sort(key=lambda point: point[0])  # stable: repeated steps of a resumed run keep their log order
    steps = np.array([x for x, _ in points], dtype=np.float64)
    return steps, np.array([y for _, y in points], dtype=np.float64)


def _wants_log(values: np.ndarray) -> bool:
    """True when positive values span more than two decades, where a linear axis would flatten the tail."""
    if values.size == 0 or values.min() <= 0:
        return False
    return float(values.max() / values.min()) > 100.0


def panels_from_log(records: Sequence[Any]) -> tuple[Panel, ...]:
    """Panels for a log of unknown origin: its numeric keys grouped by the word before their first underscore.

    `kl_real`, `kl_rec` and `kl_sample` share a panel "kl"; a key without a sibling (`ae`, `margin`) has its own.
    Bookkeeping (`step`, `time`) and event records are left out. Keys keep the order of their first appearance.
    """
    groups: dict[str, list[str]] = {}
    for _, record in _measurements(records):
        for key, value in record.items():
            if key in _BOOKKEEPING_KEYS or _finite(value) is None:
                continue
            members = groups.setdefault(key.split("_", 1)[0], [])
            if key not in members:
                members.append(key)
    panels = []
    for prefix, keys in groups.items():
        name = keys[0] if len(keys) == 1 else prefix
        panels.append(Panel(name, name, tuple(Series(key, key) for key in keys)))
    return tuple(panels)


@dataclass
class _DrawnSeries:
    """A declared series with its points in the log and the colour it gets."""

    series: Series
    steps: np.ndarray
    values: np.ndarray
    colour: str


# ------------------------------------------------------------------------------------------------- dynamics


def dynamics_figure(records: Sequence[Any], panels: Sequence[Panel] | None = None, title: str = "") -> "Figure":
    """The training-dynamics Figure of a log: one axes per panel, series absent from the log left out.

    `panels` are what the run's objective declares (`OBJECTIVES[model].dynamics`); None or empty (an objective that
    declares none): `panels_from_log(records)`.
    A panel's y axis is logarithmic when it says so, or (log_scale None) when its values span more than two decades.
    A panel without data says "no data"; a series with a single point is drawn as a marker.
    """
    from matplotlib.figure import Figure

    records = list(records or [])
    panels = list(panels or panels_from_log(records)) or [Panel("", "", ())]
    columns = min(len(panels), _MAX_COLUMNS)
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(_PANEL_INCHES[0] * columns, _PANEL_INCHES[1] * rows), dpi=DPI, layout="constrained")
    if title:
        figure.suptitle(title)
    colour_index = 0
    for index, panel in enumerate(panels):
        drawn = []
        for series in panel.series:
            steps, values = _points(records, series.key)
            if steps.size:
                drawn.append(_DrawnSeries(series, steps, values, _COLOURS[colour_index % len(_COLOURS)]))
                colour_index += 1
        _draw_panel(figure.add_subplot(rows, columns, index + 1), panel, drawn)
    return figure


def _draw_panel(axes: Any, panel: Panel, drawn: list[_DrawnSeries]) -> None:
    from matplotlib.ticker import MaxNLocator

    all_values = np.concatenate([series.values for series in drawn]) if drawn else np.empty(0)
    if panel.log_scale is None:
        log_scale = _wants_log(all_values)
    else:  # a declared log axis falls back to linear when a value is not positive
        log_scale = bool(panel.log_scale and all_values.size and all_values.min() > 0)
    for series in drawn:
        axes.plot(series.steps, series.values, color=series.colour, label=series.series.label, linewidth=1.6,
                  linestyle="--" if series.series.dashed else "-", marker="o" if series.steps.size == 1 else None,
                  markersize=6)
    if log_scale:
        axes.set_yscale("log")
    axes.set_title(panel.title)
    axes.set_ylabel(f"{panel.ylabel} (log)" if log_scale and panel.log_scale is None else panel.ylabel)
    axes.set_xlabel("step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))  # no step 12.5
    axes.grid(True, color="#e4e4e4", linewidth=0.8)
    axes.set_axisbelow(True)
    if drawn:
        axes.legend(loc="best", fontsize="small", framealpha=0.9)
    else:
        axes.text(0.5, 0.5, "no data", transform=axes.transAxes, ha="center", va="center", color=_NO_DATA_GREY,
                  fontsize="large")


def _save(figure: "Figure", path: str | Path) -> None:
    """Render on the Agg canvas and write an RGB PNG (matplotlib's own PNGs carry an alpha channel nobody uses,
    which only makes the file larger)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(path, buffer.getvalue())


def plot_dynamics(records: Sequence[Any], path: str | Path, title: str = "",
                  panels: Sequence[Panel] | None = None) -> None:
    """Draw the training-dynamics figure of a training log as a PNG at `path` (500 x 420 px per panel, at most
    three panels a row), creating parent directories as needed. See `dynamics_figure` for what is drawn."""
    _save(dynamics_figure(records, panels, title), path)


def draw_run_dynamics(run: RunDir, out: str | Path | None = None, config: Config | None = None) -> Path:
    """Draw a run's log.jsonl into `out` (default RUN_DIR/dynamics.png) with the panels and title the trainer uses:
    the objective's of `config`, or of the run's config.json when it is there; without either, whatever the log
    holds. Returns the file written."""
    if config is None and run.config.is_file():
        config = Config.load(run.config)
    out = Path(out) if out is not None else run.dynamics
    title = f"{config.model}: {run.name}" if config is not None else run.name
    plot_dynamics(read_log(run.log), out, title=title,
                  panels=config.objective_class.dynamics if config is not None else None)
    return out


# ------------------------------------------------------------------------------------------------ 2-D figures


def _numpy(points: Any) -> np.ndarray:
    """A tensor or array as a float64 numpy array on the CPU."""
    if hasattr(points, "detach"):
        points = points.detach().cpu().double().numpy()
    return np.asarray(points, dtype=np.float64)


def plot_samples(real: Any, fake: Any, extent: float, path: str | Path, title: str = "") -> None:
    """Real points in grey and generated points in blue, partly transparent, on the same axes [-extent, extent]^2.

    `real` and `fake` are (N, 2) tensors or arrays; points that are not finite are left out.
    """
    from matplotlib.figure import Figure

    real, fake = _numpy(real), _numpy(fake)
    real = real[np.isfinite(real).all(axis=1)]
    fake = fake[np.isfinite(fake).all(axis=1)]
    figure = Figure(figsize=(5.6, 6.0), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.axhline(0, color="#ebebeb", linewidth=0.8, zorder=0)
    axes.axvline(0, color="#ebebeb", linewidth=0.8, zorder=0)
    axes.scatter(real[:, 0], real[:, 1], s=3, color="#969696", linewidths=0, label=f"real ({len(real)})")
    axes.scatter(fake[:, 0], fake[:, 1], s=3, color=_COLOURS[0], alpha=0.6, linewidths=0,
                 label=f"generated ({len(fake)})")
    axes.set_xlim(-extent, extent)
    axes.set_ylim(-extent, extent)
    axes.set_aspect("equal")
    axes.legend(loc="upper right", fontsize="small", markerscale=3, framealpha=0.9)
    axes.set_title(title, fontsize="medium")
    _save(figure, path)


def plot_density(grid: Any, path: str | Path, title: str = "", extent: float | None = None) -> None:
    """A heat map (viridis) of a (bins, bins) histogram indexed [x, y]: the square root of each cell over the largest,
    so that thin low-density bridges between modes stay visible. With `extent` the axes show data coordinates
    [-extent, extent]^2, else cell indices."""
    from matplotlib.figure import Figure

    grid = _numpy(grid)
    peak = float(grid.max()) if grid.size else 0.0
    values = np.sqrt(grid / peak) if peak > 0 else np.zeros_like(grid)
    bins = grid.shape[0]
    box = (-extent, extent, -extent, extent) if extent is not None else (0, bins, 0, bins)
    figure = Figure(figsize=(6.2, 5.6), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    # imshow takes rows as y: the transpose puts x along the columns, origin "lower" puts large y at the top.
    image = axes.imshow(values.T, origin="lower", extent=box, cmap="viridis", vmin=0.0, vmax=1.0,
                        interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.85, label="sqrt(mass / largest cell mass)")
    axes.set_title(title, fontsize="medium")
    axes.set_xlabel(f"{bins} x {bins} cells (the metric grid)")
    _save(figure, path)
