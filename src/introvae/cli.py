"""The command line: a thin layer that parses options, builds a Config and calls the Python API.

    introvae train --data DIR|glyphs|shapes --out RUN_DIR --image-size N --steps N [--preset NAME] [--resume RUN_DIR]
    introvae calibrate --data DIR|glyphs|shapes --image-size N --steps N [--beta B]
    introvae sample RUN_DIR --num N --out DIR|FILE.npz [--seed S] [--batch-size N]
    introvae reconstruct RUN_DIR --input DIR --out DIR
    introvae interpolate RUN_DIR (--a IMAGE --b IMAGE | --seed-a S --seed-b S | --inputs IMAGE... | --seeds S...)
                         --steps K --out FILE.png|FILE.gif|FILE.webp
    introvae attribute RUN_DIR (--with DIR --without DIR [--out FILE] | --labels FILE.csv [--out DIR])
    introvae edit RUN_DIR --input IMAGE|DIR --attribute FILE --strength S... --out FILE.png
    introvae traverse RUN_DIR (--seed S | --input IMAGE) (--dims D... | --pca K) --range LO HI --steps K --out FILE.png
    introvae score RUN_DIR (--data DIR | --inliers DIR --outliers DIR) [--samples K] [--sigma S | --reference R.json]
                   --out FILE.csv
    introvae export RUN_DIR --out FILE.safetensors [--step N]     # then: introvae sample FILE.safetensors ...
    introvae plot RUN_DIR [--out FILE.png]
    introvae check-data DATA [--image-size N]
    introvae evaluate RUN_DIR [--data DIR] [--num-samples N] [--fid-weights PATH] [--out FILE.json]
    introvae evaluate --samples DIR|FILE.npz --reference DIR|FILE.npz [--out FILE.json]
    introvae toy2d --dataset NAME --model NAME --steps N --out DIR [--seed S] [--batch-size N] [--lr LR]
                   [--beta-kl B] [--beta-rec B] [--beta-neg B]
    introvae serve RUN_DIR [--port 8000] [--host 127.0.0.1] [--attribute FILE...]

Training options come from `introvae.config.option_table()`: the config's sections and each registered objective's
own options, with their help texts and defaults. Errors in the user's input print one sentence and exit with
status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .config import PRESETS, Config, OptionSpec, from_preset, option_table
from .errors import UserError
from .rundir import RunDir

GROUP_TITLES = {"data": "data options", "networks": "network options", "objective": "objective",
                "optimisation": "optimisation options", "run": "run directory options"}


def _add_config_options(parser: argparse.ArgumentParser, wanted: Callable[[OptionSpec], bool] | None = None,
                        note: str = "") -> None:
    """The options of `option_table()` (those `wanted` keeps), one argument group per section and objective."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for spec in option_table():
        if wanted is not None and not wanted(spec):
            continue
        title = GROUP_TITLES.get(spec.group, f"{spec.group} options")
        group = groups.setdefault(spec.group, parser.add_argument_group(title))
        flag = "--" + spec.name.replace("_", "-")
        help_text = note or f"{spec.help} ({type(spec.default).__name__}, default: {spec.default})"
        # SUPPRESS: only options the user gave reach the namespace, so a preset or --config fills the rest.
        if isinstance(spec.default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag, type=spec.parse, choices=spec.choices, default=argparse.SUPPRESS,
                               metavar=None if spec.choices else spec.name.upper(), help=help_text)


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = Config.flat_names()
    return {k: v for k, v in vars(args).items() if k in names}


def _base_config(args: argparse.Namespace) -> Config:
    """--config FILE, or --preset NAME, or the defaults: what the options given on the command line override."""
    if getattr(args, "config", None) is not None:
        if getattr(args, "preset", None):
            raise UserError("--config and --preset both give every option: choose one (options given beside it "
                            "still override it).")
        return Config.load(args.config)
    if getattr(args, "preset", None):
        return from_preset(args.preset)
    return Config()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="introvae", description="Introspective variational autoencoders: train, "
                                     "sample, reconstruct and interpolate.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for add_parsers in (_add_train_parsers, _add_inference_parsers, _add_latent_parsers, _add_run_tool_parsers,
                        _add_toy2d_parser, _add_serve_parser):
        add_parsers(sub)
    return parser


def _add_inference_parsers(sub: argparse._SubParsersAction) -> None:
    """sample, reconstruct, interpolate: what a trained run draws and decodes."""
    p = sub.add_parser("sample", help="draw images from a trained run, seeded per image")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory, or a weights file (what "
                   "`introvae export` writes, or a run's checkpoints/model-STEP.safetensors)")
    p.add_argument("--num", type=int, default=64, help="number of images (int, default: 64)")
    p.add_argument("--out", type=Path, required=True,
                   help="a directory for PNG files (with grid.png), or FILE.npz for one uint8 array 'images' (N, H, W, C)")
    p.add_argument("--seed", type=int, default=0, help="image i uses the seed (SEED, i), whatever the batch size (int, default: 0)")
    _add_run_options(p)

    p = sub.add_parser("reconstruct", help="reconstruct a folder of images (posterior mean) with a trained run")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--input", type=Path, required=True, help="a folder of images (searched recursively; a top-level "
                   "grid.png is left out), one image, or a .npz/.npy of uint8 images")
    p.add_argument("--out", type=Path, required=True, help="directory for the reconstructions and grid.png")
    _add_run_options(p)

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
    p.add_argument("--method", choices=("lerp", "slerp"), default="lerp", help="straight line or great circle (default: lerp)")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write, or .gif/.webp for an animation plus "
                   "the strip as the same name with .png")
    p.add_argument("--fps", type=float, default=12.0, help="animation frames per second (float, default: 12)")
    p.add_argument("--zoom", type=int, help="animation: each pixel becomes a ZOOM x ZOOM block (int, default: the "
                   "smallest that makes frames at least 128 px)")
    _add_run_options(p)


def _add_latent_parsers(sub: argparse._SubParsersAction) -> None:
    """attribute, edit, traverse, score: the latent-space tools."""
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
    _add_run_options(p)

    p = sub.add_parser("edit", help="move images along an attribute vector and decode them: a row per image, a "
                       "column per strength")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--input", type=Path, required=True, help="an image file or a folder of images")
    p.add_argument("--attribute", type=Path, required=True, help="an attribute vector written by `introvae attribute`")
    p.add_argument("--strength", type=float, nargs="+", default=[-2.0, -1.0, 0.0, 1.0, 2.0], metavar="S",
                   help="multiples of the vector added to each image's code; 0 is the reconstruction (default: -2 -1 "
                   "0 1 2)")
    p.add_argument("--out", type=Path, required=True, help="PNG grid: the original image, then one column per strength")
    _add_run_options(p)

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
    _add_run_options(p)

    p = sub.add_parser("score", help="out-of-distribution scores of images: -ELBO, importance-weighted -log p(x), "
                       "complexity-corrected and typicality scores; with --inliers/--outliers also AUROC, AUPRC and "
                       "FPR at 95%% TPR",
                       description="Score images under the run's model with a Gaussian decoder N(G(z), sigma^2 I): "
                       "the densities, -log p(x) minus the image's compressed length (PNG, WebP), and how far -log "
                       "p(x) and the encoder's KL lie from their training values on either side (see "
                       "introvae.latent.ood and docs/ood.md). sigma and the training values are fitted once on the "
                       "run's training images (or read with --reference). Writes a CSV of per-image scores and "
                       "OUT.json (the reference, the default score and, with --inliers and --outliers, the detection "
                       "metrics of every score) and with two sets OUT-histogram.png.")
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
                   "score, typicality)")
    p.add_argument("--out", type=Path, required=True, help="CSV file of per-image scores")
    _add_run_options(p)


def _add_run_tool_parsers(sub: argparse._SubParsersAction) -> None:
    """export, plot, check-data, evaluate."""
    p = sub.add_parser("export", help="write one self-describing weights file for inference, with a model card "
                       "README.md beside it", description="Write the encoder and the decoding generator (the EMA "
                       "one when the run keeps it) of a run's checkpoint, with the run's config in the file, so that "
                       "Model.load(FILE) and `introvae sample FILE` work on the file alone.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, required=True, help="FILE.safetensors to write; README.md goes beside it")
    p.add_argument("--step", type=int, help="use the checkpoint of this step (default: the newest)")

    p = sub.add_parser("plot", help="redraw the training dynamics of a run: the panels its objective declares "
                       "(IntroVAE: the KLs against m, and L_AE, like Fig. 5)")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="PNG file (default: RUN_DIR/dynamics.png)")

    p = sub.add_parser("check-data", help="verify a data set (folder, LMDB, .npz/.npy) and report what training would "
                       "skip, without training", description="Open and decode every image of DATA once, as training "
                       "does, and print what is usable, what would be skipped and why, and what would be upscaled. "
                       "Exits with status 2 when fewer than 2 usable images remain.")
    p.add_argument("data", metavar="DATA", help="a folder of images, lmdb:PATH or a folder holding data.mdb, or a "
                   ".npz/.npy file of uint8 images")
    p.add_argument("--image-size", type=int, default=Config().image_size,
                   help=f"training resolution the images are checked for (int, default: {Config().image_size})")

    p = sub.add_parser("evaluate", help="FID, KID, IS, precision/recall, MS-SSIM, SWD and reconstruction errors of a "
                       "run (or of two image sets), offline", description="Evaluate a run against its held-out split "
                       "(or --data), or compare --samples with --reference. Prints a table; writes JSON.")
    p.add_argument("run_dir", type=Path, nargs="?", metavar="RUN_DIR", help="run directory to evaluate, or a weights "
                   "file (what `introvae export` writes)")
    p.add_argument("--samples", type=Path, help="instead of a run: generated images (folder, .npz or .npy)")
    p.add_argument("--reference", type=Path, help="with --samples: real images (folder, .npz or .npy), loaded at "
                   "the samples' size")
    p.add_argument("--data", type=Path, help="with RUN_DIR: compare with all images of this folder instead of the "
                   "run's held-out split")
    p.add_argument("--num-samples", type=int, default=10000, help="images sampled from the run (int, default: 10000; "
                   "the papers' FID uses 50000)")
    p.add_argument("--fid-weights", help="pt_inception-2015-12-05-6726825d.pth (default: $INTROVAE_FID_WEIGHTS, then "
                   "the torch hub cache, then a download when a network is there)")
    p.add_argument("--no-download", action="store_true", help="never try to download the Inception weights")
    p.add_argument("--out", type=Path, help="JSON report (default: RUN_DIR/eval/eval-STEP.json, or eval/eval-NAME.json "
                   "beside a weights file; with --samples: none unless given)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed, also for random pairs, subsets and patches (int, default: 0)")
    p.add_argument("--msssim-pairs", type=int, default=10000, help="random sample pairs for MS-SSIM (int, default: 10000)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (int, default: 100)")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (int, default: 1000)")
    p.add_argument("--pr-k", type=int, default=3, help="k of the k-NN balls of precision/recall (int, default: 3)")
    p.add_argument("--quiet", action="store_true", help="only the table")
    _add_run_options(p)


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """serve: the explorer page."""
    p = sub.add_parser("serve", help="the explorer page: samples, your images, sliders, interpolations and the run's "
                       "plots in a browser", description="Serve a small local web page for looking around a trained "
                       "run (see the README's 'Explorer page'). Answers only to this machine unless --host says "
                       "otherwise; Ctrl-C stops it.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (int, default: 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; anything but a loopback address makes "
                   "the page reachable from other machines (default: 127.0.0.1)")
    p.add_argument("--attribute", type=Path, nargs="+", default=[], metavar="FILE",
                   help="attribute vectors (files or folders of .safetensors) to add to those in RUN_DIR/attributes/")
    p.add_argument("--components", type=int, default=8, help="sliders along this many principal directions of the "
                   "training codes (int, default: 8)")
    p.add_argument("--step", type=int, help="use the checkpoint of this step (default: the newest)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch; 1 answers fastest on a busy "
                   "machine (int, default: 0, torch's choice)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _add_train_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model into a run directory (or resume one)",
                       description="Train a model. Every option below has its type and default in brackets.")
    p.add_argument("--out", type=Path, help="run directory to create (path, required unless --resume)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue this run from its newest checkpoint; only --steps and the logging options may change")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from the paper's settings (options given here still override)")
    p.add_argument("--config", type=Path, metavar="FILE.json", help="start from a config file: what --dry-run prints "
                   "or a run's config.json (options given here still override)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    _add_config_options(p)

    p = sub.add_parser("calibrate", help="run the VAE warm-up (alpha = 0) and propose the margin m (App. D)")
    p.add_argument("--out", type=Path, help="keep the warm-up run in this directory (default: a temporary one)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from the paper's settings")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    _add_config_options(p)


# Options of the 2-D benchmark that are not Config options of their own there (steps and batch default differently).
_TOY2D_OWN = ("model", "steps", "seed", "batch_size")
_TOY2D_CONFIG = ("lr", "warmup_steps", "log_every", "device")


def _add_toy2d_parser(sub: argparse._SubParsersAction) -> None:
    from .data.toy2d import TOY_DATASETS
    from .objectives import OBJECTIVES

    p = sub.add_parser("toy2d", help="train a model on a 2-D data set of Soft-IntroVAE and score it by KL and JSD",
                       description="The 2-D benchmark (introvae.toy2d): MLPs, a fresh batch per step; writes "
                       "samples.png, density.png, metrics.json and log.jsonl. Unset options take the per-model, "
                       "per-data-set defaults each objective declares (from Soft-IntroVAE's published 2-D settings).")
    p.add_argument("--dataset", required=True, choices=TOY_DATASETS, help="2-D data set")
    p.add_argument("--model", required=True, choices=sorted(OBJECTIVES), help="objective to train")
    p.add_argument("--steps", type=int, help="training steps (int, default: 30000)")
    p.add_argument("--out", type=Path, required=True, help="directory to write (must not hold a finished run)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and noise (int, default: 0)")
    p.add_argument("--batch-size", type=int, help="points per step (int, default: 512)")
    p.add_argument("--lr-milestones", type=float, nargs="*", metavar="FRACTION",
                   help="multiply the learning rate by 0.1 at these fractions of the steps; none given: constant "
                   "(default: 1/3 and 1/2, the authors' 10000 and 15000 of 30000)")
    p.add_argument("--eval-points", type=int, default=100_000, help="real and generated points histogrammed for "
                   "KL and JSD (int, default: 100000)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    _add_config_options(p, lambda spec: spec.name not in _TOY2D_OWN and (spec.group in OBJECTIVES
                                                                          or spec.name in _TOY2D_CONFIG))


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass; results do not depend on it (int, default: 64)")
    p.add_argument("--step", type=int, help="use the checkpoint of this step (default: the newest)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")


# ---- commands

def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    overrides = _config_overrides(args)
    if args.resume is not None:
        if args.preset or args.config:
            raise UserError(f"--{'preset' if args.preset else 'config'} cannot be combined with --resume: a resumed "
                            "run keeps its own config.")
        if args.dry_run:  # without this check the run would train
            raise UserError(f"--dry-run prints the config of a new run; a resumed run keeps its own, "
                            f"{args.resume / 'config.json'}.")
        train(resume=args.resume, quiet=args.quiet, **overrides)
        print(f"introvae: finished {args.resume}")
        return 0
    config = _base_config(args).replace(**overrides).validate()
    if args.dry_run:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    run_dir = train(config, out=args.out, quiet=args.quiet)
    print(f"introvae: finished {run_dir}: samples.png, reconstructions.png, interpolation.png, dynamics.png, checkpoints/")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate

    config = _base_config(args).replace(**_config_overrides(args)).validate()
    result = calibrate(config, out=args.out, quiet=args.quiet)
    print(result.report())
    return 0


def _load(args: argparse.Namespace):
    from .model import Model

    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}.")
    return Model.load(args.run_dir, step=args.step, device=args.device)


def cmd_sample(args: argparse.Namespace) -> int:
    from .images import save_image, to_uint8

    if args.num <= 0:
        raise UserError(f"--num must be positive, got {args.num}.")
    model = _load(args)
    images = model.sample(args.num, seed=args.seed, batch_size=args.batch_size)
    out: Path = args.out
    if out.suffix == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, images=to_uint8(images).permute(0, 2, 3, 1).numpy(), seed=np.int64(args.seed))
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file: give a directory for PNG files, or a path ending in .npz.")
        for i, image in enumerate(images):
            save_image(image, out / f"{i:06d}.png")
        save_image(images[:64], out / "grid.png", nrow=8)
    print(f"introvae: wrote {args.num} samples (seed {args.seed}) to {out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .images import save_image, to_float
    from .latent import load_named_images

    model = _load(args)
    # As the latent commands read images: a folder (its top-level grid.png, what `sample` writes, left out), one
    # image file, or a .npz/.npy array.
    names, images_u8 = load_named_images(args.input, model.config.image_size, model.config.channels)
    images = to_float(images_u8)
    recs = model.reconstruct(images, batch_size=args.batch_size)
    for name, rec in zip(names, recs):
        save_image(rec, args.out / Path(name).with_suffix(".png"))
    rows = [torch.cat([images[i:i + 8], recs[i:i + 8]]) for i in range(0, min(len(names), 64), 8)]
    save_image(torch.cat(rows), args.out / "grid.png", nrow=min(8, len(names)))
    print(f"introvae: reconstructed {len(names)} images into {args.out} (grid.png: originals above reconstructions)")
    return 0


def _output_file(path: Path, suffixes: Sequence[str], option: str = "--out") -> Path:
    """Refuse an output path that is a folder or has the wrong suffix before any work is done."""
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder: give a file name ending in {' or '.join(suffixes)}.")
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {path} must end in {' or '.join(suffixes)}.")
    return path


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .images import load_image, save_image, to_float
    from .latent import ANIMATION_SUFFIXES, interpolation_rows, loop_frames, write_animation

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
    out_suffix = _output_file(args.out, (".png", ".jpg", ".jpeg", *ANIMATION_SUFFIXES)).suffix.lower()
    animate = out_suffix in ANIMATION_SUFFIXES
    model = _load(args)
    originals = None
    if files:
        size, channels = model.config.image_size, model.config.channels
        originals = to_float(torch.stack([load_image(p, size, channels) for p in files]))
        codes, prior = model.encode(originals, args.batch_size)[0], False
    else:
        codes, prior = torch.cat([model.latents(1, s) for s in seeds]), True
    # The strip: one row per leg, the originals framing each decoded path.
    rows = interpolation_rows(model, codes, args.steps, args.method, prior, originals, args.batch_size)
    strip = args.out.with_suffix(".png") if animate else args.out
    save_image(torch.cat(rows), strip, nrow=len(rows[0]))
    if animate:
        frames = loop_frames(model, codes, args.steps, args.method, prior, args.batch_size)
        zoom = args.zoom if args.zoom is not None else max(1, -(-128 // model.config.image_size))
        write_animation(frames, args.out, fps=args.fps, zoom=zoom)
        print(f"introvae: wrote {args.out} ({len(frames)} frames, a loop through {len(codes)} "
              f"{'images' if files else 'seeds'}) and {strip}")
    else:
        print(f"introvae: wrote {args.out}")
    return 0


def cmd_attribute(args: argparse.Namespace) -> int:
    from .images import load_image, to_float
    from .latent import (attribute_file_name, attributes_folder, attributes_from_labels, compute_attribute,
                         load_named_images, read_labels_csv)

    pair = args.with_images is not None or args.without_images is not None
    if pair == (args.labels is not None) or (pair and (args.with_images is None or args.without_images is None)):
        raise UserError("give either --with DIR and --without DIR, or --labels FILE.csv.")
    if pair and args.data is not None:
        raise UserError("--data goes with --labels (the folder the CSV's names are relative to); leave it out.")
    if args.labels is not None and args.name is not None:
        raise UserError("--name goes with --with/--without; with --labels each vector is named by its label.")
    model = _load(args)
    size, channels = model.config.image_size, model.config.channels
    # A run's own vectors live in RUN_DIR/attributes/; for a weights file, in attributes/ beside it.
    default_folder = attributes_folder(args.run_dir)
    if pair:
        with_images = load_named_images(args.with_images, size, channels, "--with")[1]
        without_images = load_named_images(args.without_images, size, channels, "--without")[1]
        name = args.name or args.with_images.resolve().name
        vectors = {name: compute_attribute(model, to_float(with_images), to_float(without_images), name,
                                           args.batch_size)}
        folder = args.out if args.out is not None and args.out.is_dir() else default_folder
        paths = {name: folder / attribute_file_name(name) if args.out is None or args.out.is_dir() else args.out}
    else:
        files, labels = read_labels_csv(args.labels, args.data)
        images = to_float(torch.stack([load_image(f, size, channels) for f in files]))
        vectors = attributes_from_labels(model, images, labels, args.batch_size)
        folder = args.out or default_folder
        if folder.exists() and not folder.is_dir():
            raise UserError(f"--out {folder} is a file: with --labels give a folder for one file per label.")
        paths = {name: folder / attribute_file_name(name) for name in vectors}
        if len(set(paths.values())) < len(paths):
            raise UserError(f"--labels {args.labels} has labels that differ only in characters a file name cannot "
                            f"hold; rename them.")
    for name, vector in vectors.items():
        vector.save(paths[name])
        print(f"introvae: attribute {name!r}: {vector.count_with} images with, {vector.count_without} without, "
              f"norm {vector.norm:.3f} -> {paths[name]}")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    from .images import save_image, to_float
    from .latent import AttributeVector, edit_images, load_named_images

    _output_file(args.out, (".png", ".jpg", ".jpeg", ".webp"))
    vector = AttributeVector.load(args.attribute)
    model = _load(args)
    images = to_float(load_named_images(args.input, model.config.image_size, model.config.channels)[1])
    edited = edit_images(model, images, vector, args.strength, args.batch_size)  # (N, S, C, H, W)
    grid = torch.cat([images[:, None], edited], dim=1)
    save_image(grid.flatten(0, 1), args.out, nrow=grid.shape[1])
    print(f"introvae: wrote {args.out}: {len(images)} images (rows) along {vector.name!r} (norm {vector.norm:.3f}); "
          f"columns: the original, then strengths {' '.join(f'{s:g}' for s in args.strength)}")
    return 0


def cmd_traverse(args: argparse.Namespace) -> int:
    from .images import save_image, to_float
    from .latent import axis_directions, load_named_images, principal_directions, training_images, traverse

    if (args.seed is None) == (args.input is None):
        raise UserError("give either --seed S or --input IMAGE as the starting code.")
    if (args.dims is None) == (args.pca is None):
        raise UserError("give either --dims D ... (code axes) or --pca K (principal components).")
    if args.steps < 2:
        raise UserError(f"--steps must be at least 2, got {args.steps}.")
    _output_file(args.out, (".png", ".jpg", ".jpeg", ".webp"))
    model = _load(args)
    if args.input is not None:
        names, image = load_named_images(args.input, model.config.image_size, model.config.channels)
        if len(names) != 1:
            raise UserError(f"--input {args.input} holds {len(names)} images: give one image file.")
        z0, prior = model.encode(to_float(image), args.batch_size)[0][0], False
    else:
        z0, prior = model.latents(1, args.seed)[0], True
    values = torch.linspace(args.range[0], args.range[1], args.steps)
    if args.pca is not None:
        if args.pca_images < 2:
            raise UserError(f"--pca-images must be at least 2, got {args.pca_images}.")
        pca = principal_directions(model, training_images(model.config, args.pca_images), args.pca, args.batch_size)
        directions = pca.components * pca.stddev[:, None]  # so that the values are in units of each stddev
        what = "principal components " + ", ".join(f"{i} ({100 * e:.1f} %)" for i, e in enumerate(pca.explained))
    else:
        directions, what = axis_directions(model.config.latent_dim, args.dims), f"axes {' '.join(map(str, args.dims))}"
    grid = traverse(model, z0, directions, values, prior=prior, batch_size=args.batch_size)
    save_image(grid.flatten(0, 1), args.out, nrow=args.steps)
    print(f"introvae: wrote {args.out}: rows {what}, values {args.range[0]:g} .. {args.range[1]:g}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .latent import DEFAULT_SCORE, SCORE_KEYS, score_sets

    two_sets = args.inliers is not None or args.outliers is not None
    if two_sets == (args.data is not None) or (two_sets and (args.inliers is None or args.outliers is None)):
        raise UserError("give either --data DIR, or --inliers DIR and --outliers DIR.")
    histogram_key = args.histogram_score or DEFAULT_SCORE
    if histogram_key not in SCORE_KEYS:
        raise UserError(f"--histogram-score {histogram_key!r} is not one of {', '.join(SCORE_KEYS)}.")
    if args.sigma is not None and args.reference is not None:
        raise UserError("give --sigma or --reference, not both: the reference carries its sigma.")
    _output_file(args.out, (".csv",))
    reference = _read_reference(args.reference) if args.reference is not None else None
    model = _load(args)
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


def _read_reference(path: Path):
    """The OOD reference stored in a report of `introvae score` (its "reference"), refused in one sentence."""
    from .latent import OODReference

    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"--reference {path} cannot be read ({e.strerror or type(e).__name__}): give the JSON report "
                        f"of an earlier `introvae score`.") from None
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"--reference {path} is not a JSON file: give the JSON report of an earlier `introvae "
                        f"score`.") from None
    return OODReference.from_dict(report.get("reference") if isinstance(report, dict) else None, f"--reference {path}")


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model

    out = export_model(args.run_dir, args.out, step=args.step)
    print(f"introvae: wrote {out} and {out.parent / 'README.md'}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    run = RunDir(args.run_dir)
    if not run.log.exists():
        raise UserError(f"{run.log} does not exist: is {args.run_dir} a run directory written by `introvae train`?")
    out = run.draw_dynamics(args.out)  # the panels and title the trainer draws
    print(f"introvae: wrote {out}")
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from .data import check_data

    print(check_data(args.data, args.image_size).format())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import EvalSettings, evaluate_run, evaluate_sets, format_table, report_path

    two_sets = args.samples is not None or args.reference is not None
    if two_sets == (args.run_dir is not None):
        raise UserError("give either RUN_DIR, or --samples and --reference (not both).")
    if two_sets and (args.samples is None or args.reference is None):
        raise UserError("--samples and --reference go together: give both image sets.")
    if two_sets and (args.data is not None or args.step is not None):
        raise UserError("--data and --step apply to RUN_DIR; with --samples/--reference leave them out.")
    settings = EvalSettings(num_samples=args.num_samples, seed=args.seed, batch_size=args.batch_size,
                            fid_weights=args.fid_weights, download=not args.no_download, device=args.device,
                            msssim_pairs=args.msssim_pairs, kid_subsets=args.kid_subsets,
                            kid_subset_size=args.kid_subset_size, pr_k=args.pr_k).validate()
    if two_sets:
        report = evaluate_sets(args.samples, args.reference, settings, out=args.out, quiet=args.quiet)
        where = args.out
    else:
        report = evaluate_run(args.run_dir, data=args.data, settings=settings, out=args.out, step=args.step,
                              quiet=args.quiet)
        where = args.out or report_path(args.run_dir, report["step"])
    print(format_table(report))
    if where is not None and not args.quiet:
        print(f"introvae: wrote {where}", file=sys.stderr)
    return 0


def cmd_toy2d(args: argparse.Namespace) -> int:
    from .toy2d import train_toy

    overrides = {k: v for k, v in _config_overrides(args).items() if k not in _TOY2D_OWN}
    metrics = train_toy(args.dataset, args.model, args.steps, args.out, seed=args.seed, batch_size=args.batch_size,
                        quiet=args.quiet, eval_points=args.eval_points,
                        **({} if args.lr_milestones is None else {"lr_milestones": tuple(args.lr_milestones)}),
                        **overrides)
    print(f"introvae: {args.dataset} {args.model} after {metrics['steps']} steps: KL {metrics['kl']:.4f}, "
          f"JSD {metrics['jsd']:.4f} nats (two real samples: KL {metrics['floor']['kl']:.4f}, "
          f"JSD {metrics['floor']['jsd']:.4f}); wrote {args.out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be from 0 to 65535, got {args.port}.")
    if args.components < 0:
        raise UserError(f"--components must be 0 or more, got {args.components}.")
    if args.threads < 0:
        raise UserError(f"--threads must be 0 (torch's choice) or more, got {args.threads}.")
    serve(args.run_dir, host=args.host, port=args.port, attribute_files=args.attribute, step=args.step,
          device=args.device, components=args.components, threads=args.threads, quiet=args.quiet)
    return 0


COMMANDS = {"train": cmd_train, "calibrate": cmd_calibrate, "sample": cmd_sample, "reconstruct": cmd_reconstruct,
            "interpolate": cmd_interpolate, "attribute": cmd_attribute, "edit": cmd_edit,
            "traverse": cmd_traverse, "score": cmd_score, "export": cmd_export, "plot": cmd_plot, "evaluate": cmd_evaluate,
            "check-data": cmd_check_data, "toy2d": cmd_toy2d, "serve": cmd_serve}


def _format_warning(message, category, filename, lineno, line=None) -> str:
    # Warnings are for the user (e.g. "these are not the published Inception weights"), not for a debugger.
    return f"introvae: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    args = _build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"introvae: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A file the command reads or writes (an --out in a read-only place, a full disk): the system's reason and
        # the path in one sentence, like every other bad input. Training turns these into UserErrors itself.
        where = f" {error.filename}" if error.filename else ""
        print(f"introvae: error: cannot use{where}: {error.strerror or error}; check the path and the free space.",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
