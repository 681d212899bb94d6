"""Training-dynamics figure (after Fig. 5 of the IntroVAE paper), drawn with Pillow, and the JSONL log reader.

The left panel shows the KL terms of real, reconstructed and sampled images against the margin m, which is
how one sees the adversarial game settle; the right panel shows the reconstruction loss L_AE. Pillow is used
instead of matplotlib to keep the dependencies to torch, numpy, Pillow and safetensors.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from introvae.atomic import atomic_write_bytes
from introvae.errors import UserError

__all__ = ["plot_dynamics", "read_log"]

# Figure geometry, in pixels.
_WIDTH, _HEIGHT = 1000, 420
_TITLE_BAND = 30  # extra room at the top when the figure has a title
_LINE_WIDTH = 2

# Series colours come from matplotlib's familiar "tab10" palette, so the figure reads like the usual plots.
_BLACK = (0, 0, 0)
_GREY = (110, 110, 110)
_GRID = (228, 228, 228)
_WHITE = (255, 255, 255)

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class _SeriesDef:
    """Which log key to draw, under what legend label, in what colour and style."""

    key: str
    label: str
    colour: Colour
    dashed: bool = False


# Left panel: the KL terms against the margin (dashed, since it is a target rather than a measurement).
_KL_SERIES = (
    _SeriesDef("kl_real", "KL(real)", (31, 119, 180)),
    _SeriesDef("kl_rec", "KL(reconstruction)", (255, 127, 14)),
    _SeriesDef("kl_sample", "KL(sample)", (44, 160, 44)),
    _SeriesDef("margin", "margin m", (214, 39, 40), dashed=True),
)
# Right panel: the reconstruction loss.
_AE_SERIES = (_SeriesDef("ae", "L_AE", (148, 103, 189)),)


@dataclass
class _Series:
    """One series ready to draw: its definition and its finite (step, value) points, sorted by step."""

    spec: _SeriesDef
    points: list[tuple[float, float]]


@dataclass
class _PanelSpec:
    """What one panel shows: its title, y label, whether the y axis is logarithmic, and the series with data."""

    title: str
    ylabel: str
    ylog: bool
    series: list[_Series] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------- log file


def read_log(path: str | Path) -> list[dict]:
    """Read a JSONL training log (one JSON object per line) and return its records in file order.

    Blank lines are skipped, and so is an unparsable *last* line: that is what a run killed mid-write leaves.
    An unparsable line anywhere else means the file is not a training log, and raises UserError.
    """
    path = Path(path)
    try:
        # errors="replace": a write cut inside a multi-byte character must not make the whole file unreadable.
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UserError(f"no training log at {path}: check the path (it is written as training runs)") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    records: list[dict] = []
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            if index == len(lines) - 1:
                break  # truncated final line of an interrupted run
            raise UserError(f"{path}, line {number}: not a JSON object; is this a JSONL training log?")
        records.append(record)
    return records


# ------------------------------------------------------------------------------------------------ scale helpers


def _finite(value: Any) -> float | None:
    """The value as a float if it is a finite number, else None (bools and strings are not data points)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _nice_step(raw: float) -> float:
    """The smallest step of the form 1, 2 or 5 x 10^k that is at least `raw` (> 0)."""
    exponent = math.floor(math.log10(raw))
    for mantissa in (1, 2, 5, 10):
        step = mantissa * 10.0**exponent
        # The tolerance keeps a raw step of exactly 2e-k (give or take rounding) from jumping to 5e-k.
        if step >= raw * (1 - 1e-9):
            return step
    return 10.0 ** (exponent + 1)  # pragma: no cover - the loop always returns


def _nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """About `n` evenly spaced ticks, multiples of 1, 2 or 5 x 10^k, the first <= lo and the last >= hi.

    The axis is then drawn from the first to the last tick, so every data point falls inside it.
    `integer` keeps the step at least 1 (for the step axis, where 12.5 makes no sense).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if lo > hi:
        lo, hi = hi, lo
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1.0):
        # A single value: open a small window around it so that it sits mid-axis.
        pad = abs(lo) * 0.1 if lo != 0 else 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step((hi - lo) / max(n - 1, 1))
    if integer:
        step = max(step, 1.0)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    # Round to the step's decimal places so that labels read 0.3 rather than 0.30000000000000004.
    decimals = max(0, -math.floor(math.log10(step))) + 1
    return [round(k * step, decimals) for k in range(first, last + 1)]


def _log_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Powers of ten from the one at or below `lo` to the one at or above `hi` (both > 0), about `n` of them."""
    first = math.floor(math.log10(lo) + 1e-9)
    last = math.ceil(math.log10(hi) - 1e-9)
    if last == first:
        last += 1
    stride = max(1, math.ceil((last - first) / max(n - 1, 1)))
    last = first + stride * math.ceil((last - first) / stride)  # end on a labelled tick
    return [10.0**k for k in range(first, last + 1, stride)]


def _wants_log(values: list[float]) -> bool:
    """True when positive values span more than two decades, where a linear axis would flatten the tail."""
    if not values or min(values) <= 0:
        return False
    return max(values) / min(values) > 100.0


def _fmt_tick(value: float) -> str:
    """A short tick label: 0.05, 40, 1.5k, 2M, 1e-5; short labels keep neighbours from overlapping."""
    if value == 0:
        return "0"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.4g}{suffix}"
    text = f"{value:.4g}"
    if "e" in text:  # 1e-05 -> 1e-5
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


# ------------------------------------------------------------------------------------------------------ fonts


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at `size` px where Pillow can scale it (>= 10.1), else its fixed bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # older Pillow, or Pillow without FreeType
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: Any) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _draw_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font: Any,
               anchor: str = "la", fill: Colour = _BLACK) -> None:
    """Text placed by an anchor (l/m/r horizontally, a/m/d vertically) that also works with the bitmap font.

    Pillow's own `anchor=` argument is refused by the bitmap font of old Pillows, so the offset is done here.
    """
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left, bottom - top
    x, y = xy
    x -= {"l": 0, "m": width / 2, "r": width}[anchor[0]]
    y -= {"a": 0, "m": height / 2, "d": height}[anchor[1]]
    draw.text((x - left, y - top), text, font=font, fill=fill)


def _draw_vertical_text(image: Image.Image, centre: tuple[float, float], text: str, font: Any,
                        fill: Colour = _BLACK) -> None:
    """Text turned 90 degrees (reading bottom to top) centred on `centre`: the y-axis label."""
    probe = ImageDraw.Draw(image)
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    mask = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(mask).text((1 - left, 1 - top), text, font=font, fill=255)
    mask = mask.rotate(90, expand=True)
    x = round(centre[0] - mask.width / 2)
    y = round(centre[1] - mask.height / 2)
    image.paste(Image.new("RGB", mask.size, fill), (x, y), mask)


# ------------------------------------------------------------------------------------------------------ panels


class _Panel:
    """Maps data coordinates to pixels inside the plot rectangle `box` = (left, top, right, bottom)."""

    def __init__(self, box: tuple[int, int, int, int], xticks: list[float], yticks: list[float], ylog: bool):
        self.box = box
        self.xticks, self.yticks, self.ylog = xticks, yticks, ylog
        self.x0, self.x1 = xticks[0], xticks[-1]
        self.y0, self.y1 = self._ty(yticks[0]), self._ty(yticks[-1])

    def _ty(self, y: float) -> float:
        return math.log10(y) if self.ylog else y

    def px(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = self.box
        fx = (x - self.x0) / (self.x1 - self.x0)
        fy = (self._ty(y) - self.y0) / (self.y1 - self.y0)
        return left + fx * (right - left), bottom - fy * (bottom - top)


def _panel_specs(records: list[dict]) -> list[_PanelSpec]:
    """Pick the data and the axis style of both panels from the log records."""

    def collect(series_defs: tuple[_SeriesDef, ...]) -> list[_Series]:
        out = []
        for spec in series_defs:
            points = []
            for index, record in enumerate(records):
                if not isinstance(record, dict):
                    continue
                # A record without a step still has a place: its position in the log.
                x = _finite(record.get("step", index))
                y = _finite(record.get(spec.key))
                if x is not None and y is not None:
                    points.append((x, y))
            if points:
                points.sort(key=lambda point: point[0])  # stable: repeated steps of a resumed run keep log order
                out.append(_Series(spec, points))
        return out

    kl = _PanelSpec("KL divergence vs margin", "KL / margin", ylog=False, series=collect(_KL_SERIES))
    ae_series = collect(_AE_SERIES)
    ylog = _wants_log([y for series in ae_series for _, y in series.points])
    ae = _PanelSpec("L_AE (reconstruction)", "L_AE (log)" if ylog else "L_AE", ylog=ylog, series=ae_series)
    return [kl, ae]


def _dashed_line(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], colour: Colour,
                 dash: float = 9.0, gap: float = 6.0) -> None:
    """A dashed polyline; Pillow has none. The dash pattern runs on across vertices so the rhythm stays even."""
    on, left_in_phase = True, dash
    for (ax, ay), (bx, by) in zip(points, points[1:]):
        length = math.hypot(bx - ax, by - ay)
        done = 0.0
        while done < length:
            piece = min(left_in_phase, length - done)
            if on:
                t0, t1 = done / length, (done + piece) / length
                draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                          fill=colour, width=_LINE_WIDTH)
            done += piece
            left_in_phase -= piece
            if left_in_phase <= 1e-9:
                on = not on
                left_in_phase = dash if on else gap


def _dedupe(pixels: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Drop points that land on the pixel of the one before: long logs would otherwise redraw each pixel often."""
    out: list[tuple[float, float]] = []
    last = None
    for x, y in pixels:
        key = (round(x), round(y))
        if key != last:
            out.append((x, y))
            last = key
    return out


# Legend layout: line swatch length, inner padding, gap between rows, distance from the plot frame.
_SWATCH, _PAD, _ROW_GAP, _INSET = 22, 6, 4, 8


def _legend_size(draw: ImageDraw.ImageDraw, entries: list[_Series], font: Any) -> tuple[int, int, int]:
    """Width, height and row height of the legend box for `entries`."""
    widths, heights = zip(*(_text_size(draw, entry.spec.label, font) for entry in entries))
    row = max(max(heights), 10)
    width = 2 * _PAD + _SWATCH + 6 + max(widths)
    height = 2 * _PAD + len(entries) * row + (len(entries) - 1) * _ROW_GAP
    return width, height, row


def _legend_place(panel: _Panel, size: tuple[int, int], drawn: list[list[tuple[float, float]]]
                  ) -> tuple[tuple[int, int, int, int], int]:
    """The legend box in the plot corner covering the fewest data points, and how many it covers.

    The top right wins ties, then the top left: readers look for a legend at the top.
    """
    width, height = size
    left, top, right, bottom = panel.box
    corners = [
        (right - _INSET - width, top + _INSET),
        (left + _INSET, top + _INSET),
        (right - _INSET - width, bottom - _INSET - height),
        (left + _INSET, bottom - _INSET - height),
    ]
    # Sample along every segment, so that a line crossing the box between two data points counts too.
    samples: list[tuple[float, float]] = []
    for pixels in drawn:
        samples.extend(pixels)
        for (ax, ay), (bx, by) in zip(pixels, pixels[1:]):
            steps = int(max(abs(bx - ax), abs(by - ay)) // 3)
            samples.extend((ax + (bx - ax) * k / (steps + 1), ay + (by - ay) * k / (steps + 1))
                           for k in range(1, steps + 1))

    def covered(corner: tuple[float, float]) -> int:
        cx, cy = corner
        return sum(1 for x, y in samples if cx - 4 <= x <= cx + width + 4 and cy - 4 <= y <= cy + height + 4)

    scored = [(covered(corner), index, corner) for index, corner in enumerate(corners)]
    count, _, (cx, cy) = min(scored)
    return (int(cx), int(cy), int(cx) + width, int(cy) + height), count


def _draw_legend(draw: ImageDraw.ImageDraw, rect: tuple[int, int, int, int], entries: list[_Series],
                 font: Any, row: int) -> None:
    draw.rectangle(rect, fill=_WHITE, outline=(160, 160, 160))
    x, y = rect[0] + _PAD, rect[1] + _PAD
    for entry in entries:
        mid = y + row / 2
        if entry.spec.dashed:
            _dashed_line(draw, [(x, mid), (x + _SWATCH, mid)], entry.spec.colour, dash=7, gap=4)
        else:
            draw.line([(x, mid), (x + _SWATCH, mid)], fill=entry.spec.colour, width=_LINE_WIDTH)
        _draw_text(draw, (x + _SWATCH + 6, mid), entry.spec.label, font, anchor="lm")
        y += row + _ROW_GAP


def _with_headroom(ticks: list[float], ylog: bool) -> list[float]:
    """The ticks plus one more step on top: free room for the legend when every corner holds data."""
    if ylog:
        return ticks + [ticks[-1] * (ticks[-1] / ticks[-2])]
    step = ticks[-1] - ticks[-2]
    decimals = max(0, -math.floor(math.log10(step))) + 1
    return ticks + [round(ticks[-1] + step, decimals)]


def _draw_panel(image: Image.Image, area: tuple[int, int, int, int], spec: _PanelSpec, fonts: dict) -> None:
    """Draw one panel (title, grid, axes, ticks, labels, series, legend) inside `area` of the image."""
    draw = ImageDraw.Draw(image)
    a_left, a_top, a_right, a_bottom = area
    xs = [x for series in spec.series for x, _ in series.points]
    ys = [y for series in spec.series for _, y in series.points]
    xticks = _nice_ticks(min(xs), max(xs), integer=True) if xs else _nice_ticks(0, 1000, integer=True)
    if ys:
        yticks = _log_ticks(min(ys), max(ys)) if spec.ylog else _nice_ticks(min(ys), max(ys))
    else:
        yticks = _nice_ticks(0, 1)
    # Up to two extra steps on top of the y axis, tried below when the legend finds no free corner.
    ytick_options = [yticks]
    for _ in range(2):
        ytick_options.append(_with_headroom(ytick_options[-1], spec.ylog))

    title_h = _text_size(draw, "Ag", fonts["title"])[1]
    tick_h = _text_size(draw, "0", fonts["tick"])[1]
    # The widest y label decides the left margin, so that long ones (-0.0025, 1e-5) do not hit the y title.
    tick_w = max(_text_size(draw, _fmt_tick(t), fonts["tick"])[0] for t in ytick_options[-1] + [1.5e3])
    label_h = _text_size(draw, "Ag", fonts["label"])[1]
    # Plot rectangle: room on the left for the y tick labels and the turned y title, below for the x ones.
    box = (
        a_left + 14 + label_h + tick_w + 8,
        a_top + title_h + 18,
        a_right - 22,
        a_bottom - (tick_h + label_h + 22),
    )
    left, top, right, bottom = box
    _draw_text(draw, ((left + right) / 2, a_top + 6), spec.title, fonts["title"], anchor="ma")

    # Place the legend where it hides no data; if every corner holds data, raise the top of the y axis by a
    # step or two to make room above the lines (the margin line near the top is the usual culprit).
    legend = _legend_size(draw, spec.series, fonts["legend"]) if spec.series else None
    panel = _Panel(box, xticks, yticks, spec.ylog)
    rect = None
    if legend is not None:
        best_count = None
        for option in ytick_options:
            candidate = _Panel(box, xticks, option, spec.ylog)
            drawn = [_dedupe([candidate.px(x, y) for x, y in series.points]) for series in spec.series]
            where, count = _legend_place(candidate, legend[:2], drawn)
            if best_count is None or count < best_count:
                panel, rect, best_count = candidate, where, count
            if count == 0:
                break
    drawn = [_dedupe([panel.px(x, y) for x, y in series.points]) for series in spec.series]
    yticks = panel.yticks

    # Grid and tick labels.
    for xt in xticks:
        x, _ = panel.px(xt, yticks[0])
        draw.line([(x, top), (x, bottom)], fill=_GRID, width=1)
        draw.line([(x, bottom), (x, bottom + 4)], fill=_BLACK, width=1)
        # Keep the outermost labels inside the panel instead of letting them run off the image.
        w = _text_size(draw, _fmt_tick(xt), fonts["tick"])[0]
        lx = min(max(x, a_left + w / 2 + 2), a_right - w / 2 - 2)
        _draw_text(draw, (lx, bottom + 7), _fmt_tick(xt), fonts["tick"], anchor="ma")
    for yt in yticks:
        _, y = panel.px(xticks[0], yt)
        draw.line([(left, y), (right, y)], fill=_GRID, width=1)
        draw.line([(left - 4, y), (left, y)], fill=_BLACK, width=1)
        _draw_text(draw, (left - 7, y), _fmt_tick(yt), fonts["tick"], anchor="rm")
    _draw_text(draw, ((left + right) / 2, a_bottom - 6), "step", fonts["label"], anchor="md")
    _draw_vertical_text(image, (a_left + 8 + label_h / 2, (top + bottom) / 2), spec.ylabel, fonts["label"])

    # Series: solid or dashed polylines, a marker where a series has a single point.
    for series, pixels in zip(spec.series, drawn):
        colour = series.spec.colour
        if len(pixels) == 1:
            (x, y), r = pixels[0], 4
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        elif series.spec.dashed:
            _dashed_line(draw, pixels, colour)
        else:
            draw.line(pixels, fill=colour, width=_LINE_WIDTH, joint="curve")
    draw.rectangle(box, outline=_BLACK, width=1)

    if legend is not None and rect is not None:
        _draw_legend(draw, rect, spec.series, fonts["legend"], legend[2])
    else:
        # A white patch behind the note keeps the grid lines from striking through it.
        w, h = _text_size(draw, "no data", fonts["label"])
        cx, cy = (left + right) / 2, (top + bottom) / 2
        draw.rectangle([cx - w / 2 - 6, cy - h / 2 - 4, cx + w / 2 + 6, cy + h / 2 + 4], fill=_WHITE)
        _draw_text(draw, (cx, cy), "no data", fonts["label"], anchor="mm", fill=_GREY)


def plot_dynamics(records: list[dict], path: str | Path, title: str = "") -> None:
    """Draw the training-dynamics figure of a training log as a PNG at `path` (about 1000 x 420 px).

    Left panel: KL(real), KL(reconstruction), KL(sample) and the margin m (dashed) against the step.
    Right panel: the reconstruction loss L_AE against the step, on a log axis when it spans > 2 decades.
    Missing keys and non-finite values are skipped; a panel without data says "no data". The file is
    written atomically (temporary file, then rename), creating parent directories as needed.
    """
    fonts = {"title": _font(15), "label": _font(13), "tick": _font(12), "legend": _font(12)}
    image = Image.new("RGB", (_WIDTH, _HEIGHT), _WHITE)
    top = 0
    if title:
        _draw_text(ImageDraw.Draw(image), (_WIDTH / 2, 8), title, _font(16), anchor="ma")
        top = _TITLE_BAND
    half = _WIDTH // 2
    for index, spec in enumerate(_panel_specs(list(records or []))):
        _draw_panel(image, (index * half, top, (index + 1) * half, _HEIGHT), spec, fonts)

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    # Atomic, so a reader (a page refreshing the figure during training) never sees half an image.
    atomic_write_bytes(path, buffer.getvalue())
