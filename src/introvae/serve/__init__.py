"""The explorer page of `introvae serve RUN`: a small local web app for looking around a trained model.

    from introvae.serve import Explorer, serve
    serve("runs/x", port=8000)                     # blocks; Ctrl-C stops
    explorer = Explorer.open("runs/x")              # the same computations from Python, no server

The server library (Flask) is imported only when a server or app is made, so `import introvae` and
`import introvae.serve` stay light; it comes with `pip install 'introvae[serve]'`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from ..errors import UserError
from .explorer import Explorer

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.serving import BaseWSGIServer

__all__ = ["Explorer", "create_app", "make_explorer_server", "serve"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # --host values that keep the page on this machine


def _app_module():
    try:
        from . import app
    except ImportError as error:
        if getattr(error, "name", "") in ("flask", "werkzeug"):
            raise UserError("introvae serve needs Flask: install it with pip install 'introvae[serve]' (or pip "
                            "install flask).") from None
        raise
    return app


def create_app(explorer: Explorer, bind_host: str = "127.0.0.1") -> "Flask":
    """The page's Flask app for an opened run (see `introvae.serve.app`)."""
    return _app_module().create_app(explorer, bind_host)


def make_explorer_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8000) -> "BaseWSGIServer":
    """A threaded server for the page, bound to host:port (0: a free port, see `.port`) but not yet serving."""
    return _app_module().make_explorer_server(explorer, host, port)


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, attribute_files: Sequence[str | Path] = (),
          step: int | None = None, device: str = "auto", components: int = 8, threads: int = 0,
          quiet: bool = False, prior: str = "run", temperature: float | None = None) -> None:
    """Open a run and serve its explorer page on http://host:port/ until interrupted (Ctrl-C).

    `threads` > 0 sets torch's CPU threads: a request decodes one small batch, and on a busy machine one thread
    answered 2-45 times faster than two (benchmarks/serve_latency.py; see the README).
    """
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be from 0 to 65535, got {port}.")
    if components < 0:
        raise UserError(f"--components must be 0 or more, got {components}.")
    if threads < 0:
        raise UserError(f"--threads must be 0 (torch's choice) or more, got {threads}.")
    _app_module()  # fail on a missing Flask before the model is loaded
    if threads > 0:
        torch.set_num_threads(threads)
    if not quiet:
        print(f"introvae: opening {run_dir} (principal directions of the training codes, reference scores)",
              file=sys.stderr)
    explorer = Explorer.open(run_dir, attribute_files=attribute_files, step=step, device=device, components=components,
                             prior=prior, temperature=temperature)
    if not quiet:
        print(f"introvae: sampling {explorer.sampler}", file=sys.stderr)
    server = make_explorer_server(explorer, host, port)
    # One line per request would flood the terminal while a slider is dragged; errors still show.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if not quiet:
        shown = f"[{host}]" if ":" in host else host
        print(f"introvae: serving {run_dir} at http://{shown}:{server.port}/ (Ctrl-C stops)", file=sys.stderr)
        if host not in LOOPBACK_HOSTS:
            print(f"introvae: warning: --host {host} makes the page reachable from other machines; anyone who can "
                  f"reach it can use it.", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
