"""introvae train and introvae calibrate: a config from the options, a preset or a file, then the trainer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..calibrate import calibrate
from ..config import PRESETS
from ..errors import UserError
from ..train import train
from .common import add_config_options, base_config, config_overrides


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model into a run directory (or resume one)",
                       description="Train a model. Every option below has its type and default in brackets.")
    p.add_argument("--out", type=Path, help="run directory to create (path, required unless --resume)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue this run from its newest checkpoint; only --steps and the logging options may change")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="start from the paper's settings (options given here still override)")
    p.add_argument("--config", type=Path, metavar="FILE.json", help="start from a config file: what --dry-run prints "
                   "or a run's config.json (options given here still override)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_config_options(p)
    p.set_defaults(run_command=cmd_train)

    p = sub.add_parser("calibrate", help="run the VAE warm-up (alpha = 0) and propose the margin m (App. D)")
    p.add_argument("--out", type=Path, help="keep the warm-up run in this directory (default: a temporary one)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from the paper's settings")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_config_options(p)
    p.set_defaults(run_command=cmd_calibrate)


def cmd_train(args: argparse.Namespace) -> int:
    overrides = config_overrides(args)
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
    config = base_config(args).replace(**overrides).validate()
    if args.dry_run:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    run_dir = train(config, out=args.out, quiet=args.quiet)
    print(f"introvae: finished {run_dir}: samples.png, reconstructions.png, interpolation.png, dynamics.png, "
          "checkpoints/")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    config = base_config(args).replace(**config_overrides(args)).validate()
    result = calibrate(config, out=args.out, quiet=args.quiet)
    print(result.report())
    return 0
