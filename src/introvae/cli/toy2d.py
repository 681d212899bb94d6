"""introvae toy2d: the 2-D benchmark of Soft-IntroVAE (introvae.toy2d) from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.toy2d import TOY_DATASETS
from ..objectives import OBJECTIVES
from ..toy2d import train_toy
from .common import add_config_options, config_overrides

# Options of the 2-D benchmark that are not Config options of their own there (steps and batch default differently).
_TOY2D_OWN = ("model", "steps", "seed", "batch_size")
_TOY2D_CONFIG = ("lr", "warmup_steps", "log_every", "device")


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    add_config_options(p, lambda spec: spec.name not in _TOY2D_OWN and (spec.group in OBJECTIVES
                                                                         or spec.name in _TOY2D_CONFIG))
    p.set_defaults(run_command=cmd_toy2d)


def cmd_toy2d(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in config_overrides(args).items() if k not in _TOY2D_OWN}
    metrics = train_toy(args.dataset, args.model, args.steps, args.out, seed=args.seed, batch_size=args.batch_size,
                        quiet=args.quiet, eval_points=args.eval_points,
                        **({} if args.lr_milestones is None else {"lr_milestones": tuple(args.lr_milestones)}),
                        **overrides)
    print(f"introvae: {args.dataset} {args.model} after {metrics['steps']} steps: KL {metrics['kl']:.4f}, "
          f"JSD {metrics['jsd']:.4f} nats (two real samples: KL {metrics['floor']['kl']:.4f}, "
          f"JSD {metrics['floor']['jsd']:.4f}); wrote {args.out}")
    return 0
