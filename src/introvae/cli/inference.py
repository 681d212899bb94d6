"""introvae sample, reconstruct and interpolate: what a trained run draws and decodes."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..density import CODES_PER_COMPONENT, DEFAULT_COMPONENTS
from ..errors import UserError
from ..images import save_image, to_float, to_uint8
from ..latent import ANIMATION_SUFFIXES, DENSITY_IMAGES, load_named_images, set_sampler, write_interpolation
from .common import add_prior_option, add_run_options, load_model, output_file, say


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _add_sample(sub)
    _add_reconstruct(sub)
    _add_interpolate(sub)


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="draw images from a trained run, seeded per image")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory, or a weights file (what "
                   "`introvae export` writes, or a run's checkpoints/model-STEP.safetensors)")
    p.add_argument("--num", type=int, default=64, help="number of images (int, default: 64)")
    p.add_argument("--out", type=Path, required=True,
                   help="a directory for PNG files (with grid.png), FILE.png for one grid of all the images (8 "
                   "per row), or FILE.npz for one uint8 array 'images' (N, H, W, C)")
    p.add_argument("--seed", type=int, default=0,
                   help="image i uses the seed (SEED, i), whatever the batch size (int, default: 0)")
    add_prior_option(p, fitted=True)
    p.add_argument("--components", type=int, help="with --prior fitted: the mixture's components (int, default: "
                   f"{DEFAULT_COMPONENTS}, or one per {CODES_PER_COMPONENT} training images when there are fewer)")
    p.add_argument("--prior-images", type=int, default=DENSITY_IMAGES, help="with --prior fitted: training "
                   f"images whose codes it is fitted to (int, default: {DENSITY_IMAGES})")
    p.add_argument("--select", type=int, default=1, metavar="K", help="selection by the critic: draw K candidates per "
                   "image and keep one with a probability that favours critic values (the encoder's KL) as common "
                   "among real images as among generated ones; 1: none (int, default: 1; see docs/latent.md)")
    p.add_argument("--save-prior", type=Path, metavar="FILE.safetensors", help="also write the density the codes come "
                   "from (not with --prior normal), for --prior FILE")
    add_run_options(p)
    p.set_defaults(run_command=cmd_sample)


def _add_reconstruct(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconstruct", help="reconstruct a folder of images (posterior mean) with a trained run")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--input", type=Path, required=True, help="a folder of images (searched recursively; a top-level "
                   "grid.png is left out), one image, or a .npz/.npy of uint8 images")
    p.add_argument("--out", type=Path, required=True, help="directory for the reconstructions and grid.png")
    add_run_options(p)
    p.set_defaults(run_command=cmd_reconstruct)


def _add_interpolate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interpolate", help="decode a path in latent space between two images or two seeds (Fig. 6), "
                       "or a loop through several, as a strip and an animation",
                       description="Decode the path between the posterior means of images (or the prior codes of "
                       "seeds). With --out X.gif or X.webp it also writes an animation of the closed loop "
                       "A -> B -> ... -> A, and the strip beside it as X.png (one row per leg A -> B, B -> C, ...).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--a", type=Path, help="first image file")
    p.add_argument("--b", type=Path, help="second image file")
    p.add_argument("--seed-a", type=int, help="first seed (instead of --a/--b)")
    p.add_argument("--seed-b", type=int, help="second seed (instead of --a/--b)")
    p.add_argument("--inputs", type=Path, nargs="+", metavar="IMAGE", help="two or more image files: the path visits "
                   "them in order (instead of --a/--b)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S", help="two or more seeds: the path visits their prior "
                   "codes in order (instead of --seed-a/--seed-b)")
    p.add_argument("--steps", type=int, default=8, help="decoded images per leg, ends included (int, default: 8)")
    p.add_argument("--method", choices=("lerp", "slerp"), default="lerp",
                   help="straight line or great circle (default: lerp)")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write, or .gif/.webp for an animation plus "
                   "the strip as the same name with .png")
    add_prior_option(p)
    p.add_argument("--fps", type=float, default=12.0, help="animation frames per second (float, default: 12)")
    p.add_argument("--zoom", type=int, help="animation: each pixel becomes a ZOOM x ZOOM block (int, default: the "
                   "smallest that makes frames at least 128 px)")
    add_run_options(p)
    p.set_defaults(run_command=cmd_interpolate)


def cmd_sample(args: argparse.Namespace) -> int:
    if args.num <= 0:
        raise UserError(f"--num must be positive, got {args.num}.")
    if args.select < 1:
        raise UserError(f"--select must be at least 1 (1: no selection), got {args.select}.")
    if (args.components is not None and args.components <= 0) or args.prior_images <= 0:
        raise UserError(f"--components and --prior-images must be positive, got {args.components} and "
                        f"{args.prior_images}.")
    if args.save_prior is not None:
        output_file(args.save_prior, (".safetensors",), "--save-prior")
        if args.prior == "normal":
            raise UserError("--save-prior writes the density the codes come from, and --prior normal has none: use "
                            "it with --prior run or fitted.")
    model = load_model(args)
    sampler = set_sampler(model, args.prior, args.components, args.prior_images, args.temperature)
    selection = f"; selection by the critic, {args.select} candidates per image" if args.select > 1 else ""
    say(f"sampling {sampler}{selection}")
    images = model.sample(args.num, seed=args.seed, batch_size=args.batch_size, select=args.select)
    out: Path = args.out
    if out.suffix == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, images=to_uint8(images).permute(0, 2, 3, 1).numpy(), seed=np.int64(args.seed))
    elif out.suffix.lower() == ".png":
        save_image(images, out, nrow=8)
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file: give a directory for PNG files, or a path ending in .npz.")
        for i, image in enumerate(images):
            save_image(image, out / f"{i:06d}.png")
        save_image(images[:64], out / "grid.png", nrow=8)
    if args.save_prior is not None and model.density is not None:
        args.save_prior.parent.mkdir(parents=True, exist_ok=True)
        model.density.save(args.save_prior)
    print(f"introvae: wrote {args.num} samples (seed {args.seed}) to {out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    model = load_model(args)
    # As the latent commands read images: a folder (its top-level grid.png, what `sample` writes, left out), one
    # image file, or a .npz/.npy array.
    names, images_u8 = load_named_images(args.input, model.config.dataset.image_size,
                                          model.config.dataset.channels)
    images = to_float(images_u8)
    recs = model.reconstruct(images, batch_size=args.batch_size)
    for name, rec in zip(names, recs):
        save_image(rec, args.out / Path(name).with_suffix(".png"))
    rows = [torch.cat([images[i:i + 8], recs[i:i + 8]]) for i in range(0, min(len(names), 64), 8)]
    save_image(torch.cat(rows), args.out / "grid.png", nrow=min(8, len(names)))
    print(f"introvae: reconstructed {len(names)} images into {args.out} (grid.png: originals above reconstructions)")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    forms = {"--a/--b": args.a is not None or args.b is not None, "--seed-a/--seed-b": args.seed_a is not None
             or args.seed_b is not None, "--inputs": args.inputs is not None, "--seeds": args.seeds is not None}
    if sum(forms.values()) != 1 or (forms["--a/--b"] and (args.a is None or args.b is None)) or (
            forms["--seed-a/--seed-b"] and (args.seed_a is None or args.seed_b is None)):
        raise UserError("give either --a IMAGE and --b IMAGE, --seed-a S and --seed-b S, --inputs IMAGE IMAGE ..., "
                        "or --seeds S S ...")
    files = [args.a, args.b] if forms["--a/--b"] else args.inputs
    seeds = [args.seed_a, args.seed_b] if forms["--seed-a/--seed-b"] else args.seeds
    if len(files or seeds) < 2:
        raise UserError(f"--{'inputs' if files else 'seeds'} needs at least two values to interpolate between.")
    output_file(args.out, (".png", ".jpg", ".jpeg", *ANIMATION_SUFFIXES))
    model = load_model(args)
    if seeds is not None:  # images are encoded; seeds are sampled codes, from the sampler --prior names
        say(f"interpolating between {set_sampler(model, args.prior, temperature=args.temperature)}")
    strip, frames = write_interpolation(model, args.out, files, seeds, args.steps, args.method, args.fps, args.zoom,
                                        args.batch_size)
    if frames:
        print(f"introvae: wrote {args.out} ({frames} frames, a loop through {len(files or seeds)} "
              f"{'images' if files else 'seeds'}) and {strip}")
    else:
        print(f"introvae: wrote {args.out}")
    return 0
