"""The image convention of introvae, and the few functions that convert, tile, save and load images.

Images inside introvae are float32 tensors in [0, 1], shape (N, C, H, W), C in {1, 3}; on disk and in caches
they are uint8.

Every other module relies on this convention, so conversions between the two representations go through
`to_float` and `to_uint8` here rather than being re-implemented ad hoc.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from introvae.atomic import atomic_write_bytes
from introvae.errors import DataError, UserError

__all__ = ["as_float", "to_float", "to_uint8", "make_grid", "save_image", "load_image", "load_image_raw",
           "prepare_image", "fit_image"]


def to_float(u8: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1], on the same device."""
    return u8.to(torch.float32).div_(255.0)


def as_float(images: torch.Tensor) -> torch.Tensor:
    """Images as float in [0, 1]: uint8 images converted (`to_float`), float images returned as they are."""
    return to_float(images) if images.dtype == torch.uint8 else images


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images (nominally [0, 1]) -> uint8; values outside [0, 1] are clamped, then rounded."""
    return x.detach().clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)


def make_grid(x: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile a batch (N, C, H, W) into one image (C, H', W'), row-major with `nrow` images per row.

    A single image (C, H, W) is accepted and treated as a batch of one. Empty cells of the last row and the
    gaps between images are filled with `pad_value`.
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"make_grid expects a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if nrow < 1 or padding < 0:
        raise ValueError(f"make_grid needs nrow >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    n, c, h, w = x.shape
    if n == 0:
        raise ValueError("make_grid got an empty batch")
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    x = x.to(torch.float32)
    if nrows * ncol > n:
        # Fill the incomplete last row with blank cells so the batch can be reshaped into a full grid.
        blank = x.new_full((nrows * ncol - n, c, h, w), pad_value)
        x = torch.cat([x, blank], dim=0)
    # Pad each cell on the right and bottom; one more strip on the left and top closes the border.
    x = F.pad(x, (0, padding, 0, padding), value=pad_value)
    hp, wp = h + padding, w + padding
    grid = x.reshape(nrows, ncol, c, hp, wp).permute(2, 0, 3, 1, 4).reshape(c, nrows * hp, ncol * wp)
    return F.pad(grid, (padding, 0, padding, 0), value=pad_value)


def save_image(x: torch.Tensor, path: str | Path, nrow: int = 8) -> None:
    """Save a float image (C, H, W) or a batch (N, C, H, W) as a grid; the format follows the suffix.

    The file is written to a temporary name in the same folder and then renamed, so a reader (or a crash)
    never sees a half-written image.
    """
    path = Path(path)
    if x.dim() == 4:
        x = make_grid(x, nrow=nrow)
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"save_image expects (C, H, W) or (N, C, H, W) with C in {{1, 3}}, got {tuple(x.shape)}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"Cannot save image {path} because its suffix is not an image format; use .png or .jpg.")
    arr = to_uint8(x).cpu().numpy()
    hwc = arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0))
    img = Image.fromarray(hwc)  # (H, W) uint8 becomes mode "L", (H, W, 3) becomes "RGB"
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    atomic_write_bytes(path, buffer.getvalue())


# Modes that hold a single gray channel at more than 8 bits; Pillow cannot convert them to "L" without clipping.
_WIDE_GRAY_MODES = ("I", "F")


def _wide_gray_to_l(img: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer or float gray images to 8 bits (Pillow's own convert("L") clips)."""
    arr = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16"):
        scaled = arr / 257.0
    elif img.mode == "F":
        lo, hi = float(arr.min()), float(arr.max())
        # Floats already in [0, 1] are taken at face value; anything else is stretched to the full range.
        scaled = arr * 255.0 if lo >= 0.0 and hi <= 1.0 else (arr - lo) * (255.0 / max(hi - lo, 1e-12))
    else:  # "I": 32-bit signed, in practice a 16-bit PNG/TIFF opened by an older Pillow.
        lo, hi = float(arr.min()), float(arr.max())
        scaled = arr / 257.0 if lo >= 0.0 and hi <= 65535.0 else (arr - lo) * (255.0 / max(hi - lo, 1e-12))
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to "L" (channels == 1) or "RGB", compositing transparency onto white."""
    mode = img.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        # Transparent pixels carry arbitrary colour values underneath; white is what viewers usually show.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    elif mode.startswith("I;16") or mode in _WIDE_GRAY_MODES:
        img = _wide_gray_to_l(img)
    elif mode not in ("L", "RGB"):
        # Palette, CMYK, YCbCr, bilevel "1", ...: Pillow converts these to RGB correctly.
        img = img.convert("RGB")
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def prepare_image(img: Image.Image, size: int) -> Image.Image:
    """Decode an opened image's pixels (a JPEG at a reduced scale still >= `size`) and apply its EXIF rotation.

    Raises Pillow's own exceptions (OSError for truncated data, ...); `load_image` turns them into DataError.
    """
    if img.format == "JPEG":
        # Let libjpeg decode at a reduced scale (still >= size on both sides): large photos load far faster.
        img.draft(None, (size, size))
    img.load()
    return ImageOps.exif_transpose(img)


def fit_image(img: Image.Image, size: int, channels: int) -> torch.Tensor:
    """A decoded image as uint8 (C, size, size): converted to gray or RGB, shorter side resized to `size`
    (LANCZOS down, BICUBIC up), then centre-cropped. Every data source goes through this one function."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    img = _to_mode(img, channels)
    w, h = img.size
    scale = size / min(w, h)
    if scale != 1.0:
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        resample = Image.Resampling.LANCZOS if scale < 1.0 else Image.Resampling.BICUBIC
        img = img.resize((new_w, new_h), resample=resample)
        w, h = new_w, new_h
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))

    arr = np.array(img, dtype=np.uint8)  # a writable copy, so torch.from_numpy does not warn
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def load_image_raw(source: str | Path | bytes | BinaryIO, size: int, channels: int) -> torch.Tensor:
    """`load_image` without the DataError wrapping: for callers that sort failures by their Pillow exception."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    with Image.open(source) as img:
        return fit_image(prepare_image(img, size), size, channels)


def load_image(path: str | Path | bytes | BinaryIO, size: int, channels: int, name: str | None = None) -> torch.Tensor:
    """Decode an image (a file, or its encoded bytes) to uint8 (C, size, size): shorter side resized to `size`,
    then centre-cropped.

    EXIF orientation is applied, transparency is composited onto white, and 16-bit gray is scaled (not
    clipped) to 8 bits. Raises DataError naming the file (or `name`) if it cannot be decoded.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    try:
        return load_image_raw(path, size, channels)
    except Exception as e:  # Pillow raises many types for broken files (OSError, ValueError, SyntaxError, ...).
        what = name if name is not None else path
        raise DataError(f"Cannot decode image {what} ({type(e).__name__}: {e}); remove or replace the file.") from e
