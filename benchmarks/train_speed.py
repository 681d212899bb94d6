"""Training throughput (images/s) and peak memory of IntroVAE steps at 32x32 and 64x64, for one fixed configuration.

    python benchmarks/train_speed.py [--sizes 32 64] [--steps 10] [--repeats 5] [--device auto] [--out FILE.json]

Each size runs in its own process, so the peak memory of one does not hide in the other's: on CUDA the peak of
allocated GPU memory, on CPU the peak resident set size of the process (which includes Python and torch, reported
separately as the baseline before the networks are built). Throughput is the median over `repeats` timings of
`steps` full IntroVAE steps (encoder and generator updates, warm-up off), after two untimed steps.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from introvae.config import PRESETS

# The built-in preset's networks and objective, with the warm-up off so every timed step is a full IntroVAE step.
CONFIG = {**PRESETS["builtin-32"], "builtin_count": 1024, "test_fraction": 0.0, "grid_every": 0, "checkpoint_every": 0,
          "warmup_steps": 0}
for key in ("image_size", "steps"):  # set per measurement
    CONFIG.pop(key)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(size: int, steps: int, repeats: int, device: str) -> dict:
    import torch

    from introvae import Config
    from introvae.data import open_data
    from introvae.nets import count_parameters
    from introvae.train import Trainer

    baseline = _rss_mib()
    config = Config(image_size=size, channels=3, steps=10**9, device=device, **CONFIG)
    data = open_data("builtin", size, 3, 0.0, 0, builtin_count=CONFIG["builtin_count"])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, Path(run_dir), data, resume=False, quiet=True)
        cuda = trainer.device.type == "cuda"

        def sync():
            if cuda:
                torch.cuda.synchronize()

        for _ in range(2):
            trainer.train_step()
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            sync()
            timings.append(time.perf_counter() - start)
        per_step = statistics.median(timings) / steps
        return {
            "image_size": size,
            "device": str(trainer.device),
            "batch_size": config.batch_size,
            "parameters": count_parameters(trainer.networks),
            "seconds_per_step_median": per_step,
            "images_per_second": config.batch_size / per_step,
            "timings_s": timings,
            "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mib(),
            "memory_kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
            "baseline_rss_mib": baseline,
            "torch_threads": torch.get_num_threads(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--steps", type=int, default=10, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per size; the median is reported")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_speed.json")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.repeats, args.device)))
        return
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(size), "--steps", str(args.steps),
               "--repeats", str(args.repeats), "--device", args.device]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    print(f"{'size':>6} {'device':>8} {'batch':>6} {'params':>10} {'s/step':>8} {'images/s':>9} {'peak MiB':>9} {'base MiB':>9}")
    for r in rows:
        print(f"{r['image_size']:>6} {r['device']:>8} {r['batch_size']:>6} {r['parameters']:>10,} "
              f"{r['seconds_per_step_median']:>8.3f} {r['images_per_second']:>9.1f} {r['peak_memory_mib']:>9.0f} "
              f"{r['baseline_rss_mib']:>9.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": CONFIG, "machine": platform.platform(), "python": platform.python_version(),
                                    "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
