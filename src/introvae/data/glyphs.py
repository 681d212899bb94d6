"""The glyph data set: digits (and, on request, capital letters) rendered from the fonts that matplotlib ships, with
random affine distortion and stroke width, white on black; labelled, and drawn, not downloaded.

Why it exists. The built-in shapes carry most of their pixels in colour and their outlines are small, so a five-minute
demo cannot learn them (benchmarks/outlines.py); digits fill the frame with strokes, and anyone can tell at a glance
whether a sample is a digit, a blur or speckle (benchmarks/glyphs.py puts numbers on that).

Each image: one character from the mode's alphabet, in one of 16 fonts (DejaVu Sans, Sans Mono and Serif, and STIX
General, each upright, bold, italic and bold italic), its ink 60-85 % of the frame on its longer side, a stroke of
0-4 px added at 4x supersampling (0-1 px at 32 x 32), sheared within +-0.3 and rotated within +-15 degrees, centred by
its ink's bounding box and then shifted within +-8 % of the frame; drawn at 4x and downscaled with LANCZOS. Image i
depends only on (seed, mode, i): a longer set starts with the shorter one, at any thread count.

As a data source (`GLYPHS`): --data glyphs (the digits 0-9), glyphs:letters (24 capital letters, the outliers of a
model of digits: the same strokes, other classes) or glyphs:all (both, 34 classes). I and O are left out of the letters
because most of these fonts draw them as 1 and 0. The set is gray; --channels 3 repeats the gray. `glyph_labels`
gives each image's character, and `write_glyphs` a folder of PNGs with a labels.csv that `introvae attribute --labels`
reads (or an .npz with the labels beside the images).
"""

from __future__ import annotations

import csv
import math
import threading
from functools import lru_cache
from io import BytesIO, StringIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from introvae.atomic import atomic_write_text
from introvae.data.base import DataRequest, DataSourceKind, DataSplit
from introvae.data.generated import render_set, require_count, split_by_position
from introvae.errors import DataError

__all__ = ["GLYPHS", "GLYPHS_SEED", "GLYPH_MODES", "GLYPH_FONTS", "glyph_classes", "glyph_labels", "make_glyphs",
           "write_glyphs", "glyph_mode"]

# Like the shapes' SHAPES_SEED: the data does not follow --seed, so runs with different seeds see the same images.
GLYPHS_SEED = 4321

DIGITS = "0123456789"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O: most fonts here draw them as 1 and 0
# The modes in the order their number enters each image's random seed; "digits" is what --data glyphs means.
GLYPH_MODES: dict[str, str] = {"digits": DIGITS, "letters": LETTERS, "all": DIGITS + LETTERS}

# matplotlib's fonts that draw every digit and capital letter (each checked to draw them all, distinct and
# non-empty); its other files are symbol, display-subset or TeX-encoded fonts.
GLYPH_FONTS: tuple[str, ...] = tuple(
    f"{family}{style}.ttf"
    for family, styles in (("DejaVuSans", ("", "-Bold", "-Oblique", "-BoldOblique")),
                           ("DejaVuSansMono", ("", "-Bold", "-Oblique", "-BoldOblique")),
                           ("DejaVuSerif", ("", "-Bold", "-Italic", "-BoldItalic")),
                           ("STIXGeneral", ("", "Bol", "Italic", "BolIta")))
    for style in styles
)

# The distortions, as fractions of the frame where they are lengths.
_INK_RANGE = (0.60, 0.85)  # the ink's longer side
_STROKE_MAX = 4  # pixels added around the outline, at 4x supersampling of a 32 px image (scaled with the size)
_ROTATION_DEGREES = 15.0
_SHEAR = 0.3
_SHIFT = 0.08

# Drawn this many times larger than the output, then downscaled with LANCZOS (as the shapes are).
_SUPERSAMPLE_SMALL = 4
_SUPERSAMPLE_LARGE = 2
_STROKE_REFERENCE_SIDE = 128  # the supersampled side at which a stroke unit is one pixel: 32 px at 4x

# The font size at which each glyph's ink is measured once, to pick the font size that gives a wanted ink size.
_MEASURE_PX = 200

_MODE_WORDS = {"digits": "digits", "letters": "capital letters", "all": "digits and capital letters"}

_thread_fonts = threading.local()  # FreeType faces are not shared between threads: each thread opens its own


def glyph_mode(spec: str) -> str:
    """The mode that a --data spec names: "glyphs" -> "digits", "glyphs:letters" -> "letters"; DataError otherwise."""
    mode = spec.partition(":")[2] or "digits"
    if mode not in GLYPH_MODES:
        raise DataError(f"--data {spec} names no glyph set: use glyphs (the digits), glyphs:letters (capital "
                        "letters) or glyphs:all (both).")
    return mode


def _check_mode(mode: str) -> str:
    if mode not in GLYPH_MODES:
        raise ValueError(f"mode must be one of {', '.join(GLYPH_MODES)}, got {mode!r}")
    return mode


def glyph_classes(mode: str = "digits") -> tuple[str, ...]:
    """The characters of `mode`, in class-index order: ("0", ..., "9") for the digits."""
    return tuple(GLYPH_MODES[_check_mode(mode)])


def _rng(seed: int, mode: str, index: int) -> np.random.Generator:
    # The mode enters the seed, so the letters are not the digits' distortions with other characters.
    return np.random.default_rng([seed, list(GLYPH_MODES).index(mode), index])


def _draw_class(rng: np.random.Generator, mode: str) -> str:
    """The image's character: its first random draw, so that `glyph_labels` replays only this."""
    alphabet = GLYPH_MODES[mode]
    return alphabet[int(rng.integers(len(alphabet)))]


def glyph_labels(num_images: int, mode: str = "digits", seed: int = GLYPHS_SEED, start: int = 0) -> list[str]:
    """The characters on images start .. start+num_images-1 of `make_glyphs(..., seed=seed, mode=mode)`; their class
    index is `glyph_classes(mode).index(label)`. Independent of the size and the channels."""
    _check_mode(mode)
    return [_draw_class(_rng(seed, mode, index), mode) for index in range(start, start + num_images)]


@lru_cache(maxsize=None)
def _font_bytes(name: str) -> bytes:
    import matplotlib  # a dependency already (the figures); only its font folder is used here

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"The glyph font {path} cannot be read ({e.strerror or type(e).__name__}); reinstall "
                        "matplotlib, which ships it.") from None


def _font(name: str, px: int) -> ImageFont.FreeTypeFont:
    cache = _thread_fonts.__dict__.setdefault("fonts", {})
    key = (name, px)
    if key not in cache:
        cache[key] = ImageFont.truetype(BytesIO(_font_bytes(name)), px)
    return cache[key]


def _draw_ink(char: str, font: ImageFont.FreeTypeFont, stroke: int) -> Image.Image:
    """`char` white on black, cropped to its ink."""
    left, top, right, bottom = font.getbbox(char, stroke_width=stroke)
    pad = stroke + 2  # getbbox can miss a pixel of anti-aliasing
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), char, font=font, fill=255, stroke_width=stroke,
                                stroke_fill=255)
    return canvas.crop(canvas.getbbox())


@lru_cache(maxsize=None)
def _ink_per_px(name: str, char: str) -> float:
    """The longer side of `char`'s ink in font `name`, per pixel of font size (about 0.7 for a digit)."""
    ink = _draw_ink(char, _font(name, _MEASURE_PX), 0)
    return max(ink.size) / _MEASURE_PX


def _distort(ink: Image.Image, rotation: float, shear: float) -> Image.Image:
    """`ink` sheared (x += shear * y) and then rotated by `rotation` radians, cropped to its ink."""
    c, s = math.cos(rotation), math.sin(rotation)
    forward = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    # The output is the bounding box of the ink box's transformed corners, so no ink is cut and no time is spent on
    # empty canvas (the transform is most of an image's cost).
    corners = forward @ np.array([[0, ink.width, 0, ink.width], [0, 0, ink.height, ink.height]], dtype=float)
    low = np.floor(corners.min(axis=1))
    width, height = (np.ceil(corners.max(axis=1)) - low).astype(int).tolist()
    inverse = np.linalg.inv(forward)  # PIL maps each output pixel back to the input
    offset = inverse @ low
    coefficients = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    # Bilinear is enough at 4x supersampling: the LANCZOS downscale decides the output's edges.
    out = ink.transform((width, height), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR)
    box = out.getbbox()
    return out.crop(box) if box is not None else out


def _render(seed: int, mode: str, index: int, size: int) -> Image.Image:
    """The gray image number `index` of the glyph set with `seed` and `mode`, at `size` x `size`."""
    rng = _rng(seed, mode, index)
    char = _draw_class(rng, mode)
    font_name = GLYPH_FONTS[int(rng.integers(len(GLYPH_FONTS)))]
    ink_fraction = rng.uniform(*_INK_RANGE)
    stroke_units = int(rng.integers(0, _STROKE_MAX + 1))
    rotation = math.radians(rng.uniform(-_ROTATION_DEGREES, _ROTATION_DEGREES))
    shear = rng.uniform(-_SHEAR, _SHEAR)
    shift_x, shift_y = rng.uniform(-_SHIFT, _SHIFT, size=2).tolist()

    side = size * (_SUPERSAMPLE_SMALL if size <= 256 else _SUPERSAMPLE_LARGE)
    stroke = round(stroke_units * side / _STROKE_REFERENCE_SIDE)
    # The font size whose ink, with the stroke around it, has the wanted longer side.
    font_px = max(1, round((ink_fraction * side - 2 * stroke) / _ink_per_px(font_name, char)))
    ink = _distort(_draw_ink(char, _font(font_name, font_px), stroke), rotation, shear)
    frame = Image.new("L", (side, side), 0)
    # Centred by the ink's bounding box, whatever the font's own metrics, then shifted.
    frame.paste(ink, (round((side - ink.width) / 2 + shift_x * side), round((side - ink.height) / 2 + shift_y * side)))
    return frame.resize((size, size), Image.Resampling.LANCZOS)


def make_glyphs(num_images: int, size: int, channels: int = 1, seed: int = GLYPHS_SEED, mode: str = "digits",
                start: int = 0) -> torch.Tensor:
    """Glyph images start .. start+num_images-1: uint8 (N, channels, size, size), white on black; image i depends only
    on (seed, mode, i). The defaults give the images of --data glyphs; `glyph_labels` names their characters."""
    _check_mode(mode)
    return render_set(num_images, size, channels, lambda index: _render(seed, mode, index, size), start=start)


def write_glyphs(out: str | Path, num_images: int, size: int = 32, mode: str = "digits", channels: int = 1,
                 seed: int = GLYPHS_SEED, start: int = 0) -> Path:
    """Write glyph images with their labels, for the tools that read images from files.

    A path ending in .npz gets arrays `images` (N, H, W, C uint8, as `introvae sample` writes) and `labels` (the
    characters); any other path is a folder of 000000.png ... with labels.csv (rows file,label, with a header), which
    `introvae attribute RUN_DIR --labels OUT/labels.csv` reads. Returns the .npz or the CSV's path.
    """
    images = make_glyphs(num_images, size, channels, seed, mode, start).permute(0, 2, 3, 1).numpy()
    labels = glyph_labels(num_images, mode, seed, start)
    out = Path(out)
    if out.suffix.lower() == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, images=images, labels=np.array(labels))
        return out
    out.mkdir(parents=True, exist_ok=True)
    rows = [("file", "label")]
    for k, (image, label) in enumerate(zip(images, labels)):
        name = f"{start + k:06d}.png"
        Image.fromarray(image[:, :, 0] if channels == 1 else image).save(out / name)
        rows.append((name, label))
    text = StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    atomic_write_text(out / "labels.csv", text.getvalue())
    return out / "labels.csv"


def open_glyphs(request: DataRequest) -> DataSplit:
    """The glyph set of `request.builtin_count` images in the spec's mode; the last `test_fraction` are held out."""
    mode = glyph_mode(request.spec)
    count = require_count(request, "glyph data set")
    images = make_glyphs(count, request.size, request.channels or 1, mode=mode)
    prefix = "glyphs" if mode == "digits" else f"glyphs:{mode}"
    return split_by_position(images, prefix, request, f"glyphs ({_MODE_WORDS[mode]})")


GLYPHS = DataSourceKind("glyphs", "the built-in glyphs (glyphs, glyphs:letters or glyphs:all)",
                        matches=lambda spec: spec == "glyphs" or spec.startswith("glyphs:"), open=open_glyphs,
                        generated=True)
