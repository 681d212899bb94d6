"""Images stored as one uint8 array in a .npy or .npz file: (N, H, W, C) or (N, C, H, W) with C in {1, 3, 4},
or (N, H, W) gray (--data FILE.npz or FILE.npy).

Each image goes through the same conversion as an image file (`introvae.images.fit_image`: shorter side
resized to the training size, centre crop; an alpha channel composited onto white), so an array gives
exactly the images its PNG files would. Items are named "array/000123" for the train/test split. Files are
loaded with allow_pickle=False always; a .npy is memory-mapped (only the images asked for are read), a .npz
(a zip) is read into memory.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from introvae.data.base import DataRequest, DataSourceKind, DecodingSource, ImageSource, Items, cache_in_memory
from introvae.data.scan import MIN_IMAGE_SIDE, ScanReport, ScanResult, require_usable
from introvae.errors import DataError
from introvae.images import fit_image

__all__ = ["ArraySource", "ARRAYS", "array_items", "is_array_spec", "load_array"]

_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def load_array(path: Path) -> tuple[np.ndarray, bool]:
    """The image array of a .npy/.npz file and whether it is channels-first; DataError if it is not one."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"Data file {path} does not exist; pass an existing .npz or .npy file of images.")
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                if "images" in keys:
                    key = "images"
                elif len(keys) == 1:
                    key = keys[0]
                else:
                    raise DataError(
                        f"{path} holds the arrays {', '.join(keys) or '(none)'}; name the image array 'images' "
                        "or store only that array."
                    )
                array = archive[key]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"Cannot read the array file {path} ({type(e).__name__}: {e}); pass a .npz or .npy file of "
                        "uint8 images saved by numpy without pickling.") from e
    if array.dtype != np.uint8:
        raise DataError(f"The images in {path} are {array.dtype}, not uint8; store uint8 images in [0, 255].")
    if array.ndim == 3:
        return array[..., None], False
    if array.ndim == 4:
        if array.shape[-1] in _PIL_MODES:
            return array, False
        if array.shape[1] in _PIL_MODES:
            return array, True
    raise DataError(
        f"The images in {path} have the shape {tuple(array.shape)}; expected (N, H, W, C) or (N, C, H, W) with C "
        "1, 3 or 4, or (N, H, W)."
    )


class ArraySource(DecodingSource):
    """Images of an array (memory-mapped or in memory) converted to the training size on every `get`."""

    def __init__(self, array: np.ndarray, channels_first: bool, items: list[int], names: list[str], size: int,
                 channels: int, where: str, num_threads: int = 4, path: Path | None = None) -> None:
        super().__init__()
        self.array = array
        self.path = path  # where a memory-mapped array is mapped from again after pickling
        self.channels_first = channels_first
        self.items = list(items)
        self.names = list(names)
        self.size = size
        self.channels = channels
        self.num_threads = max(1, num_threads)
        self.where = where

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        if isinstance(self.array, np.memmap) and self.path is not None:
            state["array"] = None  # pickling a memory map would copy the whole file
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if self.array is None:
            self.array = load_array(self.path)[0]

    def _payloads(self, indices: list[int]) -> list[np.ndarray]:
        images = [self.array[self.items[i]] for i in indices]
        return [np.moveaxis(x, 0, -1) if self.channels_first else x for x in images]

    def _decode(self, payload: np.ndarray, index: int) -> torch.Tensor:
        try:
            hwc = np.asarray(payload)  # reads the image from a memory map
            h, w, c = hwc.shape
            if h == w == self.size and c == self.channels:
                # Already what fit_image would return (no resize, a full crop, no mode change).
                return torch.from_numpy(np.array(hwc.transpose(2, 0, 1), order="C"))  # a writable copy
            img = Image.fromarray(np.ascontiguousarray(hwc[..., 0] if c == 1 else hwc), _PIL_MODES[c])
            return fit_image(img, self.size, self.channels)
        except (OSError, ValueError) as e:
            raise DataError(f"Cannot read image {self.names[index]} of {self.where} ({type(e).__name__}: {e}).") from e


def is_array_spec(spec: str) -> bool:
    """A path ending in .npz or .npy."""
    return Path(spec).suffix.lower() in (".npz", ".npy")


def array_items(request: DataRequest) -> Items:
    """The images of the array file `request.spec`; checked from the array's shape, without decoding each one."""
    started = time.perf_counter()
    path = Path(request.spec).expanduser()
    array, channels_first = load_array(path)
    n = int(array.shape[0])
    width = max(6, len(str(max(n - 1, 0))))
    names = [f"array/{i:0{width}d}" for i in range(n)]
    where = f"Array file {path}"

    def serve(items: list[int], channels: int) -> ImageSource:
        return ArraySource(array, channels_first, items, [names[i] for i in items], request.size, channels, where,
                           path=path)

    def scan() -> ScanResult:
        if channels_first:
            c, h, w = int(array.shape[1]), int(array.shape[2]), int(array.shape[3])
        else:
            h, w, c = int(array.shape[1]), int(array.shape[2]), int(array.shape[3])
        report = ScanReport(f"array {path} ({n} images of {w}x{h}, {c} channels)", request.size, kind="array image")
        report.examined = n
        report.channels = request.channels or (1 if c == 1 else 3)
        report.detected_gray = c == 1
        if min(h, w) < MIN_IMAGE_SIDE:
            report.skipped["too small"] = list(names)
        else:
            report.usable = n
            if min(h, w) < request.size:
                report.upscaled = n
                report.upscaled_examples = names[:64]
        require_usable(report, where)
        images = None
        if request.fits_in_memory(n, report.channels):
            images = cache_in_memory(serve(list(range(n)), report.channels)).images
        report.seconds = time.perf_counter() - started
        return ScanResult(list(range(n)), report, report.channels, images)

    return Items(title=f"array {path}", where=where, source=str(path), names=names, serve=serve, scan=scan,
                 kind="array image")


ARRAYS = DataSourceKind("array", "a .npz/.npy file of images", matches=is_array_spec, open=array_items)
