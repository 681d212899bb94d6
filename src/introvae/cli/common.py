"""What the command modules share: the config options of `option_table()`, the config they build, the options of
commands that load a trained run, and the refusal of an output path before any work is done."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import Config, OptionSpec, from_preset, option_table
from ..density import DEFAULT_TEMPERATURE, SMALL_SET
from ..errors import UserError
from ..model import Model

GROUP_TITLES = {"data": "data options", "networks": "network options", "objective": "objective",
                "optimisation": "optimisation options", "run": "run directory options"}


def add_config_options(parser: argparse.ArgumentParser, wanted: Callable[[OptionSpec], bool] | None = None,
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


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config options given on the command line, by their flat names."""
    names = Config.flat_names()
    return {k: v for k, v in vars(args).items() if k in names}


def base_config(args: argparse.Namespace) -> Config:
    """--config FILE, or --preset NAME, or the defaults: what the options given on the command line override."""
    if getattr(args, "config", None) is not None:
        if getattr(args, "preset", None):
            raise UserError("--config and --preset both give every option: choose one (options given beside it "
                            "still override it).")
        return Config.load(args.config)
    if getattr(args, "preset", None):
        return from_preset(args.preset)
    return Config()


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of a command that loads a trained run: read by `load_model`."""
    p.add_argument("--batch-size", type=int, default=64,
                   help="images per forward pass; results do not depend on it (int, default: 64)")
    p.add_argument("--step", type=int, help="use the checkpoint of this step (default: the newest)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")


def load_model(args: argparse.Namespace) -> Model:
    """The model of RUN_DIR at --step on --device (see `add_run_options`)."""
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}.")
    return Model.load(args.run_dir, step=args.step, device=args.device)


def output_file(path: Path, suffixes: Sequence[str], option: str = "--out") -> Path:
    """Refuse an output path that is a folder or has the wrong suffix before any work is done."""
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder: give a file name ending in {' or '.join(suffixes)}.")
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {path} must end in {' or '.join(suffixes)}.")
    return path


PRIOR_HELP = ("where sampled codes come from: the run's code density (run: a Gaussian mixture fitted to the training "
              "images' codes, which training stores with its final checkpoint; for a checkpoint without one it is "
              "fitted on first use and stored), the prior N(0, I) (normal: the papers' sampling), or a density file "
              "written by `introvae sample --save-prior` (FILE)")


def add_prior_option(p: argparse.ArgumentParser, fitted: bool = False) -> None:
    """--prior of a command that samples codes (read by `introvae.latent.set_sampler`); `fitted` adds the choice of
    a density fitted anew."""
    more = (", or a density fitted anew with --components and --prior-images (fitted)" if fitted else "")
    p.add_argument("--prior", default="run", metavar="run|normal|fitted|FILE" if fitted else "run|normal|FILE",
                   help=f"{PRIOR_HELP}{more} (default: run)")
    p.add_argument("--temperature", type=float, metavar="T", help="with a code density: every component's spread "
                   "times T when sampling; below 1 draws nearer the training codes (float, default: the density's "
                   f"own: {DEFAULT_TEMPERATURE:g}, or 1 for one fitted to fewer than {SMALL_SET} training images)")


def say(message: str) -> None:
    """One line of what a command is doing, on stdout beside its "wrote ..." line (stderr is for errors)."""
    print(f"introvae: {message}")
