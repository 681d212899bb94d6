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

One module per command group holds its subparsers and the functions they run; each subparser names its function
(`run_command`), so a new command touches its group's module alone. Training options come from
`introvae.config.option_table()` (see `common.add_config_options`): the config's sections and each registered
objective's own options, with their help texts and defaults. Errors in the user's input print one sentence and exit
with status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence

from ..errors import UserError
from . import inference, latent, runs, serve, toy2d, train

# In the order `introvae --help` and docs/cli.md list them.
COMMAND_GROUPS = (train, inference, latent, runs, toy2d, serve)


def build_parser() -> argparse.ArgumentParser:
    """The `introvae` parser: every group's commands, each with the function that runs it as `run_command`."""
    parser = argparse.ArgumentParser(prog="introvae", description="Introspective variational autoencoders: train, "
                                     "sample, reconstruct and interpolate.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_parsers(sub)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    # Warnings are for the user (e.g. "these are not the published Inception weights"), not for a debugger.
    return f"introvae: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    args = build_parser().parse_args(argv)
    try:
        return args.run_command(args)
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
