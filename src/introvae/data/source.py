"""Where the trainer reads image batches from, and `open_data`, which turns a --data spec into a split.

A source hands out uint8 batches (B, C, size, size) by index: in memory (`TensorSource`) or decoded on every
request (`FolderSource` for files, `LMDBSource` for LMDB records, `ArraySource` for .npy/.npz arrays). Every
item is verified once when the data set is opened (`introvae.data.scan`); small data sets are decoded into
memory by that same pass, so training does not pay for JPEG decoding every epoch, and data sets too large
for `cache_limit_bytes` stay lazy.

--data specs: "builtin"; a folder of images; "lmdb:PATH" or a folder holding data.mdb (LSUN's format);
a .npz or .npy file of uint8 images (NHWC or NCHW).
"""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch

from introvae.data.builtin import make_shapes
from introvae.data.folder import list_folder, split_names
from introvae.data.scan import ScanReport, ScanResult, file_fetcher, require_usable, take_rows_in_place, verify_items
from introvae.errors import DataError
from introvae.images import load_image

__all__ = [
    "ImageSource",
    "TensorSource",
    "DecodingSource",
    "FolderSource",
    "cache_in_memory",
    "DataSplit",
    "open_data",
    "check_data",
    "split_scanned",
    "describe",
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


class DecodingSource:
    """Images decoded (and resized, cropped) on every `get`, by a pool of threads.

    Subclasses say how to read items (`_payloads`, in the calling thread) and decode one (`_decode`, in a worker;
    raises DataError). An item that passed the scan but fails now (a file changed on disk) does not stop
    training: the next index that decodes takes its place, deterministically, with one warning per item.
    """

    channels: int
    size: int
    names: list[str]
    num_threads: int
    where: str = "the data set"

    def __init__(self) -> None:
        self._bad: set[int] = set()  # indices that failed after the scan; substituted from then on
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _payloads(self, indices: list[int]) -> list[Any]:
        raise NotImplementedError

    def _decode(self, payload: Any, index: int) -> torch.Tensor:
        raise NotImplementedError

    def _substitute(self, index: int, error: DataError) -> torch.Tensor:
        """The image of the first index after `index` (cyclically) that still decodes; warns once per failed item."""
        self._mark_bad(index, error)
        n = len(self)
        for step in range(1, n):
            j = (index + step) % n
            with self._lock:
                if j in self._bad:
                    continue
            try:
                return self._decode(self._payloads([j])[0], j)
            except DataError as e:
                self._mark_bad(j, e)
        raise DataError(f"None of the {n} images of {self.where} can be decoded any more ({error}); check the data.")

    def _mark_bad(self, index: int, error: DataError) -> None:
        with self._lock:
            if index in self._bad:
                return
            self._bad.add(index)
        cause = error.__cause__ or error
        warnings.warn(
            f"{self.names[index]} in {self.where} passed the scan but cannot be decoded now "
            f"({type(cause).__name__}: {cause}); the next image that decodes takes its place",
            stacklevel=3,
        )

    def _decode_into(self, out: torch.Tensor, indices: list[int], pool: ThreadPoolExecutor | None) -> None:
        n = len(self)
        indices = [i % n for i in indices]
        with self._lock:
            bad = set(self._bad)
        fresh = [k for k, i in enumerate(indices) if i not in bad]
        payloads = self._payloads([indices[k] for k in fresh])

        def decode(m: int) -> DataError | None:
            k = fresh[m]
            try:
                out[k] = self._decode(payloads[m], indices[k])
            except DataError as e:
                return e
            return None

        if pool is None or len(fresh) <= 1:
            errors = [decode(m) for m in range(len(fresh))]
        else:
            # Pillow releases the GIL while decoding and resizing, so threads decode in parallel.
            errors = list(pool.map(decode, range(len(fresh))))
        failed = {fresh[m]: e for m, e in enumerate(errors) if e is not None}
        for k, i in enumerate(indices):
            if i in bad or k in failed:
                error = failed.get(k) or DataError(f"{self.names[i]} cannot be decoded")
                out[k] = self._substitute(i, error)

    def get(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        idx = _index_list(indices)
        for i in idx:
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} is out of range for {len(self)} images")
        out = torch.empty((len(idx), self.channels, self.size, self.size), dtype=torch.uint8)
        if self.num_threads == 1 or len(idx) <= 1:
            self._decode_into(out, idx, None)
        else:
            # A pool per batch: cheap next to decoding a batch, and the source holds no threads between
            # calls (so it can be pickled or forked freely).
            with ThreadPoolExecutor(max_workers=min(self.num_threads, len(idx))) as pool:
                self._decode_into(out, idx, pool)
        return out


class FolderSource(DecodingSource):
    """Image files decoded (and resized, cropped) on every `get`, by a pool of threads."""

    def __init__(self, files: list[Path], root: Path, size: int, channels: int, num_threads: int = 4) -> None:
        super().__init__()
        self.files = [Path(f) for f in files]
        self.root = Path(root)
        self.size = size
        self.channels = channels
        self.num_threads = max(1, num_threads)
        self.names = [f.relative_to(self.root).as_posix() for f in self.files]
        self.where = f"data folder {self.root}"

    def _payloads(self, indices: list[int]) -> list[Path]:
        return [self.files[i] for i in indices]

    def _decode(self, payload: Path, index: int) -> torch.Tensor:
        return load_image(payload, self.size, self.channels)


def cache_in_memory(source: ImageSource, num_threads: int = 4) -> TensorSource:
    """Decode every image of `source` once into a single uint8 tensor."""
    if isinstance(source, TensorSource):
        return source
    n = len(source)
    out = torch.empty((n, source.channels, source.size, source.size), dtype=torch.uint8)
    if isinstance(source, DecodingSource):
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
    source: str = ""  # the data spec as resolved: "builtin", a folder's path, "lmdb:PATH", or an array file's path
    report: ScanReport | None = None  # what the scan found (None for builtin); description holds its summary

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


def split_scanned(
    result: ScanResult,
    names: Sequence[str],
    make_lazy: Callable[[list[int]], ImageSource],
    test_fraction: float,
    seed: int,
    where: str,
) -> tuple[ImageSource, ImageSource | None]:
    """Train and test sources from a scan: in memory when the scan decoded the images, else `make_lazy(items)`.

    The split hashes the usable items' names, like a folder's relative paths.
    """
    require_usable(result.report, where)
    usable = result.usable
    usable_names = [names[i] for i in usable]
    train_k, test_k = split_names(usable_names, test_fraction, seed, where)
    if result.images is not None:
        # Reorder the scan's tensor in place (train rows, then test rows) instead of copying it.
        block = take_rows_in_place(result.images, [usable[k] for k in train_k + test_k])
        train: ImageSource = TensorSource(block[: len(train_k)], [usable_names[k] for k in train_k])
        test: ImageSource | None = (
            TensorSource(block[len(train_k) :], [usable_names[k] for k in test_k]) if test_k else None
        )
    else:
        train = make_lazy([usable[k] for k in train_k])
        test = make_lazy([usable[k] for k in test_k]) if test_k else None
    return train, test


def describe(what: str, train: ImageSource, test: ImageSource | None, channels: int, size: int,
             report: ScanReport | None) -> str:
    """The one-line description of a split, with the scan's summary when it has something to say."""
    n_train, n_test = len(train), len(test) if test is not None else 0
    cached = isinstance(train, TensorSource)
    text = (
        f"{what}: {n_train + n_test} images ({n_train} train, {n_test} test), {_channel_words(channels)}, "
        f"{size}x{size}, {'cached in memory' if cached else 'decoded on the fly'}"
    )
    if report is not None and report.notable():
        text += "; " + report.summary()
    return text


def _open_folder(
    spec: str, size: int, channels: int | None, test_fraction: float, seed: int, cache_limit_bytes: int
) -> DataSplit:
    root = Path(spec).expanduser()
    listing = list_folder(root)
    files = listing.files
    names = [f.relative_to(root).as_posix() for f in files]
    # Detected channels are decoded as RGB and reduced afterwards, so the estimate assumes 3.
    cached = len(files) * (channels or 3) * size * size <= cache_limit_bytes
    report = ScanReport(f"folder {root}", size, kind="file", ignored=listing.ignored)
    result = verify_items(names, file_fetcher(files), size, channels, cached, report)
    for folder in listing.unreadable:  # subfolders the walk could not list count as one unreadable item each
        report.add_skip("unreadable", folder)
        report.examined += 1
    channels = result.channels

    def lazy(items: list[int]) -> ImageSource:
        return FolderSource([files[i] for i in items], root, size, channels)

    train, test = split_scanned(result, names, lazy, test_fraction, seed, f"Data folder {root}")
    description = describe(f"folder {root}", train, test, channels, size, report)
    return DataSplit(train, test, channels, size, description, source=str(root), report=report)


def open_data(
    spec: str,
    size: int,
    channels: int | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    builtin_count: int = 4096,
    cache_limit_bytes: int = 4 * 2**30,
) -> DataSplit:
    """Open a data set as a train/test split at `size` x `size` pixels.

    `spec` is "builtin", a folder of images, "lmdb:PATH" or a folder holding data.mdb, or a .npz/.npy file of
    uint8 images. Every image is verified once (see `introvae.data.scan`); what cannot be used is skipped and
    reported in `DataSplit.report` (summarised in the description). `channels` None means 3 for the built-in
    set and "detect from the images" otherwise. `seed` chooses the split of the other sources; the built-in
    images and their split do not depend on it.
    """
    _check_options(size, channels, test_fraction)
    if spec == "builtin":
        return _open_builtin(size, channels or 3, test_fraction, builtin_count)
    if spec.startswith("lmdb:"):
        from introvae.data.lmdbsource import open_lmdb

        return open_lmdb(Path(spec[len("lmdb:") :]).expanduser(), size, channels, test_fraction, seed,
                         cache_limit_bytes)
    path = Path(spec).expanduser()
    try:
        is_lmdb = path.is_dir() and (path / "data.mdb").is_file()
    except OSError as e:  # e.g. a folder without read/search permission on the way
        reason = "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__)
        raise DataError(f"Data path {path} cannot be read ({reason}); check its permissions.") from e
    if is_lmdb:
        from introvae.data.lmdbsource import open_lmdb

        return open_lmdb(path, size, channels, test_fraction, seed, cache_limit_bytes)
    if path.suffix.lower() in (".npz", ".npy"):
        from introvae.data.arrays import open_array

        return open_array(path, size, channels, test_fraction, seed, cache_limit_bytes)
    return _open_folder(spec, size, channels, test_fraction, seed, cache_limit_bytes)


def check_data(spec: str, size: int, channels: int | None = None) -> ScanReport:
    """Scan a data set as `open_data` would (without caching it) and return the report.

    Raises DataError (one sentence) when the data set cannot be opened or has fewer than 2 usable images.
    """
    if spec == "builtin":
        raise DataError("The built-in data set is generated, not read, so there is nothing to check; pass a folder, "
                        "an LMDB database or an array file.")
    split = open_data(spec, size, channels, test_fraction=0.0, cache_limit_bytes=0)
    assert split.report is not None
    return split.report
