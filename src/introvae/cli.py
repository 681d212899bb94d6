"""The command line: a thin layer that parses options, builds a Config and calls the Python API.

    introvae train --data DIR|builtin --out RUN_DIR --image-size N --steps N [--preset NAME] [--resume RUN_DIR]
    introvae calibrate --data DIR|builtin --image-size N --steps N [--beta B]
    introvae sample RUN_DIR --num N --out DIR|FILE.npz [--seed S] [--batch-size N]
    introvae reconstruct RUN_DIR --input DIR --out DIR
    introvae interpolate RUN_DIR (--a IMAGE --b IMAGE | --seed-a S --seed-b S) --steps K --out FILE.png
    introvae plot RUN_DIR [--out FILE.png]
    introvae check-data DATA [--image-size N]
    introvae evaluate RUN_DIR [--data DIR] [--num-samples N] [--fid-weights PATH] [--out FILE.json]
    introvae evaluate --samples DIR|FILE.npz --reference DIR|FILE.npz [--out FILE.json]
    introvae toy2d --dataset NAME --model NAME --steps N --out DIR [--seed S] [--batch-size N] [--lr LR]
                   [--beta-kl B] [--beta-rec B] [--beta-neg B]

Training options come from the fields of `introvae.config.Config`, with their help texts and defaults. Errors in the
user's input print one sentence and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .config import PRESETS, Config, from_preset
from .errors import UserError


def _add_config_options(parser: argparse.ArgumentParser, only_groups: Sequence[str] | None = None) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(Config):
        group_name = f.metadata["group"]
        if only_groups is not None and group_name not in only_groups:
            continue
        group = groups.setdefault(group_name, parser.add_argument_group(f"{group_name} options"))
        flag = "--" + f.name.replace("_", "-")
        choices = f.metadata.get("choices")
        help_text = f"{f.metadata['help']} ({type(f.default).__name__}, default: {f.default})"
        # SUPPRESS: only options the user gave reach the namespace, so a preset fills the rest.
        if isinstance(f.default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parse = f.metadata.get("parse") or type(f.default)
            group.add_argument(flag, type=parse, choices=choices, default=argparse.SUPPRESS,
                               metavar=None if choices else f.name.upper(), help=help_text)


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(Config)}
    return {k: v for k, v in vars(args).items() if k in names}


def _base_config(args: argparse.Namespace) -> Config:
    if getattr(args, "preset", None):
        return from_preset(args.preset)
    return Config()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="introvae", description="Introspective variational autoencoders: train, "
                                     "sample, reconstruct and interpolate.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model into a run directory (or resume one)",
                       description="Train a model. Every option below has its type and default in brackets.")
    p.add_argument("--out", type=Path, help="run directory to create (path, required unless --resume)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue this run from its newest checkpoint; only --steps and the logging options may change")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from the paper's settings (options given here still override)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    _add_config_options(p)

    p = sub.add_parser("calibrate", help="run the VAE warm-up (alpha = 0) and propose the margin m (App. D)")
    p.add_argument("--out", type=Path, help="keep the warm-up run in this directory (default: a temporary one)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from the paper's settings")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    _add_config_options(p)

    p = sub.add_parser("sample", help="draw images from a trained run, seeded per image")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--num", type=int, default=64, help="number of images (int, default: 64)")
    p.add_argument("--out", type=Path, required=True,
                   help="a directory for PNG files (with grid.png), or FILE.npz for one uint8 array 'images' (N, H, W, C)")
    p.add_argument("--seed", type=int, default=0, help="image i uses the seed (SEED, i), whatever the batch size (int, default: 0)")
    _add_run_options(p)

    p = sub.add_parser("reconstruct", help="reconstruct a folder of images (posterior mean) with a trained run")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--input", type=Path, required=True, help="folder of images (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="directory for the reconstructions and grid.png")
    _add_run_options(p)

    p = sub.add_parser("interpolate", help="decode a path in latent space between two images or two seeds (Fig. 6)")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--a", type=Path, help="first image file")
    p.add_argument("--b", type=Path, help="second image file")
    p.add_argument("--seed-a", type=int, help="first seed (instead of --a/--b)")
    p.add_argument("--seed-b", type=int, help="second seed (instead of --a/--b)")
    p.add_argument("--steps", type=int, default=8, help="number of decoded images, ends included (int, default: 8)")
    p.add_argument("--method", choices=("lerp", "slerp"), default="lerp", help="straight line or great circle (default: lerp)")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    _add_run_options(p)

    p = sub.add_parser("plot", help="draw the training dynamics (the KLs against m, and L_AE) of a run, like Fig. 5")
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
    p.add_argument("run_dir", type=Path, nargs="?", metavar="RUN_DIR", help="run directory to evaluate")
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
    p.add_argument("--out", type=Path, help="JSON report (default: RUN_DIR/eval/eval-STEP.json; with --samples: "
                   "none unless given)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed, also for random pairs, subsets and patches (int, default: 0)")
    p.add_argument("--msssim-pairs", type=int, default=10000, help="random sample pairs for MS-SSIM (int, default: 10000)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (int, default: 100)")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (int, default: 1000)")
    p.add_argument("--pr-k", type=int, default=3, help="k of the k-NN balls of precision/recall (int, default: 3)")
    p.add_argument("--quiet", action="store_true", help="only the table")
    _add_run_options(p)

    from .data.toy2d import TOY_DATASETS
    from .objectives import OBJECTIVES

    p = sub.add_parser("toy2d", help="train a model on a 2-D data set of Soft-IntroVAE and score it by KL and JSD",
                       description="The 2-D benchmark (introvae.toy2d): MLPs, a fresh batch per step; writes "
                       "samples.png, density.png, metrics.json and log.jsonl. Unset options take the per-model, "
                       "per-data-set defaults of introvae.toy2d (Soft-IntroVAE's published 2-D settings).")
    p.add_argument("--dataset", required=True, choices=TOY_DATASETS, help="2-D data set")
    p.add_argument("--model", required=True, choices=sorted(OBJECTIVES), help="objective to train")
    p.add_argument("--steps", type=int, help="training steps (int, default: 30000)")
    p.add_argument("--out", type=Path, required=True, help="directory to write (must not hold a finished run)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and noise (int, default: 0)")
    p.add_argument("--batch-size", type=int, help="points per step (int, default: 512)")
    p.add_argument("--lr-milestones", type=float, nargs="*", metavar="FRACTION",
                   help="multiply the learning rate by 0.1 at these fractions of the steps; none given: constant "
                   "(default: 1/3 and 1/2, the authors' 10000 and 15000 of 30000)")
    for flag, kind, text in (("--lr", float, "Adam learning rate (default: the model's)"),
                             ("--beta-kl", float, "weight of the KL of real points"),
                             ("--beta-rec", float, "soft-introvae: weight of the reconstruction error"),
                             ("--beta-neg", float, "soft-introvae: weight of the KL of generated points"),
                             ("--gamma-r", float, "soft-introvae: weight of the generated points' reconstruction"),
                             ("--margin", float, "introvae: margin m"), ("--alpha", float, "introvae: alpha"),
                             ("--beta", float, "introvae and vae: weight of the reconstruction error"),
                             ("--warmup-steps", int, "steps of plain VAE training first (default: 1/15 of the steps)"),
                             ("--log-every", int, "write losses to log.jsonl every N steps (default: 100)"),
                             ("--device", str, "auto, cpu, cuda or cuda:N (default: auto)")):
        p.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=f"{text} (per-data-set default when unset)")
    p.add_argument("--eval-points", type=int, default=100_000, help="real and generated points histogrammed for "
                   "KL and JSD (int, default: 100000)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass; results do not depend on it (int, default: 64)")
    p.add_argument("--step", type=int, help="use the checkpoint of this step (default: the newest)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")


# ---- commands

def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    overrides = _config_overrides(args)
    if args.resume is not None:
        if args.preset:
            raise UserError("--preset cannot be combined with --resume: a resumed run keeps its own config.")
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
    from .data import scan_folder
    from .images import load_image, save_image, to_float

    model = _load(args)
    files = scan_folder(args.input)
    size, channels = model.config.image_size, model.config.channels
    images = to_float(torch.stack([load_image(f, size, channels) for f in files]))
    recs = model.reconstruct(images, batch_size=args.batch_size)
    for f, rec in zip(files, recs):
        save_image(rec, args.out / f.relative_to(args.input).with_suffix(".png"))
    rows = [torch.cat([images[i:i + 8], recs[i:i + 8]]) for i in range(0, min(len(files), 64), 8)]
    save_image(torch.cat(rows), args.out / "grid.png", nrow=min(8, len(files)))
    print(f"introvae: reconstructed {len(files)} images into {args.out} (grid.png: originals above reconstructions)")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .images import load_image, save_image, to_float

    use_images = args.a is not None or args.b is not None
    use_seeds = args.seed_a is not None or args.seed_b is not None
    if use_images == use_seeds or (use_images and (args.a is None or args.b is None)) or (
            use_seeds and (args.seed_a is None or args.seed_b is None)):
        raise UserError("give either --a IMAGE and --b IMAGE, or --seed-a S and --seed-b S.")
    model = _load(args)
    if use_images:
        size, channels = model.config.image_size, model.config.channels
        a, b = (to_float(load_image(p, size, channels)) for p in (args.a, args.b))
        path = model.interpolate(a, b, args.steps, args.method)
        row = torch.cat([a[None], path, b[None]])  # the originals frame the decoded path
    else:
        row = model.interpolate_seeds(args.seed_a, args.seed_b, args.steps, args.method)
    save_image(row, args.out, nrow=len(row))
    print(f"introvae: wrote {args.out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot_dynamics, read_log

    log = args.run_dir / "log.jsonl"
    if not log.exists():
        raise UserError(f"{log} does not exist: is {args.run_dir} a run directory written by `introvae train`?")
    out = args.out or args.run_dir / "dynamics.png"
    plot_dynamics(read_log(log), out, title=args.run_dir.name)
    print(f"introvae: wrote {out}")
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from .data import check_data

    print(check_data(args.data, args.image_size).format())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import EvalSettings, evaluate_run, evaluate_sets, format_table

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
        where = args.out or args.run_dir / "eval" / f"eval-{report['step']:08d}.json"
    print(format_table(report))
    if where is not None and not args.quiet:
        print(f"introvae: wrote {where}", file=sys.stderr)
    return 0


def cmd_toy2d(args: argparse.Namespace) -> int:
    from .toy2d import train_toy

    options = ("lr", "beta_kl", "beta_rec", "beta_neg", "gamma_r", "margin", "alpha", "beta", "warmup_steps",
               "log_every", "device")
    overrides = {name: getattr(args, name) for name in options if hasattr(args, name)}
    metrics = train_toy(args.dataset, args.model, args.steps, args.out, seed=args.seed, batch_size=args.batch_size,
                        quiet=args.quiet, eval_points=args.eval_points,
                        **({} if args.lr_milestones is None else {"lr_milestones": tuple(args.lr_milestones)}),
                        **overrides)
    print(f"introvae: {args.dataset} {args.model} after {metrics['steps']} steps: KL {metrics['kl']:.4f}, "
          f"JSD {metrics['jsd']:.4f} nats (two real samples: KL {metrics['floor']['kl']:.4f}, "
          f"JSD {metrics['floor']['jsd']:.4f}); wrote {args.out}")
    return 0


COMMANDS = {"train": cmd_train, "calibrate": cmd_calibrate, "sample": cmd_sample, "reconstruct": cmd_reconstruct,
            "interpolate": cmd_interpolate, "plot": cmd_plot, "evaluate": cmd_evaluate,
            "check-data": cmd_check_data, "toy2d": cmd_toy2d}


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


if __name__ == "__main__":
    sys.exit(main())
