"""Image sets to compare, read whole into memory: a folder of images or a .npz/.npy array, as `introvae evaluate
--samples/--reference` and the latent tools take them. Unlike `open_data` nothing is split or verified item by item:
the set is what the user points at, and an unreadable file is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from introvae.data.arrays import load_array
from introvae.data.folder_files import detect_channels, list_image_files
from introvae.errors import DataError
from introvae.images import load_image, to_float, to_uint8

__all__ = ["load_image_set"]


def load_image_set(path: str | Path, size: int | None = None, channels: int | None = None) -> Tensor:
    """uint8 (N, C, S, S) images from a folder (recursively), a .npz (key 'images' or the only array) or a .npy.

    Arrays may be NHWC (as `introvae sample` writes) or NCHW. Folder images are resized and centre-cropped to
    `size` (default: the shorter side of the first file); a top-level grid.png (written by `introvae sample`
    beside the samples) is not an image of the set and is left out.
    """
    path = Path(path)
    if path.suffix in (".npz", ".npy"):
        return _load_array(path, size, channels)
    files = [f for f in list_image_files(path) if f.relative_to(path).as_posix() != "grid.png"]
    if not files:
        raise DataError(f"{path} holds no images besides grid.png; pass the folder of individual images.")
    if size is None:
        try:
            with Image.open(files[0]) as first:
                size = min(first.size)
        except OSError:
            raise DataError(f"{files[0]} cannot be read as an image; remove it or fix it.") from None
    if channels is None:
        channels = detect_channels(files)
    return torch.stack([load_image(f, size, channels) for f in files])


def _load_array(path: Path, size: int | None, channels: int | None) -> Tensor:
    array, channels_first = load_array(path)  # the data package's reader: no pickles, 'images' or the only array
    images = torch.from_numpy(np.array(array))  # a writable copy: a .npy comes memory-mapped read-only
    if not channels_first:
        images = images.permute(0, 3, 1, 2).contiguous()
    if images.shape[1] not in (1, 3) or images.shape[2] != images.shape[3]:
        raise DataError(f"{path} must hold square images with 1 or 3 channels, got shape {tuple(array.shape)}.")
    if size is not None and images.shape[-1] != size:
        images = to_uint8(torch.nn.functional.interpolate(to_float(images), size=(size, size), mode="area"
                                                          if images.shape[-1] > size else "bilinear"))
    if channels == 1 and images.shape[1] == 3:  # to gray as PIL's convert("L") does for files (ITU-R 601-2 luma)
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    elif channels == 3 and images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1).contiguous()
    return images
