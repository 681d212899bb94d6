"""Which out-of-distribution score flags which outliers: every score of `introvae score`, for a VAE and an IntroVAE of
the same networks trained on the same in-distribution images.

    python benchmarks/ood.py [--data glyphs] [--steps 3000] [--vae-run DIR] [--introvae-run DIR] [--count 300]
                             [--samples 16] [--train-only] [--out benchmarks/results/ood-glyphs.json]

Models. Without `--vae-run`/`--introvae-run` it trains both with the library API (`introvae.train`): the demo's
networks and settings (`builtin-32`, IntroVAE) and its VAE baseline (`vae-32`: the same networks, beta and learning
rate without the game), on `--data` (default: the glyph digits, gray) for `--steps` steps each, into
benchmarks/results/ood-runs/ (a run there that already reached the steps is reused). Give run directories to score
better-trained models instead.

Sets, `--count` images each at the model's size and channels (gray <-> RGB converted by luma / repetition):
inliers, the held-out test split of the run's data; outliers, uniform noise; flat images, a constant colour (gray for
a gray model) plus Gaussian noise of standard deviation 2/255; crops of photographs (benchmarks/photos.py); the
coloured shapes (`make_shapes`); and, for a model of glyph digits, glyph capital letters (near out-of-distribution:
the same fonts and strokes, other classes).

Figures: AUROC, AUPRC and FPR at 95 % TPR of every score (outliers the positives), the reference (sigma and the
training statistics) fitted once per model, and the scoring speed in images/s with and without the compressors (the
complexity scores' own time, measured apart). It prints a table, writes the JSON and a markdown table (the same name,
.md) for docs/ood.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/photos.py, when run from anywhere

RESULTS = Path(__file__).parent / "results"
MODELS = {"vae": "vae-32", "introvae": "builtin-32"}  # the presets: the same networks, with and without the game
FLAT_NOISE = 2 / 255  # the slight noise on the flat images, in [0, 1] units


def _cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent)
    return result.stdout.strip() or "unknown"


def train_run(model: str, data: str, steps: int, runs_dir: Path) -> Path:
    """The run of `model` (a key of MODELS) on `data` for `steps` steps under runs_dir, trained unless it is there."""
    import introvae
    from introvae.checkpoint import latest_step
    from introvae.config import from_preset

    name = data.replace(":", "-").replace("/", "-")
    run_dir = runs_dir / f"{model}-{name}-{steps}"
    if run_dir.is_dir() and latest_step(run_dir) == steps:
        return run_dir
    config = from_preset(MODELS[model], data=data, steps=steps, grid_every=0)
    started = time.perf_counter()
    introvae.train(config, out=run_dir, resume=run_dir if run_dir.is_dir() else None, quiet=True)
    print(f"trained {model} on {data}: {steps} steps in {time.perf_counter() - started:.0f} s -> {run_dir}")
    return run_dir


def _to_model(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, S, S) with C in (1, 3) -> `channels` channels: gray by luma (ITU-R 601), RGB by repetition."""
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.repeat(1, 3, 1, 1)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images.float() * luma).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def outlier_sets(data: str, size: int, channels: int, count: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The outlier sets (uint8, (count, channels, size, size)), each from its own seeded generator."""
    from photos import photos_npz

    from introvae.data import load_image_set, make_shapes

    generator = torch.Generator().manual_seed(seed)
    noise = (torch.rand(count, channels, size, size, generator=generator) * 256).floor().clamp(max=255)
    colours = torch.rand(count, channels, 1, 1, generator=generator)
    if channels == 3:
        colours[: count // 4] = colours[: count // 4, :1]  # a quarter of them gray, like a blank page or a wall
    flat = colours + FLAT_NOISE * torch.randn(count, channels, size, size, generator=generator)
    sets = {
        "noise": noise.to(torch.uint8),
        "flat": (flat.clamp(0, 1) * 255).round().to(torch.uint8),
        "photos": _to_model(load_image_set(photos_npz(size), size, 3)[:count], channels),
        "shapes": _to_model(make_shapes(count, size, 3, seed=seed + 99), channels),
    }
    if data in ("glyphs", "glyphs:digits"):  # letters are near outliers of a model of digits
        from introvae.data import make_glyphs

        sets["letters"] = _to_model(make_glyphs(count, size, 1, mode="letters"), channels)
    return sets


def inlier_set(run_dir: Path, count: int) -> torch.Tensor:
    """`count` evenly spaced images of the run's held-out test split."""
    from introvae import Model
    from introvae.data import open_data

    config = Model.load(run_dir, device="cpu").config
    data = open_data(config.data, config.image_size, config.channels, config.test_fraction, config.seed,
                     config.builtin_count)
    total = len(data.test)
    chosen = torch.linspace(0, total - 1, min(count, total)).round().long().unique()
    return data.test.get(chosen.tolist())


def measure(run_dir: Path, data: str, count: int, samples: int, seed: int) -> dict:
    """Scores and detection metrics of one run on the inliers and every outlier set, and the scoring speed."""
    from introvae import Model
    from introvae.images import to_float
    from introvae.latent import (COMPRESSORS, SCORE_KEYS, compressed_bits_per_dim, decoder_sigma, detection_metrics,
                                 fit_reference, score_images)

    model = Model.load(run_dir, device="cpu")
    size, channels = model.config.image_size, model.config.channels
    started = time.perf_counter()
    reference = fit_reference(model, samples=samples, seed=seed)
    reference_s = time.perf_counter() - started
    started = time.perf_counter()
    decoder_sigma(model)  # what `score` fitted before the reference existed: sigma alone, on 1024 training images
    sigma_alone_s = time.perf_counter() - started
    sets = {"inliers": inlier_set(run_dir, count), **outlier_sets(data, size, channels, count, seed)}
    scores, seconds, images_scored = {}, 0.0, 0
    for name, images in sets.items():
        started = time.perf_counter()
        scores[name] = score_images(model, to_float(images), samples, seed, reference=reference)
        seconds += time.perf_counter() - started
        images_scored += len(images)
    started = time.perf_counter()
    for images in sets.values():
        for compressor in COMPRESSORS:
            compressed_bits_per_dim(images, compressor)
    compress_s = time.perf_counter() - started
    metrics = {name: {key: detection_metrics(scores["inliers"][key], scores[name][key]) for key in SCORE_KEYS}
               for name in sets if name != "inliers"}
    means = {name: {key: float(np.mean(values)) for key, values in set_scores.items()}
             for name, set_scores in scores.items()}
    return {"run": str(run_dir), "model": model.config.model, "steps": model.config.steps,
            "image_size": size, "channels": channels, "reference": reference.to_dict(), "reference_s": reference_s,
            "sigma_alone_s": sigma_alone_s,
            "sets": {name: len(images) for name, images in sets.items()}, "metrics": metrics, "means": means,
            "images_per_s": images_scored / seconds,
            "images_per_s_without_compressors": images_scored / max(seconds - compress_s, 1e-9),
            "compressors_s": compress_s, "images_scored": images_scored}


def markdown_table(results: dict[str, dict], figure: str = "auroc") -> str:
    """One row per (model, score), one column per outlier set, `figure` in each cell."""
    from introvae.latent import SCORE_KEYS

    first = next(iter(results.values()))
    outliers = list(first["metrics"])
    lines = [f"| model | score | {' | '.join(outliers)} |", "| --- | --- |" + " --- |" * len(outliers)]
    for model, result in results.items():
        for key in SCORE_KEYS:
            cells = [f"{result['metrics'][name][key][figure]:.3f}" for name in outliers]
            lines.append(f"| {model} | `{key}` | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="glyphs", help="the in-distribution data the models train on (default: "
                        "glyphs, the digits; builtin: the coloured shapes)")
    parser.add_argument("--steps", type=int, default=3000, help="training steps of each model (default: 3000)")
    parser.add_argument("--vae-run", type=Path, help="score this VAE run instead of training one")
    parser.add_argument("--introvae-run", type=Path, help="score this IntroVAE run instead of training one")
    parser.add_argument("--count", type=int, default=300, help="images per set (default: 300)")
    parser.add_argument("--samples", type=int, default=16, help="posterior samples K per image (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the outlier sets and posterior samples")
    parser.add_argument("--train-only", action="store_true", help="train (or find) the runs and stop")
    parser.add_argument("--runs-dir", type=Path, default=RESULTS / "ood-runs", help="where trained runs go")
    parser.add_argument("--out", type=Path, help="JSON to write (default: benchmarks/results/ood-DATA.json)")
    args = parser.parse_args()
    if args.count < 2 or args.samples < 1 or args.steps < 1:
        parser.error("--count must be at least 2, --samples and --steps at least 1")
    runs = {"vae": args.vae_run, "introvae": args.introvae_run}
    for model, run_dir in runs.items():
        if run_dir is None:
            runs[model] = train_run(model, args.data, args.steps, args.runs_dir)
        elif not run_dir.exists():
            parser.error(f"--{model}-run {run_dir} does not exist")
    if args.train_only:
        return 0
    results = {model: measure(run_dir, args.data, args.count, args.samples, args.seed)
               for model, run_dir in runs.items()}
    from introvae.latent import DEFAULT_SCORE

    out = args.out or RESULTS / f"ood-{args.data.replace(':', '-').replace('/', '-')}.json"
    report = {"command": " ".join(["python", "benchmarks/ood.py", *sys.argv[1:]]), "commit": _commit(),
              "cpu": _cpu_name(), "torch": torch.__version__, "data": args.data, "count": args.count,
              "samples": args.samples, "seed": args.seed, "default": DEFAULT_SCORE, "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    tables = [f"### {figure}\n\n{markdown_table(results, figure)}" for figure in ("auroc", "auprc", "fpr_at_95_tpr")]
    speed = "\n".join(f"- {model}: {r['images_per_s']:.1f} images/s with the compressors, "
                      f"{r['images_per_s_without_compressors']:.1f} without ({r['compressors_s']:.2f} s of "
                      f"compression for {r['images_scored']} images); reference fitted in {r['reference_s']:.1f} s "
                      f"on {r['reference']['images']} training images (sigma {r['reference']['sigma']:.4g}), against "
                      f"{r['sigma_alone_s']:.1f} s for sigma alone on 1024 as before"
                      for model, r in results.items())
    out.with_suffix(".md").write_text(f"`{report['command']}` at {report['commit']}, {report['cpu']}, K = "
                                      f"{args.samples}, {args.count} images per set\n\n" + "\n".join(tables) +
                                      f"\n### speed\n\n{speed}\n")
    print(tables[0])
    print(speed)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
