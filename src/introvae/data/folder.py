"""Folders of image files as data sets: finding the images, splitting them into train and test, and
deciding whether they are gray or colour.

The split hashes each file's relative path, so it is reproducible across machines and adding files to a
folder never moves an existing file from train to test or back.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image

from introvae.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "scan_folder", "split_files", "detect_channels"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# Pillow modes that hold only gray levels (with or without alpha, at any bit depth).
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})


def _relative(path: Path, root: Path) -> str:
    """The file's path relative to `root`, with "/" separators: the same string on every OS."""
    return path.relative_to(root).as_posix()


def scan_folder(root: str | Path) -> list[Path]:
    """All image files under `root` (recursively), sorted by relative path; hidden files and folders are skipped."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"Data folder {root} does not exist; pass an existing folder of images or 'builtin'.")
    if not root.is_dir():
        raise DataError(f"Data path {root} is not a folder; pass a folder that contains the images.")
    files: list[Path] = []
    # Symlinked folders are followed (data sets are often assembled from links), but each real folder is
    # visited once so that a link cycle cannot make the walk endless.
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                files.append(Path(dirpath) / name)
    if not files:
        raise DataError(
            f"Data folder {root} contains no image files; add files ending in {', '.join(IMAGE_EXTENSIONS)} "
            "(subfolders are searched too)."
        )
    files.sort(key=lambda f: _relative(f, root))
    return files


def _hash_fraction(seed: int, relative: str) -> float:
    """A number in [0, 1) that depends only on the seed and the relative path."""
    digest = hashlib.sha256(f"{seed}:{relative}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_files(files: list[Path], root: Path, test_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Split `files` into (train, test) by hashing each relative path; both keep the input order.

    With test_fraction > 0 and at least two files the test set is never empty; the train set never is.
    """
    root = Path(root)
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(
            f"The test fraction for {root} must be at least 0 and below 1, got {test_fraction}; choose e.g. 0.1."
        )
    if not files:
        raise DataError(f"Data folder {root} has no image files to split; add images to it.")
    scores = [_hash_fraction(seed, _relative(f, root)) for f in files]
    is_test = [s < test_fraction for s in scores]
    if test_fraction > 0.0 and not any(is_test) and len(files) >= 2:
        # Small folders can hash every file into train; evaluation still needs one image, and taking the
        # lowest hash keeps the choice stable for a given folder content.
        is_test[min(range(len(files)), key=scores.__getitem__)] = True
    if all(is_test):
        # Only possible with very few files: give the highest-hashed one back to training.
        if len(files) < 2:
            is_test = [False]
        else:
            is_test[max(range(len(files)), key=scores.__getitem__)] = False
    train = [f for f, t in zip(files, is_test) if not t]
    test = [f for f, t in zip(files, is_test) if t]
    if not train:  # pragma: no cover - guarded above; kept so the invariant is stated where it is relied on
        raise DataError(f"The split of {root} leaves no training images; lower the test fraction.")
    return train, test


def _is_gray_palette(img: Image.Image) -> bool:
    palette = img.getpalette("RGB")
    if palette is None:
        return False
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


def detect_channels(files: list[Path], max_check: int = 64) -> int:
    """1 if the first `max_check` images are all gray, else 3; reads only headers (and palettes)."""
    for path in files[:max_check]:
        try:
            # Image.open reads the header only; pixel data is never decoded here.
            with Image.open(path) as img:
                mode = img.mode
                if mode in _GRAY_MODES or mode.startswith("I;16"):
                    continue
                if mode in ("P", "PA") and _is_gray_palette(img):
                    continue
                return 3
        except Exception as e:  # Pillow raises several types for unreadable files
            raise DataError(f"Cannot read image {path} ({type(e).__name__}: {e}); remove or replace the file.") from e
    return 1
