"""A real-photo data set for the benchmarks: random crops of the colour photographs bundled in scikit-image's wheel.

    python benchmarks/photos.py [--size 32] [--count 4096] [--seed 0] [--out-dir benchmarks/results]

Builds (once) `count` square crops of random side 48-160 px from random positions of the photographs below, each
area-resized to `size` x `size` with Pillow and flipped horizontally at random, all drawn from one seeded generator,
and saves them as uint8 (N, H, W, 3) under the key "images" in benchmarks/results/photos-<size>.npz (a suffix names a
non-default count or seed). The library reads the file with `--data PATH` / `Config(data=PATH)`. The command line
also writes a contact sheet of the first 64 crops (photos-<size>.png) next to it.

Nothing is downloaded: only scikit-image's loaders that read files shipped inside the wheel are used (`pip install
introvae[bench]`). Left out: the images fetched through pooch (brain, eagle, kidney, lily, skin, ...), gray or binary
images, the drawings (colorwheel, logo), `cat` (the same picture as chelsea), stereo_motorcycle's right view (nearly
the left one), and hubble_deep_field and retina, whose crops at these sizes are mostly empty black sky or flat fundus.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "immunohistochemistry")
CROP_SIDES = (48, 160)  # smallest and largest crop side in source pixels (inclusive)
DEFAULT_COUNT, DEFAULT_SEED = 4096, 0


def load_photos() -> dict[str, np.ndarray]:
    """The photographs as uint8 (H, W, 3) arrays, read from the files inside the scikit-image wheel."""
    import skimage.data

    photos = {}
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        if name == "stereo_motorcycle":
            image = image[0]  # (left view, right view, disparity): the left view alone
        photos[name] = np.ascontiguousarray(image)
    return photos


def make_crops(photos: dict[str, np.ndarray], size: int, count: int, seed: int) -> np.ndarray:
    """`count` random square crops (photo, side, position and flip drawn in this order per crop) at size x size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = [Image.fromarray(photo) for photo in photos.values()]
    crops = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        source = sources[rng.integers(len(sources))]
        side = int(rng.integers(CROP_SIDES[0], CROP_SIDES[1] + 1))
        left = int(rng.integers(source.width - side + 1))
        top = int(rng.integers(source.height - side + 1))
        # BOX averages the source pixels under each target pixel: an area resize, which does not alias fine detail.
        crop = source.resize((size, size), Image.Resampling.BOX, box=(left, top, left + side, top + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crops[i] = np.asarray(crop)
    return crops


def _recipe(size: int, count: int, seed: int) -> str:
    import skimage

    # Everything the crops depend on; a cached file with another recipe (e.g. a newer scikit-image) is rebuilt.
    return json.dumps({"photos": PHOTOS, "crop_sides": CROP_SIDES, "size": size, "count": count, "seed": seed,
                       "skimage": skimage.__version__}, sort_keys=True)


def photos_npz(size: int = 32, count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED, out_dir: Path = RESULTS) -> Path:
    """Path of the .npz of `count` crops at `size` x `size` for `seed`, built on the first call."""
    suffix = "" if (count, seed) == (DEFAULT_COUNT, DEFAULT_SEED) else f"-n{count}-seed{seed}"
    path = Path(out_dir) / f"photos-{size}{suffix}.npz"
    recipe = _recipe(size, count, seed)
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            if "recipe" in cached and str(cached["recipe"]) == recipe:
                return path
    images = make_crops(load_photos(), size, count, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed, so a reader never sees a half-written file.
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as f:
        np.savez_compressed(f, images=images, recipe=np.array(recipe))
    os.replace(temporary, path)
    return path


def contact_sheet(images: np.ndarray, path: Path, columns: int = 8, scale: int = 4, gap: int = 2) -> None:
    """Save `images` (N, H, W, 3) as a PNG grid, each enlarged `scale` times (nearest) so the pixels stay visible."""
    from PIL import Image

    n, h, w, _ = images.shape
    rows = -(-n // columns)
    cell_h, cell_w = h * scale + gap, w * scale + gap
    sheet = np.full((rows * cell_h + gap, columns * cell_w + gap, 3), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        y, x = gap + (i // columns) * cell_h, gap + (i % columns) * cell_w
        sheet[y : y + h * scale, x : x + w * scale] = image.repeat(scale, axis=0).repeat(scale, axis=1)
    Image.fromarray(sheet).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32, help="side of the saved images in pixels (default 32)")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"number of crops (default {DEFAULT_COUNT})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the crops (default {DEFAULT_SEED})")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    path = photos_npz(args.size, args.count, args.seed, args.out_dir)
    with np.load(path, allow_pickle=False) as data:
        images = data["images"]
    sheet = path.with_suffix(".png")
    contact_sheet(images[:64], sheet)
    print(f"{path}: {images.shape[0]} images of {images.shape[2]}x{images.shape[1]} from {', '.join(PHOTOS)}")
    print(f"contact sheet of the first 64: {sheet}")


if __name__ == "__main__":
    main()
