"""Regenerate the README's pictures of the latent-space tools (docs/latent/) from a run trained on the built-in shapes.

    python scripts/latent_pictures.py RUN_DIR [--out docs/latent] [--work DIR]

Every picture is made by the `introvae` commands themselves (called in-process), on folders this script exports
from the built-in generator at the run's image size:

* attribute-circle.png: `attribute` with images whose shapes are all circles against images whose shapes are all
  squares, then `edit` of held-out single-square images along that vector (strengths -3 .. 3); the norm of the
  same vector between two random halves of those images is printed for scale;
* attribute-light.png: `attribute --labels` (light or dark background, from the corner pixel) and `edit` of
  held-out dark images along the "light" vector;
* traverse.png: `traverse --seed 0 --pca 6` (rows: the top principal components of the training codes);
* loop.gif (and its strip loop.png): `interpolate --seeds 0 1 2 3 --out loop.gif`;
* ood-noise-histogram.png, ood-photos-histogram.png: `score --inliers` held-out built-in images `--outliers`
  uniform noise images, and crops of scikit-image's photographs (benchmarks/photos.py; skipped without
  scikit-image). The AUROCs are printed and kept in OUT/ood-*.json.

PNG grids are enlarged 2x (nearest neighbour) so that 32 px images can be seen on the page, and stored with a
256-colour palette to stay small (25-40 KB each).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from introvae import Model
from introvae.cli import main as introvae
from introvae.config import Config
from introvae.data import make_shapes
from introvae.data.shapes import SHAPES_SEED, shape_kinds
from introvae.images import save_image, to_float
from introvae.latent import AttributeVector, compute_attribute

ROOT = Path(__file__).resolve().parent.parent
OOD_COUNT, ENLARGE = 300, 2


def run(*args: str) -> None:
    status = introvae([str(a) for a in args])
    if status != 0:
        sys.exit(f"latent_pictures: `introvae {' '.join(map(str, args))}` failed with status {status}")


def export(images: torch.Tensor, folder: Path) -> Path:
    for i, image in enumerate(to_float(images)):
        save_image(image, folder / f"{i:05d}.png")
    return folder


def enlarge(path: Path) -> None:
    """2x nearest neighbour, stored with a 256-colour palette: a third of the bytes, no visible change."""
    with Image.open(path) as picture:
        larger = picture.convert("RGB").resize((picture.width * ENLARGE, picture.height * ENLARGE),
                                              Image.Resampling.NEAREST)
    larger.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "latent")
    parser.add_argument("--work", type=Path, help="keep the exported folders here (default: a temporary folder)")
    args = parser.parse_args()
    config = Config.load(args.run_dir / "config.json")
    dataset = config.dataset
    if dataset.path != "builtin":
        sys.exit(f"latent_pictures: {args.run_dir} was trained on {dataset.path!r}; the pictures need a built-in run.")
    work = args.work or Path(tempfile.mkdtemp(prefix="latent-pictures-"))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    size, count = dataset.image_size, dataset.builtin_count
    images = make_shapes(count, size, 3, seed=SHAPES_SEED)
    kinds = shape_kinds(count, seed=SHAPES_SEED)
    n_train = count - min(round(dataset.test_fraction * count), count - 1)  # the built-in split: the last images

    # Attribute: every image whose shapes are all circles against every image whose shapes are all squares; edit
    # held-out single squares. For scale, the same vector between two random halves of those images (no attribute).
    only = {kind: [i for i, k in enumerate(kinds) if set(k) == {kind}] for kind in ("circle", "square")}
    circles, squares = export(images[only["circle"]], work / "circle"), export(images[only["square"]], work / "square")
    held_out_squares = [i for i in only["square"] if i >= n_train and len(kinds[i]) == 1][:6]
    edit_inputs = export(images[held_out_squares], work / "edit-inputs")
    vector = work / "circle.safetensors"
    run("attribute", args.run_dir, "--with", circles, "--without", squares, "--name", "circle", "--out", vector)
    run("edit", args.run_dir, "--input", edit_inputs, "--attribute", vector, "--strength", "-3", "-2", "-1", "0",
        "1", "2", "3", "--out", out / "attribute-circle.png")
    both = only["circle"] + only["square"]
    shuffled = [both[i] for i in torch.randperm(len(both), generator=torch.Generator().manual_seed(0)).tolist()]
    model = Model.load(args.run_dir, device="cpu")
    half = len(both) // 2
    null = compute_attribute(model, to_float(images[shuffled[:half]]), to_float(images[shuffled[half:]]))
    print(f"latent_pictures: circle - square: norm {AttributeVector.load(vector).norm:.3f}; two random halves of "
          f"the same images: norm {null.norm:.3f}")

    # Attribute from labels: light against dark backgrounds (the luma of the corner pixel, which no shape covers).
    corner_luma = (images[:, :, 0, 0].float() @ torch.tensor([0.299, 0.587, 0.114])).tolist()
    labelled = export(images[:1024], work / "labelled")
    rows = ["file,label"] + [f"{i:05d}.png,{'light' if corner_luma[i] >= 128 else 'dark'}" for i in range(1024)]
    (labelled / "labels.csv").write_text("\n".join(rows) + "\n")
    run("attribute", args.run_dir, "--labels", labelled / "labels.csv", "--out", work / "by-label")
    dark_held_out = export(images[[i for i in range(n_train, count) if corner_luma[i] < 128][:6]], work / "dark")
    run("edit", args.run_dir, "--input", dark_held_out, "--attribute", work / "by-label" / "light.safetensors",
        "--strength", "-1", "-0.5", "0", "0.5", "1", "1.5", "--out", out / "attribute-light.png")

    run("traverse", args.run_dir, "--seed", "0", "--pca", "6", "--range", "-3", "3", "--steps", "9", "--out",
        out / "traverse.png")
    run("interpolate", args.run_dir, "--seeds", "0", "1", "2", "3", "--steps", "7", "--fps", "8", "--zoom", "2",
        "--out", out / "loop.gif")
    for grid in ("attribute-circle.png", "attribute-light.png", "traverse.png", "loop.png"):
        enlarge(out / grid)

    # Out-of-distribution: held-out built-in images against noise and against photographs.
    inliers = export(images[n_train:][:OOD_COUNT], work / "held-out")
    noise = torch.rand(OOD_COUNT, 3, size, size, generator=torch.Generator().manual_seed(0))
    outlier_sets = {"noise": export((noise * 255).round().to(torch.uint8), work / "noise")}
    try:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from photos import load_photos, make_crops

        crops = torch.from_numpy(make_crops(load_photos(), size, OOD_COUNT, seed=0)).permute(0, 3, 1, 2)
        outlier_sets["photos"] = export(crops, work / "photos")
    except ImportError:
        print("latent_pictures: scikit-image is not installed, so the photographs are left out", file=sys.stderr)
    for name, outliers in outlier_sets.items():
        scores = work / f"ood-{name}.csv"
        run("score", args.run_dir, "--inliers", inliers, "--outliers", outliers, "--samples", "16", "--out", scores)
        shutil.copy(work / f"ood-{name}-histogram.png", out / f"ood-{name}-histogram.png")
        report = json.loads(scores.with_suffix(".json").read_text())
        # The exported folders are temporary: name what they held instead.
        report.update(inliers=f"{OOD_COUNT} held-out built-in images", outliers=f"{OOD_COUNT} {name} images",
                      scores_csv=None)
        (out / f"ood-{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        auroc = report["metrics"]["neg_log_px_bpd"]["auroc"]
        print(f"latent_pictures: held-out shapes vs {name}: AUROC {auroc:.4f} (-log p(x), K = 16)")
    if args.work is None:
        shutil.rmtree(work)
    print(f"latent_pictures: wrote {out}")


if __name__ == "__main__":
    main()
