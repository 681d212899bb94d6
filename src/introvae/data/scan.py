"""Verifying a data set before training: every image is opened and decoded once, and what cannot be used is
skipped with a reason, so that training never meets a broken file.

The scan reads each item (a file, an LMDB record) once. Small data sets are decoded straight into the
in-memory cache, so verification costs no extra decode; large ones are decoded once at a reduced scale
(JPEGs through libjpeg's DCT scaling), which checks every byte of compressed data at a fraction of the cost.

Policies (see the README, section "Data"):

* Skipped with a reason: unreadable (permission denied, a broken link, not a regular file), zero-byte,
  not an image (Pillow does not recognise the content), undecodable (an image signature but a broken
  header or data), truncated (header fine, pixel data cut short), too large (more pixels than Pillow's
  `Image.MAX_IMAGE_PIXELS`, 89,478,485 by default: a decompression-bomb guard), too small (shorter side
  below `MIN_IMAGE_SIDE` = 8 pixels).
* Images smaller than the training size are upscaled (BICUBIC) and counted in the report, not skipped:
  dropping them would quietly shrink or empty data sets such as 32 px CIFAR-like sets at 64 px; the count
  tells the user when a smaller --image-size would suit the data better.
"""

from __future__ import annotations

import io
import os
import stat
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

import torch
from PIL import Image, UnidentifiedImageError

from introvae.data.folder_files import is_gray_image
from introvae.errors import DataError
from introvae.images import fit_image, prepare_image

__all__ = [
    "SKIP_REASONS",
    "MIN_IMAGE_SIDE",
    "ScanReport",
    "ScanResult",
    "pixel_limit",
    "verify_items",
    "open_file",
    "num_threads",
    "require_usable",
]

# Why an item was skipped, in the order reports list them, with what each reason means.
SKIP_REASONS: dict[str, str] = {
    "unreadable": "cannot be read (permission denied, a broken link, or not a regular file)",
    "zero-byte": "empty",
    "not an image": "content is no image format Pillow knows",
    "undecodable": "looks like an image but its header or data is corrupt",
    "truncated": "header fine, pixel data cut short",
    "too large": "more pixels than the decompression-bomb limit",
    "too small": "shorter side below the minimum",
}

# Images with a shorter side below this are skipped: icons, spacer GIFs and tracking pixels carry nothing a
# generative model can learn from, however they are upscaled.
MIN_IMAGE_SIDE = 8

# How many names per reason a full report prints (the report keeps them all).
REPORT_EXAMPLES = 5

# Items handed to the thread pool per step; bounds the bytes an LMDB chunk holds in memory.
_CHUNK = 256

# First bytes of the formats introvae reads: a file that starts like an image but cannot be opened is
# "undecodable" (a damaged image), anything else is "not an image".
_SIGNATURES: tuple[bytes, ...] = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"GIF87a",
    b"GIF89a",
)


def pixel_limit() -> int | None:
    """The decompression-bomb limit: Pillow's `Image.MAX_IMAGE_PIXELS` (89,478,485 by default) at call time."""
    return Image.MAX_IMAGE_PIXELS


def num_threads() -> int:
    """Threads for decoding: the machine's cores, at most 8 (Pillow releases the GIL while decoding)."""
    return max(1, min(8, os.cpu_count() or 1))


def _looks_like_image(head: bytes) -> bool:
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def open_file(path: Path) -> BinaryIO:
    """Open a regular file for reading; anything else (a folder, a pipe, a socket) raises OSError."""
    f = open(path, "rb")
    try:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
    except BaseException:
        f.close()
        raise
    return f


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass
class ScanReport:
    """What a scan of a data set found: usable images, and what was skipped or changed, and why."""

    source: str  # what was scanned, e.g. "folder /data/faces"
    image_size: int
    kind: str = "file"  # what an item is called: "file", "record" or "array image"
    examined: int = 0  # items looked at: files with an image extension, LMDB records, array images
    usable: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> names, in data set order
    upscaled: int = 0  # usable images with a shorter side below image_size
    upscaled_examples: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # files passed over for their extension
    channels: int = 0  # channels the data set is used with (detected, or as asked)
    detected_gray: bool = False  # every usable image is gray
    limit: int | None = None  # the decompression-bomb limit in pixels (None: off, or not applicable to arrays)
    seconds: float = 0.0

    @property
    def skipped_count(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def counts(self) -> dict[str, int]:
        """Skipped items per reason, in the order of SKIP_REASONS."""
        return {reason: len(self.skipped[reason]) for reason in SKIP_REASONS if self.skipped.get(reason)}

    def add_skip(self, reason: str, name: str) -> None:
        self.skipped.setdefault(reason, []).append(name)

    def _reason_text(self, reason: str) -> str:
        if reason == "too large":
            return f"more than {self.limit:,} pixels (decompression-bomb limit)" if self.limit else SKIP_REASONS[reason]
        if reason == "too small":
            return f"shorter side below {MIN_IMAGE_SIDE} px"
        return SKIP_REASONS[reason]

    def reasons_phrase(self, examples: int = 1) -> str:
        """e.g. "2 truncated (a.jpg, b.jpg), 1 zero-byte (c.png)", naming up to `examples` items per reason."""
        parts = []
        for reason, n in self.counts().items():
            names = self.skipped[reason][:examples]
            more = ", ..." if n > len(names) else ""
            parts.append(f"{n} {reason} ({', '.join(names)}{more})" if names else f"{n} {reason}")
        return ", ".join(parts)

    def notable(self) -> bool:
        """Whether the scan has something to tell beyond the number of images."""
        return bool(self.skipped_count or self.upscaled)

    def summary(self) -> str:
        """One line for the training log: skipped items by reason (with a name each), and upscaled images."""
        parts = []
        if self.skipped_count:
            parts.append(
                f"skipped {self.skipped_count} of {_plural(self.examined, self.kind)}: "
                f"{self.reasons_phrase(examples=2)}"
            )
        if self.upscaled:
            parts.append(
                f"upscaled {_plural(self.upscaled, 'image')} smaller than {self.image_size} px "
                f"({', '.join(self.upscaled_examples[:2])}{', ...' if self.upscaled > 2 else ''})"
            )
        if not parts:
            return f"all {_plural(self.examined, self.kind)} verified"
        return "; ".join(parts) + "; `introvae check-data` prints the full report"

    def format(self) -> str:
        """The full report, several lines, as `introvae check-data` prints it."""
        colour = "1 (gray)" if self.channels == 1 else f"{self.channels} (colour)"
        size = f"{self.image_size}x{self.image_size}"
        lines = [f"{self.source}, checked for training at {size} px in {self.seconds:.1f} s"]
        examined = f"  examined  {_plural(self.examined, self.kind)}"
        if self.ignored:
            examined += (
                f" ({_plural(len(self.ignored), 'other file')} without an image extension ignored, e.g. "
                f"{', '.join(self.ignored[:3])})"
            )
        lines.append(examined)
        lines.append(f"  usable    {_plural(self.usable, 'image')}, channels {colour}")
        if self.upscaled:
            names = ", ".join(self.upscaled_examples[:REPORT_EXAMPLES]) + (
                ", ..." if self.upscaled > REPORT_EXAMPLES else ""
            )
            lines.append(f"  upscaled  {self.upscaled} smaller than {self.image_size} px on the shorter side: {names}")
        lines.append(f"  skipped   {self.skipped_count}" + (":" if self.skipped_count else ""))
        for reason, n in self.counts().items():
            names = self.skipped[reason]
            more = f", ... ({n - REPORT_EXAMPLES} more)" if n > REPORT_EXAMPLES else ""
            shown = ", ".join(names[:REPORT_EXAMPLES]) + more
            lines.append(f"    {reason:<13}{n:>7}  {self._reason_text(reason)}: {shown}")
        limit = f" or above {self.limit:,} pixels (PIL.Image.MAX_IMAGE_PIXELS)" if self.limit else ""
        lines.append(
            f"  policy    skip below {MIN_IMAGE_SIDE} px{limit}; upscale images smaller than {self.image_size} px"
        )
        return "\n".join(lines)


def require_usable(report: ScanReport, where: str, minimum: int = 2) -> None:
    """A one-sentence DataError when fewer than `minimum` usable images remain."""
    if report.usable >= minimum:
        return
    skipped = f": {report.reasons_phrase(examples=2)} were skipped" if report.skipped_count else ""
    raise DataError(
        f"{where} has {_plural(report.usable, 'usable image')} of {_plural(report.examined, report.kind)}{skipped}; "
        f"training needs at least {minimum}, so replace the broken files or point --data elsewhere."
    )


@dataclass
class ScanResult:
    """The usable items of a scan, with the report and, when asked for, their decoded images."""

    usable: list[int]  # indices into the scanned items, in order
    report: ScanReport
    channels: int
    images: torch.Tensor | None = None  # (n_items, C, S, S); row usable[k] holds item usable[k]


@dataclass
class _Outcome:
    reason: str | None = None
    gray: bool = False
    small: bool = False


def _classify_decode_error(error: Exception) -> str:
    text = str(error).lower()
    if isinstance(error, EOFError) or "truncated" in text or "premature end" in text:
        return "truncated"
    if isinstance(error, Image.DecompressionBombError):
        return "too large"
    return "undecodable"


def _check(
    opener: Callable[[], BinaryIO], size: int, limit: int | None, row: torch.Tensor | None, decode_channels: int
) -> _Outcome:
    """Open, check and decode one item; `row` (if given) receives the image at `size` with `decode_channels`."""
    try:
        fp = opener()
    except OSError:
        return _Outcome("unreadable")
    with fp:
        try:
            head = fp.read(16)
            fp.seek(0)
        except OSError:
            return _Outcome("unreadable")
        if not head:
            return _Outcome("zero-byte")
        try:
            img = Image.open(fp)
        except Image.DecompressionBombError:
            return _Outcome("too large")
        except UnidentifiedImageError:
            return _Outcome("undecodable" if _looks_like_image(head) else "not an image")
        except Exception:  # Pillow raises many types for damaged headers
            return _Outcome("undecodable")
        with img:
            w, h = img.size
            if limit is not None and w * h > limit:
                return _Outcome("too large")
            if min(w, h) < MIN_IMAGE_SIDE:
                return _Outcome("too small")
            try:
                gray = is_gray_image(img)
                decoded = prepare_image(img, size)
                if row is not None:
                    row.copy_(fit_image(decoded, size, decode_channels))
            except Exception as e:
                return _Outcome(_classify_decode_error(e))
            return _Outcome(None, gray=gray, small=min(w, h) < size)


def _tally(outcomes: Sequence[_Outcome], names: Sequence[str], report: ScanReport) -> list[int]:
    """Record each item's outcome in `report`; return the indices of the usable items."""
    usable: list[int] = []
    all_gray = True
    for i, outcome in enumerate(outcomes):
        if outcome.reason is not None:
            report.add_skip(outcome.reason, names[i])
            continue
        usable.append(i)
        all_gray &= outcome.gray
        if outcome.small:
            report.upscaled += 1
            if len(report.upscaled_examples) < 64:
                report.upscaled_examples.append(names[i])
    report.usable = len(usable)
    report.detected_gray = bool(usable) and all_gray
    return usable


def _check_all(n: int, fetch: Callable[[list[int]], list[Callable[[], BinaryIO]]], size: int, limit: int | None,
               images: torch.Tensor | None, decode_channels: int, threads: int) -> list[_Outcome]:
    """The outcome of checking (and with `images`, decoding into it) each of `n` items, `threads` at a time."""
    outcomes: list[_Outcome] = [_Outcome()] * n
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=threads) as pool:
        # The scan reports problems itself; Pillow's warnings (DecompressionBombWarning, corrupt EXIF, ...)
        # would only repeat them, once per file.
        warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for start in range(0, n, _CHUNK):
            indices = list(range(start, min(n, start + _CHUNK)))
            openers = fetch(indices)

            def check(k: int) -> _Outcome:
                i = indices[k]
                return _check(openers[k], size, limit, images[i] if images is not None else None, decode_channels)

            for k, outcome in enumerate(pool.map(check, range(len(indices)))):
                outcomes[indices[k]] = outcome
    return outcomes


def verify_items(
    names: Sequence[str],
    fetch: Callable[[list[int]], list[Callable[[], BinaryIO]]],
    size: int,
    channels: int | None,
    decode: bool,
    report: ScanReport,
    threads: int | None = None,
) -> ScanResult:
    """Check every item once; fill in `report`.

    `fetch(indices)` runs in the calling thread and returns, per index, a function that opens the item (it runs
    in a worker thread). With `decode`, the images are decoded at `size` into `ScanResult.images` (with
    `channels`, or with 3 and reduced to 1 afterwards when every usable image is gray and channels is None).
    """
    started = time.perf_counter()
    n = len(names)
    limit = pixel_limit()
    report.limit = limit
    report.examined = n
    decode_channels = channels or 3
    images = torch.empty((n, decode_channels, size, size), dtype=torch.uint8) if decode else None
    outcomes = _check_all(n, fetch, size, limit, images, decode_channels, threads or num_threads())
    usable = _tally(outcomes, names, report)
    final_channels = channels or (1 if report.detected_gray else 3)
    report.channels = final_channels
    if images is not None and final_channels != decode_channels:
        # Gray images decoded as RGB hold three equal planes (Pillow converts and resamples each plane alike),
        # so the first plane is exactly what a gray decode gives.
        images = images[:, :1].clone()
    report.seconds = time.perf_counter() - started
    return ScanResult(usable, report, final_channels, images)


def file_fetcher(files: Sequence[Path]) -> Callable[[list[int]], list[Callable[[], BinaryIO]]]:
    """`fetch` for verify_items over files: each opener opens its file in the worker thread."""

    def fetch(indices: list[int]) -> list[Callable[[], BinaryIO]]:
        return [(lambda p=files[i]: open_file(p)) for i in indices]

    return fetch


def bytes_opener(data: bytes | None) -> Callable[[], BinaryIO]:
    """An opener for an item held as bytes (None: the item could not be read)."""

    def opener() -> BinaryIO:
        if data is None:
            raise OSError("the record could not be read")
        return io.BytesIO(data)

    return opener


def take_rows_in_place(t: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """Rearrange `t` so that its first len(rows) rows are the old rows `rows` (distinct), using one spare row
    of memory; returns that prefix as a view."""
    n, m = t.shape[0], len(rows)
    chosen = set(rows)
    rest = [i for i in range(n) if i not in chosen]
    source = list(rows) + rest  # new row k takes old row source[k]: a permutation of range(n)
    done = [False] * n
    spare = torch.empty_like(t[0])
    for start in range(n):
        if done[start] or source[start] == start:
            done[start] = True
            continue
        # Follow the cycle: start <- source[start] <- source[source[start]] ... back to start.
        spare.copy_(t[start])
        k = start
        while True:
            done[k] = True
            nxt = source[k]
            if nxt == start:
                t[k].copy_(spare)
                break
            t[k].copy_(t[nxt])
            k = nxt
    return t[:m]
