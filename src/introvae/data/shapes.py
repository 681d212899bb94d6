"""The generated shapes (hence the name; --data shapes, or builtin): coloured shapes drawn on the fly, so introvae can
train with no download.

Each image has a plain background and one or two shapes (circles, ellipses, squares, rectangles, triangles,
rings, crosses, stars) of random colour, size, position and rotation. Image i depends only on (seed, i),
so a longer set starts with the shorter one and runs are reproducible. As a data source (`SHAPES`, --data
shapes, or --data builtin as runs before the glyphs named it) the set is generated, not read: it is split by position
instead of by scanned names (`introvae.data.generated`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

from introvae.data.base import DataRequest, DataSourceKind, DataSplit
from introvae.data.generated import render_set, require_count, split_by_position

__all__ = ["SHAPE_KINDS", "make_shapes", "shape_kinds", "SHAPES", "SHAPES_SEED"]

# The built-in images are always the same set, whatever --seed says: the seed changes the run (init,
# batch order), not the data, so runs with different seeds stay comparable.
SHAPES_SEED = 1234

SHAPE_KINDS: tuple[str, ...] = ("circle", "ellipse", "square", "rectangle", "triangle", "ring", "cross", "star")

# Shapes are drawn this many times larger than the output and then downscaled with LANCZOS, which gives
# anti-aliased edges. Above 256 px the output pixels are small enough that 2x suffices and saves memory.
_SUPERSAMPLE_SMALL = 4
_SUPERSAMPLE_LARGE = 2

# Minimum contrast between a shape and the background: a distance in RGB and a luma difference. The luma
# condition keeps the shapes visible after conversion to one channel (red and green can share a luma).
_MIN_RGB_DISTANCE = 120.0
_MIN_LUMA_DIFFERENCE = 48.0

# Radius of the shape's bounding circle as a fraction of the image side: diameters of 25-60 %.
_RADIUS_RANGE = (0.125, 0.30)


def _luma(c: tuple[int, int, int]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = rng.integers(0, 256, size=3).tolist()
    return (r, g, b)


def _contrasting_colour(rng: np.random.Generator, bg: tuple[int, int, int]) -> tuple[int, int, int]:
    """A random colour clearly distinguishable from `bg`, in colour and in gray."""
    bg_luma = _luma(bg)
    for _ in range(32):
        c = _random_colour(rng)
        dist = math.sqrt(sum((a - b) ** 2 for a, b in zip(c, bg)))
        if dist >= _MIN_RGB_DISTANCE and abs(_luma(c) - bg_luma) >= _MIN_LUMA_DIFFERENCE:
            return c
    # Rejection sampling almost always succeeds; this fallback keeps the loop bounded.
    return (0, 0, 0) if bg_luma >= 128 else (255, 255, 255)


def _place(points: np.ndarray, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    """Rotate local (k, 2) vertices by `angle` around the origin and move them to (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    x = points[:, 0] * c - points[:, 1] * s + cx
    y = points[:, 0] * s + points[:, 1] * c + cy
    return list(zip(x.tolist(), y.tolist()))


def _draw_shape(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, kind: str, side: int, fill: tuple[int, int, int]
) -> None:
    """Draw one shape of `kind` on a canvas of `side` pixels, entirely inside it."""
    r = rng.uniform(*_RADIUS_RANGE) * side
    # Every shape lies within a circle of radius r around its centre, so this keeps it inside the canvas.
    cx, cy = rng.uniform(r, side - r, size=2).tolist()
    angle = rng.uniform(0.0, 2.0 * math.pi)
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "ring":
        width = max(1, round(r * rng.uniform(0.25, 0.45)))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=width)
    elif kind == "ellipse":
        # A polygon, because ImageDraw.ellipse cannot rotate.
        t = np.linspace(0.0, 2.0 * math.pi, 64, endpoint=False)
        pts = np.stack([r * np.cos(t), r * rng.uniform(0.4, 0.75) * np.sin(t)], axis=1)
        draw.polygon(_place(pts, angle, cx, cy), fill=fill)
    elif kind in ("square", "rectangle"):
        # Half-diagonal r at angle phi from the long axis: phi = 45 degrees is a square.
        phi = math.pi / 4 if kind == "square" else rng.uniform(0.3, 0.6)
        hx, hy = r * math.cos(phi), r * math.sin(phi)
        pts = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
        draw.polygon(_place(pts, angle, cx, cy), fill=fill)
    elif kind == "triangle":
        t = np.arange(3) * (2.0 * math.pi / 3) + rng.uniform(-0.35, 0.35, size=3)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
        draw.polygon(_place(pts, angle, cx, cy), fill=fill)
    elif kind == "cross":
        half_width = r * rng.uniform(0.18, 0.32)
        arm = np.array([[-r, -half_width], [r, -half_width], [r, half_width], [-r, half_width]])
        draw.polygon(_place(arm, angle, cx, cy), fill=fill)
        draw.polygon(_place(arm, angle + math.pi / 2, cx, cy), fill=fill)
    elif kind == "star":
        points = int(rng.integers(5, 7))
        radii = np.where(np.arange(2 * points) % 2 == 0, r, r * rng.uniform(0.38, 0.55))
        t = np.arange(2 * points) * (math.pi / points)
        pts = np.stack([radii * np.cos(t), radii * np.sin(t)], axis=1)
        draw.polygon(_place(pts, angle, cx, cy), fill=fill)
    else:  # pragma: no cover - SHAPE_KINDS and this function are kept in step
        raise ValueError(f"unknown shape kind {kind!r}")


def _shape_count(rng: np.random.Generator, one_shape: bool) -> int:
    """How many shapes the next image has: one or two, or always one (drawing nothing from `rng`) for the one-shape
    set. `_render` and `shape_kinds` both call it, so they stay in step."""
    return 1 if one_shape else int(rng.integers(1, 3))


def _render(seed: int, index: int, size: int, one_shape: bool = False) -> Image.Image:
    """The RGB image number `index` of the set with `seed`, at `size` x `size` (of the one-shape set if `one_shape`)."""
    rng = np.random.default_rng([seed, index])
    ss = _SUPERSAMPLE_SMALL if size <= 256 else _SUPERSAMPLE_LARGE
    side = size * ss
    bg = _random_colour(rng)
    canvas = Image.new("RGB", (side, side), bg)
    draw = ImageDraw.Draw(canvas)
    for _ in range(_shape_count(rng, one_shape)):
        kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
        _draw_shape(draw, rng, kind, side, _contrasting_colour(rng, bg))
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def make_shapes(num_images: int, size: int, channels: int = 3, seed: int = 0, one_shape: bool = False) -> torch.Tensor:
    """Draw `num_images` shape images: uint8 (N, channels, size, size); image i depends only on (seed, i).

    `one_shape=True` draws a different set, exactly one shape per image with the same distributions of kind, size,
    position, rotation and colours: labelled by `shape_kinds(..., one_shape=True)`, it trains shape classifiers
    (benchmarks/shapes.py).
    """
    return render_set(num_images, size, channels, lambda index: _render(seed, index, size, one_shape))


class _NoDrawing:
    """Stands in for ImageDraw where only the random draws of a shape matter (see `shape_kinds`)."""

    def ellipse(self, *args, **kwargs) -> None:
        pass

    def polygon(self, *args, **kwargs) -> None:
        pass


def shape_kinds(num_images: int, seed: int = 0, one_shape: bool = False) -> list[tuple[str, ...]]:
    """The kinds of the shapes on images 0 .. num_images-1 of `make_shapes(..., seed=seed, one_shape=one_shape)`, in
    drawing order.

    It replays each image's random draws (background, kinds, colours and each shape's own draws) without drawing,
    so it stays in step with `_render` and does not depend on the size or the channels.
    """
    kinds = []
    for index in range(num_images):
        rng = np.random.default_rng([seed, index])
        background = _random_colour(rng)
        image_kinds = []
        for _ in range(_shape_count(rng, one_shape)):
            kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
            _draw_shape(_NoDrawing(), rng, kind, 64, _contrasting_colour(rng, background))  # type: ignore[arg-type]
            image_kinds.append(kind)
        kinds.append(tuple(image_kinds))
    return kinds


def open_shapes(request: DataRequest) -> DataSplit:
    """The built-in set of `request.builtin_count` images; the last `test_fraction` of them are held out."""
    count = require_count(request, "built-in data set")
    images = make_shapes(count, request.size, request.channels or 3, seed=SHAPES_SEED)
    # "shapes" and "builtin" name the same images, under the names that runs started as "builtin" recorded.
    return split_by_position(images, "builtin", request, "builtin shapes")


# "builtin" was the only generated set's name; runs whose config.json says so keep opening the shapes.
SHAPES = DataSourceKind("builtin", "the built-in shapes (shapes or builtin)",
                        matches=lambda spec: spec in ("shapes", "builtin"), open=open_shapes, generated=True)
