"""introvae export, plot, check-data and evaluate: what is done with a run, or a data set, besides drawing from it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import Config
from ..data import check_data
from ..errors import UserError
from ..evaluate import EvalSettings, evaluate_run, evaluate_sets, format_table, report_path
from ..export import export_model
from ..plot import draw_run_dynamics
from ..rundir import RunDir
from .common import add_prior_option, add_run_options


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _add_export(sub)
    _add_plot(sub)
    _add_check_data(sub)
    _add_evaluate(sub)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write one self-describing weights file for inference, with a model card "
                       "README.md beside it", description="Write the encoder and the decoding generator (the EMA "
                       "one when the run keeps it) of a run's checkpoint, with the run's config in the file, so that "
                       "Model.load(FILE) and `introvae sample FILE` work on the file alone.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, required=True, help="FILE.safetensors to write; README.md goes beside it")
    p.add_argument("--step", type=int, help="use the checkpoint of this step (default: the newest)")
    p.set_defaults(run_command=cmd_export)


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="redraw the training dynamics of a run: the panels its objective declares "
                       "(IntroVAE: the KLs against m, and L_AE, like Fig. 5)")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="PNG file (default: RUN_DIR/dynamics.png)")
    p.set_defaults(run_command=cmd_plot)


def _add_check_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-data", help="verify a data set (folder, LMDB, .npz/.npy) and report what training would "
                       "skip, without training", description="Open and decode every image of DATA once, as training "
                       "does, and print what is usable, what would be skipped and why, and what would be upscaled. "
                       "Exits with status 2 when fewer than 2 usable images remain.")
    p.add_argument("data", metavar="DATA", help="a folder of images, lmdb:PATH or a folder holding data.mdb, or a "
                   ".npz/.npy file of uint8 images")
    p.add_argument("--image-size", type=int, default=Config().dataset.image_size,
                   help=f"training resolution the images are checked for (int, default: {Config().dataset.image_size})")
    p.set_defaults(run_command=cmd_check_data)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--seed", type=int, default=0,
                   help="sampling seed, also for random pairs, subsets and patches (int, default: 0)")
    p.add_argument("--msssim-pairs", type=int, default=10000,
                   help="random sample pairs for MS-SSIM (int, default: 10000)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (int, default: 100)")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (int, default: 1000)")
    p.add_argument("--pr-k", type=int, default=3, help="k of the k-NN balls of precision/recall (int, default: 3)")
    add_prior_option(p)
    p.add_argument("--quiet", action="store_true", help="only the table")
    add_run_options(p)
    p.set_defaults(run_command=cmd_evaluate)


def cmd_export(args: argparse.Namespace) -> int:
    out = export_model(args.run_dir, args.out, step=args.step)
    print(f"introvae: wrote {out} and {out.parent / 'README.md'}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    run = RunDir(args.run_dir)
    if not run.log.exists():
        raise UserError(f"{run.log} does not exist: is {args.run_dir} a run directory written by `introvae train`?")
    out = draw_run_dynamics(run, args.out)  # the panels and title the trainer draws
    print(f"introvae: wrote {out}")
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    print(check_data(args.data, args.image_size).format())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
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
                              quiet=args.quiet, prior=args.prior, temperature=args.temperature)
        where = args.out or report_path(args.run_dir, report["step"])
    print(format_table(report))
    if where is not None and not args.quiet:
        print(f"introvae: wrote {where}", file=sys.stderr)
    return 0
