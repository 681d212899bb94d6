"""introvae serve: the explorer page of introvae.serve."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..serve import serve
from .common import add_prior_option


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    add_prior_option(p)
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(run_command=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    serve(args.run_dir, host=args.host, port=args.port, attribute_files=args.attribute, step=args.step,
          device=args.device, components=args.components, threads=args.threads, quiet=args.quiet, prior=args.prior,
          temperature=args.temperature)
    return 0
