"""A digest of every model's parameters and training state after 60 fp32 steps on the built-in shapes, trained
straight and trained 30 + resumed 30: the check that a restructuring changed no behaviour (issue 30).

    python scripts/parameters_digest.py [--steps 60] [--models introvae soft-introvae avae vae]

Prints one line per model: the SHA-256 of its parameters and buffers straight, and whether the resumed run's match.
Run it before and after a change, on the same machine; equal digests mean the same numbers bit for bit.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import torch

import introvae
from introvae.objectives import OBJECTIVES


def digest(run: Path) -> str:
    model = introvae.Model.load(run, device="cpu")
    sha = hashlib.sha256()
    for name, tensor in sorted(model.networks.state_dict().items()):
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--models", nargs="+", default=list(OBJECTIVES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    half = args.steps // 2
    same = True
    with tempfile.TemporaryDirectory() as work:
        for name in args.models:
            config = introvae.Config(model=name, data="builtin", builtin_count=96, image_size=16, channels=3,
                                     latent_dim=8, base_channels=8, max_channels=16, batch_size=8, warmup_steps=10,
                                     steps=args.steps, precision="fp32", log_every=10, grid_every=0,
                                     checkpoint_every=half, seed=3)
            straight = introvae.train(config, out=Path(work) / f"{name}-straight", quiet=True)
            resumed = introvae.train(config.replace(steps=half), out=Path(work) / f"{name}-resumed", quiet=True)
            resumed = introvae.train(resume=resumed, steps=args.steps, quiet=True)
            a, b = digest(straight), digest(resumed)
            same &= a == b
            print(f"{name}: {a} straight, {'the same' if a == b else b} resumed")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
