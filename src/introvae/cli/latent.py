"""introvae attribute, edit, traverse and score: the latent-space tools of introvae.latent."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import UserError
from ..images import save_image, to_float
from ..latent import (
    DEFAULT_SCORE,
    SCORE_KEYS,
    AttributeVector,
    axis_directions,
    edit_images,
    load_named_images,
    read_reference,
    score_sets,
    start_code,
    training_directions,
    traverse,
    write_attribute,
    write_label_attributes,
)
from ..rundir import RunDir
from .common import add_run_options, load_model, output_file


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _add_attribute(sub)
    _add_edit(sub)
    _add_traverse(sub)
    _add_score(sub)


def _add_attribute(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attribute", help="attribute vectors: the mean code of images with an attribute minus that of "
                       "images without it (Khan et al. Fig. 8)",
                       description="Compute an attribute vector from --with and --without images, or one vector per "
                       "label value from --labels (each label against all other images). Vectors are safetensors "
                       "files; those under RUN_DIR/attributes/ are the run's own (the default place).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--with", dest="with_images", type=Path, metavar="DIR", help="images that have the attribute "
                   "(a folder, searched recursively, or one image)")
    p.add_argument("--without", dest="without_images", type=Path, metavar="DIR", help="images that do not")
    p.add_argument("--labels", type=Path, metavar="FILE.csv", help="instead of --with/--without: rows file,label "
                   "(an optional header file,label); one vector per label value")
    p.add_argument("--data", type=Path, help="with --labels: the folder the CSV's file names are relative to "
                   "(default: the CSV's folder)")
    p.add_argument("--name", help="with --with/--without: the vector's name (default: the --with folder's name)")
    p.add_argument("--out", type=Path, help="with --with/--without: the .safetensors file to write, or a folder for "
                   "NAME.safetensors (default: RUN_DIR/attributes/NAME.safetensors); with --labels: a folder that "
                   "receives LABEL.safetensors per label value (default: RUN_DIR/attributes/)")
    add_run_options(p)
    p.set_defaults(run_command=cmd_attribute)


def _add_edit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="move images along an attribute vector and decode them: a row per image, a "
                       "column per strength")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--input", type=Path, required=True, help="an image file or a folder of images")
    p.add_argument("--attribute", type=Path, required=True, help="an attribute vector written by `introvae attribute`")
    p.add_argument("--strength", type=float, nargs="+", default=[-2.0, -1.0, 0.0, 1.0, 2.0], metavar="S",
                   help="multiples of the vector added to each image's code; 0 is the reconstruction (default: -2 -1 "
                   "0 1 2)")
    p.add_argument("--out", type=Path, required=True, help="PNG grid: the original image, then one column per strength")
    add_run_options(p)
    p.set_defaults(run_command=cmd_edit)


def _add_traverse(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("traverse", help="decode a code moved along latent directions: one row per direction (the "
                       "code's axes or the top principal components of the training images' codes)")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--seed", type=int, help="start from the prior code of this seed")
    p.add_argument("--input", type=Path, help="start from the posterior mean of this image (instead of --seed)")
    p.add_argument("--dims", type=int, nargs="+", metavar="D", help="code axes to move along, one row each")
    p.add_argument("--pca", type=int, metavar="K", help="instead of --dims: the top K principal components of the "
                   "posterior means of the run's training images; --range is then in units of each one's stddev")
    p.add_argument("--pca-images", type=int, default=1024, help="training images for --pca (int, default: 1024)")
    p.add_argument("--range", type=float, nargs=2, default=[-3.0, 3.0], metavar=("LO", "HI"),
                   help="values added along each direction (default: -3 3)")
    p.add_argument("--steps", type=int, default=9, help="images per row, ends included (int, default: 9)")
    p.add_argument("--out", type=Path, required=True, help="PNG grid to write")
    add_run_options(p)
    p.set_defaults(run_command=cmd_traverse)


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="out-of-distribution scores of images: -ELBO, importance-weighted -log p(x), "
                       "complexity-corrected and typicality scores; with --inliers/--outliers also AUROC, AUPRC and "
                       "FPR at 95%% TPR",
                       description="Score images under the run's model with a Gaussian decoder N(G(z), sigma^2 I): "
                       "the densities, -log p(x) minus the image's compressed length (PNG, WebP), and how far -log "
                       "p(x) and the encoder's KL lie from their training values on either side, and, the default, how "
                       "far these and the compressed lengths lie together (see introvae.latent.ood and docs/ood.md). "
                       "sigma and the training values are fitted once on the run's training images (or read with "
                       "--reference). Writes a CSV of per-image scores and OUT.json (the reference, the default score "
                       "and, with --inliers and --outliers, the detection metrics of every score) and with two sets "
                       "OUT-histogram.png.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--data", type=Path, help="images to score (a folder, one image, or a .npz/.npy of uint8 images)")
    p.add_argument("--inliers", type=Path, help="instead of --data: images like the training data")
    p.add_argument("--outliers", type=Path, help="with --inliers: images that are not")
    p.add_argument("--samples", type=int, default=16, help="posterior samples K per image (int, default: 16)")
    p.add_argument("--sigma", type=float, help="noise level of the decoder in [0, 1] pixel units (default: fitted by "
                   "maximum likelihood on the run's training images, max(64, 1024 // K) of them)")
    p.add_argument("--reference", type=Path, metavar="R.json", help="reuse the reference (sigma and the training "
                   "images' score statistics) of an earlier report OUT.json instead of fitting it again")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior samples (int, default: 0)")
    p.add_argument("--histogram-score", metavar="KEY", help="the score the histogram shows (default: the default "
                   "score, joint_typicality)")
    p.add_argument("--out", type=Path, required=True, help="CSV file of per-image scores")
    add_run_options(p)
    p.set_defaults(run_command=cmd_score)


def cmd_attribute(args: argparse.Namespace) -> int:
    pair = args.with_images is not None or args.without_images is not None
    if pair == (args.labels is not None) or (pair and (args.with_images is None or args.without_images is None)):
        raise UserError("give either --with DIR and --without DIR, or --labels FILE.csv.")
    if pair and args.data is not None:
        raise UserError("--data goes with --labels (the folder the CSV's names are relative to); leave it out.")
    if args.labels is not None and args.name is not None:
        raise UserError("--name goes with --with/--without; with --labels each vector is named by its label.")
    model = load_model(args)
    if pair:
        written = [write_attribute(model, args.run_dir, args.with_images, args.without_images, args.name, args.out,
                                   args.batch_size)]
    else:
        written = write_label_attributes(model, args.run_dir, args.labels, args.data, args.out, args.batch_size)
    for vector, path in written:
        print(f"introvae: attribute {vector.name!r}: {vector.count_with} images with, {vector.count_without} "
              f"without, norm {vector.norm:.3f} -> {path}")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    output_file(args.out, (".png", ".jpg", ".jpeg", ".webp"))
    vector = AttributeVector.load(args.attribute)
    model = load_model(args)
    images = to_float(load_named_images(args.input, model.config.dataset.image_size,
                                       model.config.dataset.channels)[1])
    edited = edit_images(model, images, vector, args.strength, args.batch_size)  # (N, S, C, H, W)
    grid = torch.cat([images[:, None], edited], dim=1)
    save_image(grid.flatten(0, 1), args.out, nrow=grid.shape[1])
    print(f"introvae: wrote {args.out}: {len(images)} images (rows) along {vector.name!r} (norm {vector.norm:.3f}); "
          f"columns: the original, then strengths {' '.join(f'{s:g}' for s in args.strength)}")
    return 0


def cmd_traverse(args: argparse.Namespace) -> int:
    if (args.seed is None) == (args.input is None):
        raise UserError("give either --seed S or --input IMAGE as the starting code.")
    if (args.dims is None) == (args.pca is None):
        raise UserError("give either --dims D ... (code axes) or --pca K (principal components).")
    if args.steps < 2:
        raise UserError(f"--steps must be at least 2, got {args.steps}.")
    output_file(args.out, (".png", ".jpg", ".jpeg", ".webp"))
    model = load_model(args)
    z0, prior = start_code(model, args.seed, args.input, args.batch_size)
    values = torch.linspace(args.range[0], args.range[1], args.steps)
    if args.pca is not None:
        directions, pca = training_directions(model, args.pca, args.pca_images, args.batch_size)
        what = "principal components " + ", ".join(f"{i} ({100 * e:.1f} %)" for i, e in enumerate(pca.explained))
    else:
        directions = axis_directions(model.config.networks.latent_dim, args.dims)
        what = f"axes {' '.join(map(str, args.dims))}"
    grid = traverse(model, z0, directions, values, prior=prior, batch_size=args.batch_size)
    save_image(grid.flatten(0, 1), args.out, nrow=args.steps)
    print(f"introvae: wrote {args.out}: rows {what}, values {args.range[0]:g} .. {args.range[1]:g}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    two_sets = args.inliers is not None or args.outliers is not None
    if two_sets == (args.data is not None) or (two_sets and (args.inliers is None or args.outliers is None)):
        raise UserError("give either --data DIR, or --inliers DIR and --outliers DIR.")
    histogram_key = args.histogram_score or DEFAULT_SCORE
    if histogram_key not in SCORE_KEYS:
        raise UserError(f"--histogram-score {histogram_key!r} is not one of {', '.join(SCORE_KEYS)}.")
    if args.sigma is not None and args.reference is not None:
        raise UserError("give --sigma or --reference, not both: the reference carries its sigma.")
    output_file(args.out, (".csv",))
    reference = read_reference(args.reference) if args.reference is not None else None
    model = load_model(args)
    sets = {"inliers": args.inliers, "outliers": args.outliers} if two_sets else {"data": args.data}
    report = score_sets(model, sets, args.samples, args.seed, args.batch_size, reference=reference, sigma=args.sigma)
    step = args.step if args.step is not None or not args.run_dir.is_dir() else RunDir(args.run_dir).latest_step()
    written = report.write(args.out, histogram_key, title=args.run_dir.name, run=str(args.run_dir), step=step)
    reference = report.reference
    where = (f"sigma {reference.sigma:.4g}{' (fitted on training images)' if reference.sigma_fitted else ''}"
             f"{f', reference {args.reference}' if args.reference is not None else ''}, K = {args.samples}")
    if not two_sets:
        data = report.scores["data"]
        print(f"introvae: scored {len(report.names['data'])} images ({where}); mean -log p(x) "
              f"{data['neg_log_px_bpd'].mean():.4f} bits/dim, mean {DEFAULT_SCORE} {data[DEFAULT_SCORE].mean():.3f}; "
              f"wrote {', '.join(map(str, written))}")
        return 0
    print(f"{'score':<20} {'AUROC':>7} {'AUPRC':>7} {'FPR@95TPR':>10}")
    for k, m in report.metrics.items():
        print(f"{k:<20} {m['auroc']:7.4f} {m['auprc']:7.4f} {m['fpr_at_95_tpr']:10.4f}"
              f"{'   (default)' if k == DEFAULT_SCORE else ''}")
    print(f"introvae: {len(report.names['inliers'])} inliers, {len(report.names['outliers'])} outliers ({where}); "
          f"wrote {', '.join(map(str, written))}")
    return 0
