"""What every data source is made of: the image sources the trainer reads batches from, the split they form, and
the pieces a kind of data set declares to join the registry of `introvae.data.source`.

A source hands out uint8 batches (B, C, size, size) by index: in memory (`TensorSource`) or decoded on every
request (a `DecodingSource`: image files, LMDB records, array rows). A kind of data set (`DataSourceKind`) is a
matcher (is this --data spec mine?) and an opener. The opener either lists the data set's items (`Items`: their
names, a function that fetches their bytes, and a lazy source over any subset), which the shared path scans,
splits and describes, or, for a generated set, makes the split itself.
"""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator, Protocol, Sequence, runtime_checkable

import torch

from introvae.data.folder_files import split_names
from introvae.data.scan import ScanReport, ScanResult, require_usable, take_rows_in_place
from introvae.errors import DataError

__all__ = [
    "ImageSource",
    "TensorSource",
    "DecodingSource",
    "cache_in_memory",
    "DataSplit",
    "DataRequest",
    "Items",
    "DataSourceKind",
    "split_scanned",
    "describe",
    "channel_words",
    "check_data_options",
    "MIN_IMAGE_SIZE",
    "MAX_IMAGE_SIZE",
]

# Training resolutions: powers of two in this range (the networks halve the image down to 4x4).
MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 1024

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


def evenly_spaced(source: ImageSource, count: int, chunk: int = 0) -> torch.Tensor | Iterator[torch.Tensor]:
    """Up to `count` images of `source` at evenly spaced indices, uint8: the same choice on every call, so that what is
    fitted to them (the run's code density, the OOD reference) is fitted again to the same images. With `chunk` > 0
    an iterator over them `chunk` at a time instead, which holds one chunk in memory (8192 images of 256 px are 1.6
    GB)."""
    chosen = torch.linspace(0, len(source) - 1, min(count, len(source))).round().long().unique().tolist()
    if chunk <= 0:
        return source.get(chosen)
    return (source.get(chosen[i:i + chunk]) for i in range(0, len(chosen), chunk))


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


def channel_words(channels: int) -> str:
    return "1 channel (gray)" if channels == 1 else f"{channels} channels"


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
        f"{what}: {n_train + n_test} images ({n_train} train, {n_test} test), {channel_words(channels)}, "
        f"{size}x{size}, {'cached in memory' if cached else 'decoded on the fly'}"
    )
    if report is not None and report.notable():
        text += "; " + report.summary()
    return text




def check_data_options(size: int, channels: int | None, test_fraction: float) -> None:
    """The one check of the data options, used by `open_data` and by the config's data section.

    `channels` None means "detect from the images" (the command line's 0). Raises DataError naming the option.
    """
    if (isinstance(size, bool) or not isinstance(size, int) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE
            or size & (size - 1)):
        raise DataError(f"--image-size {size} is not supported: use a power of two from {MIN_IMAGE_SIZE} to "
                        f"{MAX_IMAGE_SIZE}.")
    if channels is not None and channels not in (1, 3):
        raise DataError(f"--channels {channels} is not supported: use 1 (gray) or 3 (colour), or leave it out to "
                        "detect it from the images.")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"--test-fraction must be in [0, 1), got {test_fraction}; use e.g. 0.1.")


# Per index, a function that opens the item's bytes; the scan calls these in its worker threads.
Fetch = Callable[[list[int]], list[Callable[[], BinaryIO]]]


@dataclass(frozen=True)
class DataRequest:
    """What `open_data` was asked for: the --data spec and the options every kind of data set receives."""

    spec: str
    size: int
    channels: int | None  # None: detect from the images
    test_fraction: float
    seed: int
    builtin_count: int
    cache_limit_bytes: int

    def fits_in_memory(self, count: int, channels: int | None) -> bool:
        """Whether `count` images at the training size fit the cache; unknown channels count as 3, because
        detected channels are decoded as RGB and reduced afterwards."""
        return count * (channels or 3) * self.size * self.size <= self.cache_limit_bytes


@dataclass
class Items:
    """A data set's items as its opener lists them, handed to the shared scan -> split -> describe path."""

    title: str  # names the data set in its description and scan report: "folder /data/faces"
    where: str  # begins sentences about it in error messages: "Data folder /data/faces"
    source: str  # the spec as resolved, kept in the run's split record: a path, or "lmdb:PATH"
    names: list[str]  # one per item; the train/test split hashes them
    serve: Callable[[list[int], int], ImageSource]  # (item indices, channels) -> those items decoded on demand
    fetch: Fetch | None = None  # the items' bytes, for the scan that decodes every item once
    kind: str = "file"  # what an item is called in reports: "file", "record", "array image"
    ignored: list[str] = field(default_factory=list)  # passed over for their extension (folders)
    unreachable: list[str] = field(default_factory=list)  # listed as unreadable after the scan (unlistable folders)
    # Instead of `fetch`: a check of its own, for items whose shape is known without decoding them (arrays).
    scan: Callable[[], ScanResult] | None = None


@dataclass(frozen=True)
class DataSourceKind:
    """One kind of data set that --data accepts: a matcher and an opener.

    The opener returns the data set's `Items` (the usual case) or, for a generated set that is not read from
    anywhere, its finished `DataSplit`.
    """

    name: str
    what: str  # the kind in words, for messages: "a folder of images", "an LMDB database"
    matches: Callable[[str], bool]  # does this --data spec name a data set of this kind?
    open: Callable[[DataRequest], "Items | DataSplit"]
    generated: bool = False  # made, not read: `check_data` has nothing to scan
