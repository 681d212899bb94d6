"""Inference speed, eager against torch.compile: the encoder and the generator as `sample`, `score` and `evaluate` run
them (eval mode, no gradients, fp32, chunks of 64 images).

    python benchmarks/inference_speed.py [--sizes 32 64] [--batch 64] [--repeats 7] [--out FILE.json]

For each image size one network pair (App. B, base 64, max 256, z 128, the train_speed.py networks) is timed eagerly
and compiled (inductor, static shapes), interleaved repeat by repeat; the first compiled call's time is the compile
cost, and the break-even count is the number of images after which compiling has paid for itself. It measures
whether the inference commands should compile (docs/performance.md, "Compiled training").
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path

import torch

NETWORK = {"channels": 3, "latent_dim": 128, "base_channels": 64, "max_channels": 256}


def measure(size: int, batch: int, repeats: int) -> list[dict]:
    from introvae import Config
    from introvae.model import Model

    networks = Model.build(Config(image_size=size, **NETWORK)).networks.eval()
    inputs = {"generator": torch.randn(batch, NETWORK["latent_dim"]),
              "encoder": torch.rand(batch, NETWORK["channels"], size, size)}
    rows = []
    for name, x in inputs.items():
        eager = networks[name]
        compiled = torch.compile(copy.deepcopy(eager), dynamic=False)
        with torch.no_grad():
            start = time.perf_counter()
            compiled(x)
            first_call = time.perf_counter() - start
            eager(x)
            timings: dict[str, list[float]] = {"eager": [], "compiled": []}
            for _ in range(repeats):
                for kind, network in (("eager", eager), ("compiled", compiled)):
                    start = time.perf_counter()
                    network(x)
                    timings[kind].append(time.perf_counter() - start)
        per_batch = {kind: statistics.median(t) for kind, t in timings.items()}
        saved = per_batch["eager"] - per_batch["compiled"]
        cost = first_call - per_batch["compiled"]
        rows.append({"network": name, "image_size": size, "batch": batch, "eager_s": per_batch["eager"],
                     "compiled_s": per_batch["compiled"], "speed_vs_eager": per_batch["eager"] / per_batch["compiled"],
                     "compile_s": cost, "break_even_images": math.ceil(cost / saved) * batch if saved > 0 else None,
                     "timings_s": timings})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch", type=int, default=64, help="images per call (the inference commands' chunk)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "inference_speed.json")
    args = parser.parse_args()
    rows = [row for size in args.sizes for row in measure(size, args.batch, args.repeats)]
    print(f"{'network':>10} {'size':>5} {'eager ms':>9} {'compiled ms':>12} {'x eager':>8} {'compile s':>10} "
          f"{'break-even images':>18}")
    for row in rows:
        even = row["break_even_images"]
        print(f"{row['network']:>10} {row['image_size']:>5} {1000 * row['eager_s']:>9.1f} "
              f"{1000 * row['compiled_s']:>12.1f} {row['speed_vs_eager']:>8.2f} {row['compile_s']:>10.1f} "
              f"{even if even is not None else 'never':>18}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                                    "batch": args.batch, "repeats": args.repeats, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
