"""The files of a folder of images (hence the name): listing the image files under it, splitting names into train and
test, and deciding whether images are gray or colour. The data source over them is `introvae.data.folder_source`.

The split hashes each file's relative path (each item's name, for other sources), so it is reproducible
across machines and adding files to a folder never moves an existing file from train to test or back.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from introvae.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderListing",
    "list_folder",
    "list_image_files",
    "split_names",
    "split_files",
    "is_gray_image",
    "detect_channels",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# Pillow modes that hold only gray levels (with or without alpha, at any bit depth).
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})


def _relative(path: Path, root: Path) -> str:
    """The file's path relative to `root`, with "/" separators: the same string on every OS."""
    return path.relative_to(root).as_posix()


@dataclass
class FolderListing:
    """What a walk of a data folder found: image files (by extension), and what it passed over."""

    root: Path
    files: list[Path]  # sorted by relative path
    ignored: list[str] = field(default_factory=list)  # relative paths of files without an image extension
    unreadable: list[str] = field(default_factory=list)  # relative paths ("sub/") of folders that cannot be listed


def _check_readable_folder(root: Path) -> None:
    """A DataError naming `root` unless it is a folder that can be listed."""
    try:
        if not root.exists():
            raise DataError(f"Data folder {root} does not exist; pass an existing folder of images or 'builtin'.")
        if not root.is_dir():
            raise DataError(f"Data path {root} is not a folder; pass a folder that contains the images.")
        with os.scandir(root) as entries:
            next(entries, None)
    except OSError as e:
        reason = "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__)
        raise DataError(f"Data folder {root} cannot be read ({reason}); check its permissions.") from e


def list_folder(root: str | Path) -> FolderListing:
    """Walk `root` (recursively, following links, skipping hidden entries) for image files.

    A missing, non-folder or unreadable `root`, or one without any image file, is a DataError naming it.
    """
    root = Path(root)
    _check_readable_folder(root)
    files: list[Path] = []
    ignored: list[str] = []
    unreadable: list[str] = []

    def on_error(error: OSError) -> None:
        if error.filename is not None:
            unreadable.append(_relative(Path(error.filename), root) + "/")

    # Symlinked folders are followed (data sets are often assembled from links), but each real folder is
    # visited once so that a link cycle cannot make the walk endless.
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=on_error):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                files.append(Path(dirpath) / name)
            else:
                ignored.append(_relative(Path(dirpath) / name, root))
    if not files:
        where = f" ({len(unreadable)} subfolders could not be read)" if unreadable else ""
        raise DataError(
            f"Data folder {root} contains no image files{where}; add files ending in {', '.join(IMAGE_EXTENSIONS)} "
            "(subfolders are searched too)."
        )
    files.sort(key=lambda f: _relative(f, root))
    return FolderListing(root, files, sorted(ignored), sorted(unreadable))


def list_image_files(root: str | Path) -> list[Path]:
    """All image files under `root` (recursively), sorted by relative path; hidden files and folders are skipped.

    Only names are looked at; `introvae.data.scan` verifies the files themselves.
    """
    return list_folder(root).files


def _hash_fraction(seed: int, relative: str) -> float:
    """A number in [0, 1) that depends only on the seed and the relative path."""
    digest = hashlib.sha256(f"{seed}:{relative}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_names(names: list[str], test_fraction: float, seed: int, where: str) -> tuple[list[int], list[int]]:
    """Split items by hashing each name: (train indices, test indices), both in input order.

    With test_fraction > 0 and at least two items the test set is never empty; the train set never is.
    `where` names the data set in error messages.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(
            f"The test fraction for {where} must be at least 0 and below 1, got {test_fraction}; choose e.g. 0.1."
        )
    if not names:
        raise DataError(f"{where} has no images to split; add images to it.")
    scores = [_hash_fraction(seed, name) for name in names]
    is_test = [s < test_fraction for s in scores]
    if test_fraction > 0.0 and not any(is_test) and len(names) >= 2:
        # Small sets can hash every item into train; evaluation still needs one image, and taking the
        # lowest hash keeps the choice stable for a given content.
        is_test[min(range(len(names)), key=scores.__getitem__)] = True
    if all(is_test):
        # Only possible with very few items: give the highest-hashed one back to training.
        if len(names) < 2:
            is_test = [False]
        else:
            is_test[max(range(len(names)), key=scores.__getitem__)] = False
    train = [i for i, t in enumerate(is_test) if not t]
    test = [i for i, t in enumerate(is_test) if t]
    if not train:  # pragma: no cover - guarded above; kept so the invariant is stated where it is relied on
        raise DataError(f"The split of {where} leaves no training images; lower the test fraction.")
    return train, test


def split_files(files: list[Path], root: Path, test_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Split `files` into (train, test) by hashing each relative path; both keep the input order.

    With test_fraction > 0 and at least two files the test set is never empty; the train set never is.
    """
    root = Path(root)
    if not files:
        raise DataError(f"Data folder {root} has no image files to split; add images to it.")
    train, test = split_names([_relative(f, root) for f in files], test_fraction, seed, f"data folder {root}")
    return [files[i] for i in train], [files[i] for i in test]


def _is_gray_palette(img: Image.Image) -> bool:
    palette = img.getpalette("RGB")
    if palette is None:
        return False
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


def is_gray_image(img: Image.Image) -> bool:
    """Whether an opened image holds only gray levels, judged from its mode (and palette); no pixels are read."""
    mode = img.mode
    if mode in _GRAY_MODES or mode.startswith("I;16"):
        return True
    return mode in ("P", "PA") and _is_gray_palette(img)


def detect_channels(files: list[Path], max_check: int = 64) -> int:
    """1 if the first `max_check` images are all gray, else 3; reads only headers (and palettes)."""
    for path in files[:max_check]:
        try:
            # Image.open reads the header only; pixel data is never decoded here.
            with Image.open(path) as img:
                if not is_gray_image(img):
                    return 3
        except Exception as e:  # Pillow raises several types for unreadable files
            raise DataError(f"Cannot read image {path} ({type(e).__name__}: {e}); remove or replace the file.") from e
    return 1
