"""Tests of the training-dynamics figure, the JSONL log reader and the training progress line."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from introvae import plot
from introvae.errors import UserError
from introvae.plot import _nice_ticks, plot_dynamics, read_log
from introvae.progress import Progress


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


def _colour_count(image: Image.Image, colour: tuple[int, int, int]) -> int:
    pixels = np.asarray(image.convert("RGB"))
    return int(np.all(pixels == np.array(colour, dtype=np.uint8), axis=-1).sum())


# --------------------------------------------------------------------------------------------------- figure


def test_plot_dynamics_draws_every_series(tmp_path):
    out = tmp_path / "nested" / "dir" / "dynamics.png"
    plot_dynamics(_synthetic_records(), out, title="synthetic run")

    image = Image.open(out)
    assert image.format == "PNG"
    assert image.size == (1000, 420)
    pixels = np.asarray(image.convert("RGB"))
    assert pixels[0, 0].tolist() == [255, 255, 255]  # white background
    assert (pixels.min(axis=-1) < 128).mean() > 0.01  # dark ink: axes, ticks and text were drawn

    # Each series' colour covers far more pixels than its legend swatch (about 50): its line is drawn.
    for spec in plot._KL_SERIES + plot._AE_SERIES:
        assert _colour_count(image, spec.colour) > 300, spec.label
    colours = [spec.colour for spec in plot._KL_SERIES + plot._AE_SERIES]
    assert len(set(colours)) == len(colours)
    # No temporary file is left beside the figure.
    assert [p.name for p in out.parent.iterdir()] == ["dynamics.png"]


def test_ae_panel_switches_to_log_scale_over_two_decades():
    kl_panel, ae_panel = plot._panel_specs(_synthetic_records())
    assert ae_panel.ylog and ae_panel.ylabel.endswith("(log)")
    assert not kl_panel.ylog
    assert [s.spec.key for s in kl_panel.series] == ["kl_real", "kl_rec", "kl_sample", "margin"]
    # One decade only: stays linear.
    flat = [{"step": i, "ae": 100.0 + i} for i in range(50)]
    assert not plot._panel_specs(flat)[1].ylog
    assert plot._panel_specs(flat)[1].ylabel == "L_AE"
    assert plot._wants_log([10.0, 1e4]) and not plot._wants_log([0.0, 1e4])


def test_log_ticks_are_powers_of_ten_covering_the_range():
    ticks = plot._log_ticks(9.3, 1.2e4)
    assert ticks[0] <= 9.3 and ticks[-1] >= 1.2e4
    assert all(math.log10(t) == round(math.log10(t)) for t in ticks)


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
    plot_dynamics(records, out)
    assert Image.open(out).size == (1000, 420)


def test_single_record_draws_markers_and_empty_panels_say_no_data(tmp_path):
    out = tmp_path / "one.png"
    plot_dynamics([{"step": 5, "kl_real": 3.0}], out)
    image = Image.open(out)
    # A filled marker of radius 4 has many more pixels than the 2-pixel-wide legend swatch alone.
    assert _colour_count(image, plot._KL_SERIES[0].colour) > 60
    # The series missing everywhere are neither drawn nor named in the legend.
    for spec in plot._KL_SERIES[1:] + plot._AE_SERIES:
        assert _colour_count(image, spec.colour) == 0
    # The empty right panel carries the grey "no data" note.
    right = np.asarray(image.convert("RGB"))[:, 500:]
    assert np.all(right == np.array(plot._GREY, dtype=np.uint8), axis=-1).any()


def test_nan_points_are_skipped_not_drawn_as_a_spike():
    records = [{"step": i, "kl_real": float("nan") if i == 5 else 1.0} for i in range(10)]
    kl_panel = plot._panel_specs(records)[0]
    assert [x for x, _ in kl_panel.series[0].points] == [i for i in range(10) if i != 5]


@pytest.mark.parametrize(
    "lo, hi", [(0, 1), (0.013, 0.92), (23.4, 110.0), (-5, 5), (0, 299), (3.0, 3.0), (1e5, 2.5e5), (-0.003, -0.001)]
)
def test_nice_ticks_are_round_and_cover_the_range(lo, hi):
    ticks = _nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi
    assert 3 <= len(ticks) <= 7
    step = ticks[1] - ticks[0]
    exponent = math.floor(math.log10(step))
    assert round(step / 10**exponent, 6) in (1, 2, 5)
    for tick in ticks:
        assert abs(tick / step - round(tick / step)) < 1e-6  # every tick a multiple of the step
    diffs = np.diff(ticks)
    assert np.allclose(diffs, step)


def test_nice_ticks_integer_steps_for_the_step_axis():
    assert _nice_ticks(4, 6, integer=True) == [4, 5, 6]
    assert all(float(t).is_integer() for t in _nice_ticks(5, 5, integer=True))


def test_tick_labels_are_short():
    assert plot._fmt_tick(0) == "0"
    assert plot._fmt_tick(0.3) == "0.3"
    assert plot._fmt_tick(1500) == "1.5k"
    assert plot._fmt_tick(2e6) == "2M"
    assert plot._fmt_tick(1e-5) == "1e-5"


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
    plot_dynamics(records, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0


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
    assert lines[-1].startswith("step 2000/2000 [##########] 100%")
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
    assert "2 it/s" in line  # 20 steps in 10 s, not 520
    assert "ETA 4m00s" in line  # 480 steps left at 2 it/s


def test_progress_slow_runs_show_seconds_per_step():
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(total=10, stream=stream, clock=clock)
    clock.now += 20.0
    progress.update(1, {})
    assert "20 s/it" in stream.getvalue()


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
    assert 2 <= draws <= 12  # throttled to about one draw per 0.5 s over 5 s, plus the final one
    assert "step 50/50" in out.split("\r")[-1] and "KL(sample) 95.3" in out
    progress.close()
    assert stream.getvalue() == out  # closing twice adds nothing


def test_progress_tty_pads_over_a_longer_previous_line():
    stream, clock = _FakeTTY(), _Clock()
    progress = Progress(total=10, stream=stream, clock=clock)
    clock.now += 1
    progress.update(1, {"a_long_field_name": 1.0})
    clock.now += 1
    progress.update(2, {})
    first, second = stream.getvalue().split("\r")[1:]
    assert len(second) >= len(first)


def test_progress_note_prints_its_own_line_and_the_bar_comes_back():
    stream, clock = _FakeTTY(), _Clock()
    progress = Progress(total=10, stream=stream, clock=clock)
    progress.update(1, {"m": 35.0})
    progress.note("eval at step 1: FID 12.5")
    clock.now += 0.01  # well inside the throttle interval: the bar is still redrawn after a note
    progress.update(2, {"m": 35.0})
    progress.close()
    lines = stream.getvalue().split("\n")
    assert lines[0].rstrip().endswith("eval at step 1: FID 12.5")
    assert lines[0].startswith("\r") and "step 1/10" not in lines[0].split("\r")[-1]
    assert "step 2/10" in lines[1]
