"""A folder of images as a data source (hence the name; --data DIR): `FolderSource`, which decodes the files on the
fly when they do not fit the in-memory cache, and the registry entry `FOLDER`, which takes every spec no other kind
claims. The scan verifies the files first.

Listing the files, splitting them and telling gray from colour live in `introvae.data.folder_files`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from introvae.data.base import DataRequest, DataSourceKind, DecodingSource, ImageSource, Items
from introvae.data.folder_files import list_folder
from introvae.data.scan import file_fetcher
from introvae.images import load_image

__all__ = ["FolderSource", "FOLDER", "folder_items"]


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


def folder_items(request: DataRequest) -> Items:
    """The image files under the folder `request.spec` (a DataError when there are none)."""
    root = Path(request.spec).expanduser()
    listing = list_folder(root)
    files = listing.files

    def serve(items: list[int], channels: int) -> ImageSource:
        return FolderSource([files[i] for i in items], root, request.size, channels)

    return Items(
        title=f"folder {root}",
        where=f"Data folder {root}",
        source=str(root),
        names=[f.relative_to(root).as_posix() for f in files],
        serve=serve,
        fetch=file_fetcher(files),
        ignored=listing.ignored,
        unreachable=listing.unreadable,
    )


FOLDER = DataSourceKind("folder", "a folder of images", matches=lambda spec: True, open=folder_items)
