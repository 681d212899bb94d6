"""Side-by-side quality of every model after the same wall-clock training budget on the built-in shapes at 32x32.

    python benchmarks/quality.py [--budget-s 300] [--models introvae soft-introvae avae vae] [--samples 2000]
                                 [--device auto] [--out benchmarks/results/quality.json]

Each model trains from its preset (builtin-32 for introvae, soft-introvae-32, avae-32, vae-32: the same App. B
networks, latent size 128 and batch 32; each objective with its paper's settings) in its own process for
`--budget-s` seconds, then is evaluated with `introvae.evaluate` on the held-out split (410 images):

* RMSE (0-255), PSNR, SSIM of held-out reconstructions;
* MS-SSIM diversity of samples (the real images' value is the reference point);
* SWD x 1e3 (PGGAN) between samples and held-out images;
* FD-8px: the Frechet distance between Gaussians fitted to the samples and the held-out images after area
  down-sampling to 8x8 (a 192-d feature space). Inception features mean little for flat synthetic shapes and the
  Inception weights are not available offline, so this FID-style distance is defined on the built-in data's own
  scale: at 8x8 it sees colours, sizes and positions of the shapes, not pixel noise. FID is added when the
  Inception weights are found.

A first row, "real (train split)", scores 2000 training images the same way: the floor each metric can reach
with this many images. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {"introvae": "builtin-32", "soft-introvae": "soft-introvae-32", "avae": "avae-32", "vae": "vae-32"}


def fd_8px(samples_u8, reference_u8) -> float:
    import torch.nn.functional as F

    from introvae.images import to_float
    from introvae.metrics.fid import fid

    def features(images):
        return F.interpolate(to_float(images), size=(8, 8), mode="area").flatten(1).double()

    return fid(features(samples_u8), features(reference_u8))


def score(samples_u8, reference_u8, settings) -> dict:
    from introvae.evaluate import FeatureSpace, compare_sets

    features = FeatureSpace(settings)
    metrics, _ = compare_sets(samples_u8, reference_u8, settings, features)
    row = {"ms_ssim": metrics["ms_ssim"]["samples"], "ms_ssim_real": metrics["ms_ssim"]["reference"],
           "swd": metrics["swd"]["mean"], "fd_8px": fd_8px(samples_u8, reference_u8)}
    if "fid" in metrics:
        row["fid"] = metrics["fid"]
    return row


def run_model(model: str, budget_s: float, num_samples: int, device: str) -> dict:
    """Train `model` for `budget_s` seconds of steps, then evaluate it (called in a child process)."""
    import torch

    from introvae import from_preset
    from introvae.data import open_data
    from introvae.evaluate import EvalSettings, generate_samples, reconstruct_set, reconstruction_errors
    from introvae.objectives import learning_rate
    from introvae.train import Trainer

    config = from_preset(MODELS[model], steps=10**9, grid_every=0, checkpoint_every=0, device=device)
    config = config.replace(lr=learning_rate(config), channels=3)
    data = open_data("builtin", config.image_size, 3, config.test_fraction, config.seed, config.builtin_count)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, Path(run_dir), data, resume=False, quiet=True)
        started = time.perf_counter()
        while time.perf_counter() - started < budget_s:
            trainer.train_step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        model_ = trainer.model
        settings = EvalSettings(num_samples=num_samples, device=device)
        reference = data.test.images
        samples = generate_samples(model_, num_samples, seed=0, batch_size=64)
        rec = reconstruction_errors(reference, reconstruct_set(model_, reference, 64))
        row = {"model": model, "preset": MODELS[model], "steps": trainer.step, "train_seconds": round(seconds, 1),
               "images_per_second": trainer.step * config.batch_size / seconds,
               "rmse": rec["rmse"], "psnr": rec["psnr"], "ssim": rec["ssim"], **score(samples, reference, settings)}
    return row


def real_row(num_samples: int) -> dict:
    from introvae.config import PRESETS
    from introvae.data import open_data
    from introvae.evaluate import EvalSettings

    preset = PRESETS["builtin-32"]
    data = open_data("builtin", preset["image_size"], 3, 0.1, 0)
    train_images = data.train.images[:num_samples]
    return {"model": "real (train split)", "steps": 0, **score(train_images, data.test.images,
                                                                EvalSettings(num_samples=num_samples))}


def _format(rows: list[dict]) -> str:
    columns = [("model", "{}"), ("steps", "{}"), ("images_per_second", "{:.1f}"), ("rmse", "{:.2f}"),
               ("psnr", "{:.2f}"), ("ssim", "{:.3f}"), ("ms_ssim", "{:.4f}"), ("swd", "{:.1f}"), ("fd_8px", "{:.3f}"),
               ("fid", "{:.2f}")]
    columns = [(k, f) for k, f in columns if any(k in r for r in rows)]
    header = "| " + " | ".join(k for k, _ in columns) + " |"
    lines = [header, "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(f.format(r[k]) if k in r else "-" for k, f in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-s", type=float, default=300.0, help="training seconds per model (default 300)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--samples", type=int, default=2000, help="samples per model for the metrics (default 2000)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "quality.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: train and evaluate one model
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_model(args.one, args.budget_s, args.samples, args.device)))
        return
    rows = [real_row(args.samples)]
    for model in args.models:
        print(f"training {model} for {args.budget_s:.0f} s ...", file=sys.stderr, flush=True)
        child = subprocess.run([sys.executable, __file__, "--one", model, "--budget-s", str(args.budget_s),
                                "--samples", str(args.samples), "--device", args.device],
                               capture_output=True, text=True, check=True)
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(_format(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    table = _format(rows)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"budget_s": args.budget_s, "samples": args.samples, "platform": platform.platform(),
                                    "python": platform.python_version(), "rows": rows, "table": table}, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
