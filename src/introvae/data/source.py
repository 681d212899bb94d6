"""`open_data`, which turns a --data spec into a verified train/test split, over the registry of data sources.

--data specs, tried in the order of `DATA_SOURCES`: "shapes" (or "builtin"); "glyphs", "glyphs:letters" or
"glyphs:all"; "lmdb:PATH" or a folder holding data.mdb
(LSUN's format); a .npz or .npy file of uint8 images (NHWC or NCHW); any other path is a folder of images.

Each kind (see `introvae.data.base.DataSourceKind`) lists its items; this module's one shared path verifies them
once (`introvae.data.scan`), splits them by hashing their names, and describes the result in one line. Small data
sets are decoded into memory by that same scan, so training does not pay for JPEG decoding every epoch; data sets
too large for `cache_limit_bytes` stay lazy and are decoded on the fly.

A new kind of data set is one module with its `DataSourceKind` and one line in `DATA_SOURCES`.
"""

from __future__ import annotations

from introvae.data.arrays import ARRAYS
from introvae.data.base import (
    DataRequest,
    DataSourceKind,
    DataSplit,
    ImageSource,
    Items,
    check_data_options,
    describe,
    split_scanned,
)
from introvae.data.folder_source import FOLDER
from introvae.data.glyphs import GLYPHS
from introvae.data.lmdb_source import LMDB
from introvae.data.scan import ScanReport, ScanResult, verify_items
from introvae.data.shapes import SHAPES
from introvae.errors import DataError

__all__ = [
    "DATA_SOURCES",
    "data_source_for",
    "open_data",
    "check_data",
    "split_items",
]

# Tried in this order; the folder comes last because it claims every spec.
DATA_SOURCES: tuple[DataSourceKind, ...] = (SHAPES, GLYPHS, LMDB, ARRAYS, FOLDER)


def _alternatives(kinds: tuple[DataSourceKind, ...]) -> str:
    words = [kind.what for kind in kinds]
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else "".join(words)


def data_source_for(spec: str) -> DataSourceKind:
    """The first kind of data set in `DATA_SOURCES` that claims `spec` (the folder kind claims any path)."""
    kind = next((kind for kind in DATA_SOURCES if kind.matches(spec)), None)
    if kind is None:
        raise DataError(f"--data {spec} is none of the data sets introvae reads; pass {_alternatives(DATA_SOURCES)}.")
    return kind


def _scan(items: Items, request: DataRequest) -> ScanResult:
    """Verify every item once (decoding them into memory when they fit), unless the kind checks its own."""
    if items.scan is not None:
        return items.scan()
    if items.fetch is None:
        raise TypeError(f"the items of {items.title} need either a fetch function or a scan of their own")
    report = ScanReport(items.title, request.size, kind=items.kind, ignored=list(items.ignored))
    cached = request.fits_in_memory(len(items.names), request.channels)
    result = verify_items(items.names, items.fetch, request.size, request.channels, cached, report)
    for name in items.unreachable:  # e.g. subfolders the walk could not list: one unreadable item each
        report.add_skip("unreadable", name)
        report.examined += 1
    return result


def split_items(items: Items, request: DataRequest) -> DataSplit:
    """The shared path of every data set that is read: scan its items, split them, describe the split."""
    result = _scan(items, request)
    channels = result.channels

    def lazy(chosen: list[int]) -> ImageSource:
        return items.serve(chosen, channels)

    train, test = split_scanned(result, items.names, lazy, request.test_fraction, request.seed, items.where)
    description = describe(items.title, train, test, channels, request.size, result.report)
    return DataSplit(train, test, channels, request.size, description, source=items.source, report=result.report)


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

    `spec` is "shapes" (or "builtin"), "glyphs" (or "glyphs:letters", "glyphs:all"), a folder of images,
    "lmdb:PATH" or a folder holding data.mdb, or a .npz/.npy file of uint8 images. Every image is verified once (see
    `introvae.data.scan`); what cannot be used is skipped and reported in `DataSplit.report` (summarised in the
    description). `channels` None means 3 for the shapes, 1 for the glyphs and "detect from the images" otherwise.
    `seed` chooses the split of the other sources; the generated images and their split do not depend on it.
    """
    check_data_options(size, channels, test_fraction)
    request = DataRequest(spec, size, channels, test_fraction, seed, builtin_count, cache_limit_bytes)
    opened = data_source_for(spec).open(request)
    return opened if isinstance(opened, DataSplit) else split_items(opened, request)


def check_data(spec: str, size: int, channels: int | None = None) -> ScanReport:
    """Scan a data set as `open_data` would (without caching it) and return the report.

    Raises DataError (one sentence) when the data set cannot be opened or has fewer than 2 usable images.
    """
    kind = data_source_for(spec)
    if kind.generated:
        readable = tuple(k for k in DATA_SOURCES if not k.generated)
        raise DataError(f"{kind.what[0].upper() + kind.what[1:]} is generated, not read, so there is nothing to "
                        f"check; pass {_alternatives(readable)}.")
    split = open_data(spec, size, channels, test_fraction=0.0, cache_limit_bytes=0)
    assert split.report is not None
    return split.report
