"""Where the trainer reads image batches from, and `open_data`, which turns a --data spec into a split.

A source hands out uint8 batches (B, C, size, size) by index: in memory (`TensorSource`) or decoded from
files on every request (`FolderSource`). Small folders are decoded once into memory so that training does
not pay for JPEG decoding every epoch; folders too large for `cache_limit_bytes` stay lazy.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import torch

from introvae.data.builtin import make_shapes
from introvae.data.folder import detect_channels, scan_folder, split_files
from introvae.errors import DataError
from introvae.images import load_image

__all__ = [
    "ImageSource",
    "TensorSource",
    "FolderSource",
    "cache_in_memory",
    "DataSplit",
    "open_data",
    "BUILTIN_SEED",
]

# The built-in images are always the same set, whatever --seed says: the seed changes the run (init,
# batch order), not the data, so runs with different seeds stay comparable.
BUILTIN_SEED = 1234

# Images decoded per step when filling the in-memory cache; bounds the memory of pending decodes.
_CACHE_CHUNK = 256


@runtime_checkable
class ImageSource(Protocol):
    """A fixed list of images, fetched in batches of uint8 (B, C, size, size)."""

    channels: int
    size: int
    names: list[str]  # one per image: relative path for folders, "builtin/000123" for built-in

    def __len__(self) -> int: ...

    def get(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The images at `indices`, in that order, as uint8 (B, C, size, size)."""
        ...


def _index_list(indices: Sequence[int] | torch.Tensor) -> list[int]:
    if isinstance(indices, torch.Tensor):
        return [int(i) for i in indices.reshape(-1).tolist()]
    return [int(i) for i in indices]


class TensorSource:
    """Images held in memory as one uint8 tensor (N, C, size, size)."""

    def __init__(self, images_u8: torch.Tensor, names: list[str]) -> None:
        if images_u8.dtype != torch.uint8 or images_u8.dim() != 4 or images_u8.shape[2] != images_u8.shape[3]:
            raise ValueError(
                f"TensorSource needs uint8 (N, C, S, S) images, got {images_u8.dtype} {tuple(images_u8.shape)}"
            )
        if len(names) != images_u8.shape[0]:
            raise ValueError(f"TensorSource got {images_u8.shape[0]} images but {len(names)} names")
        self.images = images_u8
        self.names = list(names)
        self.channels = int(images_u8.shape[1])
        self.size = int(images_u8.shape[2])

    def __len__(self) -> int:
        return self.images.shape[0]

    def get(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        return self.images[idx]


class FolderSource:
    """Image files decoded (and resized, cropped) on every `get`, by a pool of threads."""

    def __init__(self, files: list[Path], root: Path, size: int, channels: int, num_threads: int = 4) -> None:
        self.files = [Path(f) for f in files]
        self.root = Path(root)
        self.size = size
        self.channels = channels
        self.num_threads = max(1, num_threads)
        self.names = [f.relative_to(self.root).as_posix() for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def _decode_into(self, out: torch.Tensor, indices: list[int], pool: ThreadPoolExecutor | None) -> None:
        def decode(k: int) -> None:
            out[k] = load_image(self.files[indices[k]], self.size, self.channels)

        if pool is None or len(indices) <= 1:
            for k in range(len(indices)):
                decode(k)
        else:
            # Pillow releases the GIL while decoding and resizing, so threads decode in parallel.
            for _ in pool.map(decode, range(len(indices))):
                pass

    def get(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        idx = _index_list(indices)
        for i in idx:
            if not -len(self.files) <= i < len(self.files):
                raise IndexError(f"index {i} is out of range for {len(self.files)} images")
        out = torch.empty((len(idx), self.channels, self.size, self.size), dtype=torch.uint8)
        if self.num_threads == 1 or len(idx) <= 1:
            self._decode_into(out, idx, None)
        else:
            # A pool per batch: cheap next to decoding a batch, and the source holds no threads between
            # calls (so it can be pickled or forked freely).
            with ThreadPoolExecutor(max_workers=min(self.num_threads, len(idx))) as pool:
                self._decode_into(out, idx, pool)
        return out


def cache_in_memory(source: ImageSource, num_threads: int = 4) -> TensorSource:
    """Decode every image of `source` once into a single uint8 tensor."""
    if isinstance(source, TensorSource):
        return source
    n = len(source)
    out = torch.empty((n, source.channels, source.size, source.size), dtype=torch.uint8)
    if isinstance(source, FolderSource):
        # One pool for the whole pass instead of one per chunk.
        with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
            for start in range(0, n, _CACHE_CHUNK):
                stop = min(n, start + _CACHE_CHUNK)
                source._decode_into(out[start:stop], list(range(start, stop)), pool)
    else:
        for start in range(0, n, _CACHE_CHUNK):
            stop = min(n, start + _CACHE_CHUNK)
            out[start:stop] = source.get(list(range(start, stop)))
    return TensorSource(out, list(source.names))


@dataclass
class DataSplit:
    """The train and (optional) test images of a run, with what they are in one line."""

    train: ImageSource
    test: ImageSource | None
    channels: int
    size: int
    description: str
    source: str = ""  # the data spec as resolved: "builtin" or the folder's path

    def split_record(self) -> dict:
        """Which images went to train and test, as a JSON-able dict to keep in the run directory."""
        return {
            "source": self.source,
            "train": list(self.train.names),
            "test": list(self.test.names) if self.test is not None else [],
        }


def _channel_words(channels: int) -> str:
    return "1 channel (gray)" if channels == 1 else f"{channels} channels"


def _check_options(size: int, channels: int | None, test_fraction: float) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size > 1024 or size & (size - 1):
        raise DataError(f"--image-size must be a power of two from 8 to 1024 (got {size}); use e.g. 64.")
    if channels is not None and channels not in (1, 3):
        raise DataError(f"--channels must be 1 (gray) or 3 (colour), got {channels}.")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"--test-fraction must be at least 0 and below 1, got {test_fraction}; use e.g. 0.1.")


def _open_builtin(size: int, channels: int, test_fraction: float, count: int) -> DataSplit:
    if count < 2:
        raise DataError(f"The built-in data set needs at least 2 images, got a count of {count}.")
    images = make_shapes(count, size, channels, seed=BUILTIN_SEED)
    names = [f"builtin/{i:06d}" for i in range(count)]
    n_test = min(round(test_fraction * count), count - 1)  # training always keeps at least one image
    n_train = count - n_test
    train = TensorSource(images[:n_train], names[:n_train])
    test = TensorSource(images[n_train:], names[n_train:]) if n_test > 0 else None
    description = (
        f"builtin shapes: {count} images ({n_train} train, {n_test} test), {_channel_words(channels)}, {size}x{size}"
    )
    return DataSplit(train, test, channels, size, description, source="builtin")


def _open_folder(
    spec: str, size: int, channels: int | None, test_fraction: float, seed: int, cache_limit_bytes: int
) -> DataSplit:
    root = Path(spec).expanduser()
    files = scan_folder(root)
    if channels is None:
        channels = detect_channels(files)
    train_files, test_files = split_files(files, root, test_fraction, seed)
    train: ImageSource = FolderSource(train_files, root, size, channels)
    test: ImageSource | None = FolderSource(test_files, root, size, channels) if test_files else None
    # The limit applies to everything that would be held in memory, test images included.
    cached = (len(train_files) + len(test_files)) * channels * size * size <= cache_limit_bytes
    if cached:
        train = cache_in_memory(train)
        test = cache_in_memory(test) if test is not None else None
    description = (
        f"folder {root}: {len(files)} images ({len(train_files)} train, {len(test_files)} test), "
        f"{_channel_words(channels)}, {size}x{size}, {'cached in memory' if cached else 'decoded on the fly'}"
    )
    return DataSplit(train, test, channels, size, description, source=str(root))


def open_data(
    spec: str,
    size: int,
    channels: int | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    builtin_count: int = 4096,
    cache_limit_bytes: int = 4 * 2**30,
) -> DataSplit:
    """Open "builtin" or a folder of images as a train/test split at `size` x `size` pixels.

    `channels` None means 3 for the built-in set and "detect from the files" for a folder. `seed` chooses
    the folder split; the built-in images and their split do not depend on it.
    """
    _check_options(size, channels, test_fraction)
    if spec == "builtin":
        return _open_builtin(size, channels or 3, test_fraction, builtin_count)
    return _open_folder(spec, size, channels, test_fraction, seed, cache_limit_bytes)
