"""What the generated data sets (the built-in shapes, the glyphs) share: drawing image i in threads, and a split by
position instead of by hashed names.

A generated set is a function of the image's index alone, so it needs no scan: `render_set` draws indices
0 .. count-1 with any number of threads and gets the same tensor, and `split_by_position` holds out the last
`test_fraction` of them, so a longer set keeps the shorter one's training images in front.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
from PIL import Image

from introvae.data.base import DataRequest, DataSplit, TensorSource, channel_words
from introvae.errors import DataError

__all__ = ["render_set", "split_by_position"]

# Upper bound on the threads render_set uses (it also never uses more than the machine's cores).
_MAX_THREADS = 8


def render_set(num_images: int, size: int, channels: int, render: Callable[[int], Image.Image],
               start: int = 0) -> torch.Tensor:
    """Images start .. start+num_images-1 drawn by `render(index)` (a PIL image of `size` x `size`, RGB or L), as
    uint8 (N, channels, size, size); RGB images become gray by their luma, gray ones are repeated for 3 channels."""
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    out = np.empty((num_images, size, size, channels), dtype=np.uint8)
    mode = "L" if channels == 1 else "RGB"

    def fill(first: int, stop: int) -> None:
        for k in range(first, stop):
            image = render(start + k)
            out[k] = np.asarray(image if image.mode == mode else image.convert(mode)).reshape(size, size, channels)

    # The LANCZOS downscale dominates the cost and releases the GIL, so threads use all cores. Each image
    # depends only on its index, so the split into chunks cannot change the result.
    workers = min(_MAX_THREADS, os.cpu_count() or 1, max(1, num_images // 64))
    if workers <= 1:
        fill(0, num_images)
    else:
        bounds = np.linspace(0, num_images, 4 * workers + 1).astype(int).tolist()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(fill, a, b) for a, b in zip(bounds[:-1], bounds[1:])]:
                future.result()
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def split_by_position(images: torch.Tensor, prefix: str, request: DataRequest, title: str) -> DataSplit:
    """The generated `images` named PREFIX/000123, the last `request.test_fraction` of them held out; `title` begins
    the description ("builtin shapes")."""
    count, size, channels = images.shape[0], images.shape[2], images.shape[1]
    names = [f"{prefix}/{i:06d}" for i in range(count)]
    n_test = min(round(request.test_fraction * count), count - 1)  # training always keeps at least one image
    n_train = count - n_test
    train = TensorSource(images[:n_train], names[:n_train])
    test = TensorSource(images[n_train:], names[n_train:]) if n_test > 0 else None
    description = (f"{title}: {count} images ({n_train} train, {n_test} test), {channel_words(channels)}, "
                   f"{size}x{size}")
    return DataSplit(train, test, channels, size, description, source=prefix)


def require_count(request: DataRequest, what: str) -> int:
    """`request.builtin_count`, refused in one sentence below the 2 images a train/test split needs."""
    if request.builtin_count < 2:
        raise DataError(f"The {what} needs at least 2 images, got a count of {request.builtin_count}; raise "
                        f"--builtin-count.")
    return request.builtin_count
