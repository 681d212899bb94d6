"""Tests of the figures (training dynamics, 2-D samples and density), the JSONL log reader and the progress line."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from introvae.errors import UserError
from introvae.objectives import OBJECTIVES
from introvae.objectives.base import Panel, Series
from introvae.plot import dynamics_figure, panels_from_log, plot_density, plot_dynamics, plot_samples
from introvae.progress import Progress
from introvae.runlog import read_log

# IntroVAE's two panels, as an objective declares them: the KLs against the margin, and L_AE.
KL_AE_PANELS = (
    Panel("KL divergence vs margin", "KL / margin", (
        Series("kl_real", "KL(real)"), Series("kl_rec", "KL(reconstruction)"), Series("kl_sample", "KL(sample)"),
        Series("margin", "margin m", dashed=True)), log_scale=False),
    Panel("L_AE (reconstruction)", "L_AE", (Series("ae", "L_AE"),)),
)
# The colours the series get, in order over the figure (matplotlib's tab10): blue, orange, green, red, purple.
BLUE, ORANGE, GREEN, RED, PURPLE = (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)
GREY_TEXT = (110, 110, 110)


def _synthetic_records(n: int = 300) -> list[dict]:
    """A run like the paper's: KL(real) flat near 30, KL(sample) rising to 100 under a margin of 110,
    L_AE decaying from 1e4 to 10, and kl_rec missing during a warm-up."""
    records = []
    for step in range(n):
        t = step / (n - 1)
        record = {
            "step": step,
            "kl_real": 30 + 2 * math.sin(step / 7),
            "kl_sample": 20 + 80 * t,
            "margin": 110.0,
            "ae": 1e4 * 10 ** (-3 * t),
            "lr": 2e-4,  # an unrelated key, which the figure must ignore
        }
        if step >= 20:
            record["kl_rec"] = 40 + 50 * t
        records.append(record)
    return records


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def _near(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 30) -> np.ndarray:
    """Mask of the pixels within `tolerance` of `colour` in every channel (lines are anti-aliased at their edges)."""
    return (np.abs(pixels - np.array(colour, dtype=np.int16)) <= tolerance).all(axis=-1)


def _legend_labels(axes) -> list[str]:
    legend = axes.get_legend()
    return [text.get_text() for text in legend.get_texts()] if legend else []


# --------------------------------------------------------------------------------------------------- figure


def test_plot_dynamics_draws_every_series_in_its_panel(tmp_path):
    out = tmp_path / "nested" / "dir" / "dynamics.png"
    plot_dynamics(_synthetic_records(), out, title="synthetic run", panels=KL_AE_PANELS)

    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1000, 420)
    pixels = _pixels(out)
    assert pixels[0, 0].tolist() == [255, 255, 255]  # white background
    assert (pixels.min(axis=-1) < 128).mean() > 0.01  # dark ink: axes, ticks and text were drawn
    left, right = pixels[:, :500], pixels[:, 500:]
    # Each series' colour covers far more pixels than its legend swatch (a few dozen): its line is drawn, in the
    # panel it belongs to and not in the other.
    for colour in (BLUE, ORANGE, GREEN, RED):
        assert _near(left, colour).sum() > 300, colour
        assert _near(right, colour).sum() == 0, colour
    assert _near(right, PURPLE).sum() > 300 and _near(left, PURPLE).sum() == 0
    # The margin (110) lies above KL(real) (about 30): its pixels sit higher in the image (smaller row numbers).
    rows = np.arange(pixels.shape[0])[:, None]
    mean_row = {colour: (rows * _near(left, colour)).sum() / _near(left, colour).sum() for colour in (BLUE, RED)}
    assert mean_row[RED] < mean_row[BLUE] - 100
    # No temporary file is left beside the figure.
    assert [p.name for p in out.parent.iterdir()] == ["dynamics.png"]


def test_long_tailed_panel_switches_to_log_scale_over_two_decades(tmp_path):
    figure = dynamics_figure(_synthetic_records(), KL_AE_PANELS)
    kl_axes, ae_axes = figure.axes
    assert ae_axes.get_yscale() == "log" and ae_axes.get_ylabel().endswith("(log)")
    assert kl_axes.get_yscale() == "linear"  # declared linear
    assert _legend_labels(kl_axes) == ["KL(real)", "KL(reconstruction)", "KL(sample)", "margin m"]
    assert [line.get_linestyle() for line in kl_axes.lines] == ["-", "-", "-", "--"]
    # On the log axis the decay from 1e4 to 10 is a straight diagonal: its pixels spread over the panel's height
    # instead of hugging the bottom as they would on a linear axis.
    out = tmp_path / "fig.png"
    plot_dynamics(_synthetic_records(), out, panels=KL_AE_PANELS)
    purple_rows = np.nonzero(_near(_pixels(out)[:, 500:], PURPLE))[0]
    assert np.percentile(purple_rows, 90) - np.percentile(purple_rows, 10) > 150
    # One decade only: stays linear.
    flat = [{"step": i, "ae": 100.0 + i} for i in range(50)]
    ae_axes = dynamics_figure(flat, KL_AE_PANELS).axes[1]
    assert ae_axes.get_yscale() == "linear" and ae_axes.get_ylabel() == "L_AE"


def test_given_panels_are_drawn_exactly_and_absent_series_left_out():
    panels = (Panel("losses", "loss", (Series("loss_a", "A"), Series("missing", "never logged"))),
              Panel("b alone", "b", (Series("b", "B"),), log_scale=True))
    records = [{"step": s, "loss_a": 1.0 / (s + 1), "b": 10.0 ** s, "c": 5.0} for s in range(5)]
    figure = dynamics_figure(records, panels, title="t")
    assert [axes.get_title() for axes in figure.axes] == ["losses", "b alone"]
    assert _legend_labels(figure.axes[0]) == ["A"]  # the absent series is neither drawn nor named
    assert len(figure.axes[0].lines) == 1
    assert figure.axes[1].get_yscale() == "log"  # declared logarithmic
    # A declared log axis with a value <= 0 falls back to linear instead of failing.
    records[0]["b"] = 0.0
    assert dynamics_figure(records, panels).axes[1].get_yscale() == "linear"


def test_without_panels_a_log_of_unknown_keys_gets_one_panel_per_key_group(tmp_path):
    records = [{"step": s, "foo_a": s, "foo_b": 2 * s, "bar": 1.0, "time": 0.1 * s, "note": "text"} for s in range(8)]
    records.append({"step": 8, "event": "rollback", "to_step": 4, "lr_scale": 0.5})  # an event: not a series
    panels = panels_from_log(records)
    assert [panel.title for panel in panels] == ["foo", "bar"]
    assert [[series.key for series in panel.series] for panel in panels] == [["foo_a", "foo_b"], ["bar"]]
    figure = dynamics_figure(records)
    assert [axes.get_title() for axes in figure.axes] == ["foo", "bar"]
    assert _legend_labels(figure.axes[0]) == ["foo_a", "foo_b"]
    # An objective that declares no panels (the default `dynamics = ()`) gets the same panels, not an empty figure.
    assert [axes.get_title() for axes in dynamics_figure(records, panels=()).axes] == ["foo", "bar"]
    # More panels than fit a row wrap onto a second row of the figure.
    wide = [{"step": s, **{f"k{i}": float(s + i) for i in range(5)}} for s in range(3)]
    out = tmp_path / "wide.png"
    plot_dynamics(wide, out)
    with Image.open(out) as image:
        assert image.size == (1500, 840)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objectives_declared_panels_are_drawn_with_distinct_colours(name):
    panels = OBJECTIVES[name].dynamics
    keys = [series.key for panel in panels for series in panel.series]
    records = [{"step": s, **{key: 1.0 + s + i for i, key in enumerate(keys)}} for s in range(5)]
    figure = dynamics_figure(records, panels)
    assert [axes.get_title() for axes in figure.axes] == [panel.title for panel in panels]
    for axes, panel in zip(figure.axes, panels):
        assert _legend_labels(axes) == [series.label for series in panel.series]
    colours = [line.get_color() for axes in figure.axes for line in axes.lines]
    assert len(colours) == len(keys) == len(set(colours))


@pytest.mark.parametrize(
    "records",
    [
        [],
        [{"step": 5, "kl_real": 3.0, "kl_sample": 4.0, "margin": 10.0, "ae": 7.0}],  # a single record
        [{"step": i, "kl_real": float("nan") if i % 3 else i, "ae": float("inf") if i == 2 else 1.0 + i,
          "margin": None, "kl_sample": "n/a"} for i in range(10)],
        [{"kl_real": 1.0}, {"kl_real": 2.0}, {"other": 1}],  # no step key
        [{"step": 1, "ae": float("nan")}],  # nothing finite at all
    ],
    ids=["empty", "single", "nan-and-junk", "no-step", "all-nan"],
)
def test_plot_dynamics_survives_odd_logs(tmp_path, records):
    out = tmp_path / "fig.png"
    plot_dynamics(records, out, panels=KL_AE_PANELS)
    with Image.open(out) as image:
        assert image.size == (1000, 420)
    plot_dynamics(records, out)  # and without declared panels
    assert _pixels(out)[0, 0].tolist() == [255, 255, 255]


def test_single_record_draws_markers_and_empty_panels_say_no_data(tmp_path):
    out = tmp_path / "one.png"
    plot_dynamics([{"step": 5, "kl_real": 3.0}], out, panels=KL_AE_PANELS)
    pixels = _pixels(out)
    # A filled marker (6 pt) has many more pixels than the legend swatch's line alone.
    assert _near(pixels[:, :500], BLUE).sum() > 60
    # The series missing everywhere are neither drawn nor named in the legend.
    for colour in (ORANGE, GREEN, RED, PURPLE):
        assert _near(pixels, colour).sum() == 0
    figure = dynamics_figure([{"step": 5, "kl_real": 3.0}], KL_AE_PANELS)
    assert _legend_labels(figure.axes[0]) == ["KL(real)"]
    # The empty right panel carries the grey "no data" note, centred, and no legend.
    assert [text.get_text() for text in figure.axes[1].texts] == ["no data"]
    assert figure.axes[1].get_legend() is None
    right = pixels[100:330, 600:900]
    assert _near(right, GREY_TEXT, tolerance=12).sum() > 20


def test_nan_points_are_skipped_not_drawn_as_a_spike():
    records = [{"step": i, "kl_real": float("nan") if i == 5 else 1.0} for i in range(10)]
    line = dynamics_figure(records, KL_AE_PANELS).axes[0].lines[0]
    assert line.get_xdata().tolist() == [i for i in range(10) if i != 5]


def test_step_axis_has_integer_ticks_on_short_runs():
    records = [{"step": s, "kl_real": float(s)} for s in (4, 5, 6)]
    axes = dynamics_figure(records, KL_AE_PANELS).axes[0]
    ticks = [t for t in axes.get_xticks() if 4 <= t <= 6]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_a_resumed_log_with_repeated_steps_plots_in_step_order():
    records = [{"step": s, "kl_real": float(s)} for s in (1, 2, 3, 2, 3, 4)]
    xs = dynamics_figure(records, KL_AE_PANELS).axes[0].lines[0].get_xdata().tolist()
    assert xs == sorted(xs) and len(xs) == 6


# ------------------------------------------------------------------------------------------------ 2-D figures


def test_plot_samples_draws_real_grey_and_generated_blue_where_they_are(tmp_path):
    # Real points in the upper-left quadrant, generated ones in the lower-right one.
    generator = torch.Generator().manual_seed(0)
    real = torch.tensor([-1.0, 1.0]) + 0.1 * torch.randn(2000, 2, generator=generator)
    fake = torch.tensor([1.0, -1.0]) + 0.1 * torch.randn(2000, 2, generator=generator)
    fake[0] = float("nan")  # left out, not an error
    out = tmp_path / "samples.png"
    plot_samples(real, fake, 2.0, out, title="two clusters")
    pixels = _pixels(out)
    height, width = pixels.shape[:2]
    grey = _near(pixels, (150, 150, 150), tolerance=12)
    blue = (pixels[..., 2] - pixels[..., 0] > 60) & (pixels[..., 2] > 150)  # blue, also where semi-transparent
    top_left, bottom_right = (slice(0, height // 2), slice(0, width // 2)), (slice(height // 2, None),
                                                                               slice(width // 2, None))
    assert grey[top_left].sum() > 500 and grey[bottom_right].sum() < 50
    assert blue[bottom_right].sum() > 500
    assert blue[top_left].sum() < blue[bottom_right].sum() / 5  # only the legend's marker up there


def test_plot_density_puts_the_bright_cells_where_the_mass_is(tmp_path):
    bins = 100
    grid = torch.zeros(bins, bins)
    grid[80, 50] = 100.0  # the peak at x = +0.6 * extent, y = 0 (indexed [x, y])
    grid[20, 90] = 1.0  # a faint cell at x = -0.6, y = +0.8: sqrt scaling keeps it visible (0.1 of the peak)
    out = tmp_path / "density.png"
    plot_density(grid, out, title="two cells", extent=2.0)
    pixels = _pixels(out)
    yellow = _near(pixels, (253, 231, 37), tolerance=25)  # viridis at 1
    heat_map = slice(0, int(pixels.shape[1] * 0.84))  # the colour bar is right of it
    rows, cols = np.nonzero(yellow[:, heat_map])
    dark = _near(pixels, (68, 1, 84), tolerance=20)  # viridis at 0: the empty cells
    dark_rows, dark_cols = np.nonzero(dark[:, heat_map])
    left, right = dark_cols.min(), dark_cols.max()
    top, bottom = dark_rows.min(), dark_rows.max()
    # The peak lies at 80 % of the map's width and half its height (large y at the top).
    assert abs((cols.mean() - left) / (right - left) - 0.805) < 0.03
    assert abs((rows.mean() - top) / (bottom - top) - 0.495) < 0.03
    # The faint cell is drawn in the dark-blue part of viridis (sqrt(0.01) = 0.1), not lost in the background.
    faint = pixels[int(top + (bottom - top) * 0.095), int(left + (right - left) * 0.205)]
    assert not _near(faint[None, None], (68, 1, 84), tolerance=10).any()
    assert faint[2] > faint[1]  # still blue-purple, far from the peak's yellow
    empty = tmp_path / "empty.png"
    plot_density(torch.zeros(10, 10), empty)  # no mass at all: a dark map, not a division by zero
    assert _near(_pixels(empty), (68, 1, 84), tolerance=20).sum() > 10000


# ------------------------------------------------------------------------------------------------------- log


def test_read_log_skips_blank_lines_and_a_truncated_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [json.dumps({"step": 1, "kl_real": 3.5}), "", "   ", json.dumps({"step": 2, "ae": 400.0})]
    path.write_text("\n".join(lines) + "\n" + '{"step": 3, "kl_re', encoding="utf-8")
    assert read_log(path) == [{"step": 1, "kl_real": 3.5}, {"step": 2, "ae": 400.0}]


def test_read_log_keeps_a_complete_last_line_without_newline(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}', encoding="utf-8")
    assert read_log(str(path)) == [{"step": 1}, {"step": 2}]


def test_read_log_rejects_garbage_in_the_middle_and_missing_files(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n', encoding="utf-8")
    with pytest.raises(UserError, match="line 2"):
        read_log(path)
    with pytest.raises(UserError, match="no training log"):
        read_log(tmp_path / "missing.jsonl")


def test_read_log_output_plots(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _synthetic_records(40)), encoding="utf-8")
    records = read_log(path)
    assert len(records) == 40
    plot_dynamics(records, tmp_path / "fig.png", panels=KL_AE_PANELS)
    assert _near(_pixels(tmp_path / "fig.png"), BLUE).sum() > 300


# -------------------------------------------------------------------------------------------------- progress


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    """A hand-driven clock, so rates and throttling are tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_plain_stream_prints_few_lines_and_the_final_one():
    stream = io.StringIO()
    progress = Progress(total=2000, stream=stream)
    for step in range(1, 2001):
        progress.update(step, {"KL(real)": 35.123, "L_AE": 412.5})
    progress.close()
    out = stream.getvalue()
    lines = out.splitlines()
    assert len(lines) <= 3  # the first, perhaps one more, the final: not 2000
    assert "\r" not in out
    assert lines[-1].startswith("step 2000/2000 |##########| 100%")
    assert "KL(real) 35.1" in lines[-1] and "L_AE 412" in lines[-1]


def test_progress_plain_stream_prints_again_after_ten_seconds():
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(total=100, stream=stream, min_interval=0.5, clock=clock)
    for step in range(1, 50):
        clock.now += 0.3  # 0.3 s a step: a line at most every 10 s, i.e. every ~34 steps
        progress.update(step, {"m": 110.0})
    assert len(stream.getvalue().splitlines()) == 2
    progress.close()  # the newest state, held back by throttling, is written on close
    assert stream.getvalue().splitlines()[-1].startswith("step 49/100")


def test_progress_rate_counts_only_steps_since_a_resume():
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(total=1000, initial=500, stream=stream, clock=clock)
    clock.now += 10.0
    progress.update(520, {})
    line = stream.getvalue().splitlines()[-1]
    assert "2.00it/s" in line  # 20 steps in 10 s, not 520
    assert "<04:00" in line  # 480 steps left at 2 it/s


def test_progress_slow_runs_show_seconds_per_step():
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(total=10, stream=stream, clock=clock)
    clock.now += 20.0
    progress.update(1, {})
    assert "20.00s/it" in stream.getvalue()


def test_progress_without_a_total_counts_steps():
    stream, clock = io.StringIO(), _Clock()
    with Progress(total=0, stream=stream, clock=clock) as progress:
        clock.now += 4.0
        progress.update(8, {"L_AE": 3.0})
    assert stream.getvalue().splitlines() == ["step 8 [00:04,  2.00it/s, L_AE 3]"]


def test_progress_tty_rewrites_one_line_and_close_ends_it():
    stream, clock = _FakeTTY(), _Clock()
    progress = Progress(total=50, stream=stream, min_interval=0.5, clock=clock)
    for step in range(1, 51):
        clock.now += 0.1
        progress.update(step, {"KL(sample)": 95.3})
    out_before_close = stream.getvalue()
    progress.close()
    out = stream.getvalue()
    assert out.startswith("\r")
    assert "\n" not in out_before_close  # one line, rewritten in place
    assert out.endswith("\n") and out.count("\n") == 1
    draws = out.count("\r")
    assert 2 <= draws <= 14  # throttled to about one draw per 0.5 s over 5 s, plus the first and final ones
    assert "step 50/50" in out.split("\r")[-1] and "KL(sample) 95.3" in out
    progress.close()
    assert stream.getvalue() == out  # closing twice adds nothing


def test_progress_note_prints_its_own_line_and_the_bar_comes_back():
    stream, clock = _FakeTTY(), _Clock()
    progress = Progress(total=10, stream=stream, clock=clock)
    clock.now += 1.0
    progress.update(1, {"m": 35.0})
    progress.note("eval at step 1: FID 12.5")
    clock.now += 0.01  # well inside the throttle interval
    progress.update(2, {"m": 35.0})
    progress.close()
    lines = stream.getvalue().split("\n")
    # The bar is cleared, the note gets a line of its own, and the bar is redrawn below it, ending at step 2.
    assert lines[0].split("\r")[-1] == "eval at step 1: FID 12.5"
    assert "step 2/10" in lines[1].split("\r")[-1]


def test_progress_plain_note_is_a_line_of_its_own():
    stream, clock = io.StringIO(), _Clock()
    with Progress(total=10, stream=stream, clock=clock) as progress:
        progress.update(1, {})
        progress.note("eval at step 1: FID 12.5")
        clock.now += 0.01
        progress.update(2, {})  # a note lets the next update print at once
    lines = stream.getvalue().splitlines()
    assert lines[1] == "eval at step 1: FID 12.5" and lines[2].startswith("step 2/10")


@pytest.mark.parametrize("columns", [0, 40])
def test_progress_on_a_pseudo_terminal_draws_the_bar_within_its_width(columns):
    pty = pytest.importorskip("pty")
    fcntl, termios, struct = pytest.importorskip("fcntl"), pytest.importorskip("termios"), __import__("struct")
    master, slave = pty.openpty()
    # 0 columns: a terminal that reports no size (the bar must still show); 40: a narrow one (the bar must fit).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0 if columns == 0 else 24, columns, 0, 0))
    with open(slave, "w", encoding="utf-8", closefd=True) as terminal:
        clock = _Clock()
        with Progress(total=4, stream=terminal, min_interval=0.0, clock=clock) as progress:
            for step in range(1, 5):
                clock.now += 1.0
                progress.update(step, {"KL(real)": 35.0})
    # With the terminal side closed, the master reads what was written, then fails (EIO) at the end.
    chunks = []
    with open(master, "rb", buffering=0) as reader:
        while True:
            try:
                chunk = reader.read(65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    drawn = [line for line in text.replace("\n", "\r").split("\r") if line.strip()]
    assert drawn and drawn[-1].startswith("step 4/4")
    if columns:
        assert all(len(line) <= columns for line in drawn)
    else:
        assert "KL(real) 35" in drawn[-1]  # the whole line
