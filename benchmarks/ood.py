"""Which out-of-distribution score flags which outliers, far and near: every score of `introvae score`, for a VAE and
an IntroVAE of the same networks trained on the same in-distribution images.

    python benchmarks/ood.py [--data glyphs] [--steps N] [--train-seeds 0 1] [--vae-run DIR] [--introvae-run DIR]
                             [--count 300] [--samples 16] [--train-only] [--out benchmarks/results/ood-glyphs.json]

Models. Without `--vae-run`/`--introvae-run` it trains both with the library API (`introvae.train`), once per
training seed of `--train-seeds`: on the glyph digits (the default `--data`, gray) the demo's presets `glyphs-32`
(IntroVAE) and `vae-glyphs-32` (its baseline: the same networks, code size, beta and learning rate without the game),
on other data `builtin-32` and `vae-32`; each for its preset's steps unless `--steps` is given, into
benchmarks/results/ood-runs/ (a run there that already reached the steps is reused). Give run directories to score
better-trained models instead.

Sets, `--count` images each at the model's size and channels (gray <-> RGB converted by luma / repetition):
inliers, the held-out test split of the run's data. Far outliers: uniform noise; flat images, a constant colour (gray
for a gray model) plus Gaussian noise of standard deviation 2/255; crops of photographs (benchmarks/photos.py, which
needs scikit-image: `pip install introvae[bench]`); the coloured shapes (`make_shapes`); and, for a model of glyph
digits, glyph capital letters (the same fonts and strokes, other classes). Near outliers, made from the inliers
themselves (`near_outlier_sets`): Gaussian blur of 1 and 1.5 px, contrast halved, brightness raised by 32 levels, a
shift by 4 px, Gaussian noise of 8 levels, JPEG at quality 20.

Figures: AUROC, AUPRC and FPR at 95 % TPR of every score (outliers the positives), the reference (sigma and the
training statistics) fitted once per model, and the scoring speed in images/s with and without the compressors (the
complexity scores' own time, measured apart). With several training seeds the tables give the mean over the seeds
and +- half their range. It prints the AUROC tables, writes the JSON, the per-image scores (.npz) and a markdown table
(the same name, .md) for docs/ood.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/photos.py, when run from anywhere

RESULTS = Path(__file__).parent / "results"
# The presets of each data set: the same networks, code size and beta, with and without the game.
MODELS = {"glyphs": {"vae": "vae-glyphs-32", "introvae": "glyphs-32"},
          "other": {"vae": "vae-32", "introvae": "builtin-32"}}
FLAT_NOISE = 2 / 255  # the slight noise on the flat images, in [0, 1] units


def _commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent)
    return result.stdout.strip() or "unknown"


def preset_of(model: str, data: str) -> str:
    """The preset that `model` ("vae" or "introvae") trains with on `data`."""
    return MODELS["glyphs" if data in ("glyphs", "glyphs:digits") else "other"][model]


def train_run(model: str, data: str, steps: int | None, runs_dir: Path, seed: int = 0) -> Path:
    """The run of `model` ("vae" or "introvae") on `data` for `steps` steps (None: its preset's) with training seed
    `seed` under runs_dir, trained unless it is there."""
    import introvae
    from introvae.config import PRESETS, from_preset
    from introvae.rundir import RunDir

    preset = preset_of(model, data)
    steps = steps or PRESETS[preset]["steps"]
    name = data.replace(":", "-").replace("/", "-")
    run_dir = runs_dir / (f"{model}-{name}-{steps}" + (f"-seed{seed}" if seed else ""))
    if run_dir.is_dir() and RunDir(run_dir).latest_step() == steps:
        return run_dir
    config = from_preset(preset, data=data, steps=steps, grid_every=0, seed=seed)
    started = time.perf_counter()
    introvae.train(config, out=run_dir, resume=run_dir if run_dir.is_dir() else None, quiet=True)
    print(f"trained {model} ({preset}) on {data}: {steps} steps, seed {seed}, in "
          f"{time.perf_counter() - started:.0f} s -> {run_dir}")
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


# The near outliers: held-out inliers changed the way a capture or processing pipeline changes images. Strengths are in
# [0, 1] units or pixels; "faint" ones are changes a person barely notices on a 32 px glyph.
BLUR_SIGMAS = (1.0, 1.5)  # Gaussian blur, standard deviation in pixels: a slightly and a clearly out-of-focus image
BRIGHTNESS_SHIFT = 32 / 255  # added to every pixel (then clipped): an over-exposed scan
SHIFT_PIXELS = 4  # the whole image moved by 4 px (right, down, left or up by image index), the edge repeated
NOISE_SIGMA = 8 / 255  # additive Gaussian noise: a sensor's noise at a small sigma
JPEG_QUALITY = 20  # Pillow's JPEG at quality 20: a heavily compressed upload


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """float (N, C, S, S) blurred by a separable Gaussian of `sigma` px, truncated at 3 sigma, edges reflected."""
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = torch.nn.functional.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = torch.nn.functional.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return torch.nn.functional.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def _shifted(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """uint8 (N, C, S, S) each moved by `pixels` (image i: right, down, left, up for i mod 4), the edge repeated into
    the uncovered strip, as a crop that slipped would show it."""
    padded = torch.nn.functional.pad(images.float(), (pixels,) * 4, mode="replicate")
    size = images.shape[-1]
    # (top, left) of the window in the padded image that moves the content right, down, left, up
    windows = [(pixels, 0), (0, pixels), (pixels, 2 * pixels), (2 * pixels, pixels)]
    moved = [padded[i, :, top:top + size, left:left + size] for i, (top, left) in
             ((i, windows[i % 4]) for i in range(len(images)))]
    return torch.stack(moved).round().to(torch.uint8)


def _jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """uint8 (N, C, S, S) saved as JPEG by Pillow at `quality` and decoded again."""
    import io

    from PIL import Image

    decoded = []
    for image in images.permute(0, 2, 3, 1).numpy():
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="JPEG", quality=quality)
        pixels = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
        decoded.append(torch.from_numpy(pixels.reshape(*image.shape[:2], -1).copy()))
    return torch.stack(decoded).permute(0, 3, 1, 2).contiguous()


def near_outlier_sets(inliers: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """The near outliers (uint8, the shape of `inliers`): the held-out inliers blurred, faded, brightened, shifted,
    noised and JPEG-compressed, each set made from every inlier."""
    from introvae.images import to_float, to_uint8

    x = to_float(inliers)
    generator = torch.Generator().manual_seed(seed + 7)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    sets = {f"blur-{sigma:g}px": to_uint8(_gaussian_blur(x, sigma)) for sigma in BLUR_SIGMAS}
    sets["contrast-half"] = to_uint8(mean + 0.5 * (x - mean))  # halved around the image's mean, as Pillow does
    sets[f"brightness+{round(BRIGHTNESS_SHIFT * 255)}"] = to_uint8(x + BRIGHTNESS_SHIFT)
    sets[f"shift-{SHIFT_PIXELS}px"] = _shifted(inliers, SHIFT_PIXELS)
    sets[f"noise-{round(NOISE_SIGMA * 255)}"] = to_uint8(x + NOISE_SIGMA * torch.randn(x.shape, generator=generator))
    sets[f"jpeg-q{JPEG_QUALITY}"] = _jpeg(inliers, JPEG_QUALITY)
    return sets


def inlier_set(run_dir: Path, count: int) -> torch.Tensor:
    """`count` evenly spaced images of the run's held-out test split."""
    from introvae import Model
    from introvae.data import open_data

    config = Model.load(run_dir, device="cpu").config
    dataset = config.dataset
    data = open_data(dataset.path, dataset.image_size, dataset.channels, dataset.test_fraction, config.run.seed,
                     dataset.builtin_count)
    total = len(data.test)
    chosen = torch.linspace(0, total - 1, min(count, total)).round().long().unique()
    return data.test.get(chosen.tolist())


def measure(run_dir: Path, data: str, count: int, samples: int, seed: int) -> tuple[dict, dict]:
    """Scores and detection metrics of one run on the inliers and every outlier set, far and near, and the scoring
    speed; and the per-image scores ({set: {column: array}})."""
    from introvae import Model
    from introvae.images import to_float
    from introvae.latent import (
        COMPRESSORS,
        SCORE_KEYS,
        compressed_bits_per_dim,
        decoder_sigma,
        detection_metrics,
        fit_reference,
        score_images,
    )

    model = Model.load(run_dir, device="cpu")
    size, channels = model.config.dataset.image_size, model.config.dataset.channels
    started = time.perf_counter()
    reference = fit_reference(model, samples=samples, seed=seed)
    reference_s = time.perf_counter() - started
    started = time.perf_counter()
    decoder_sigma(model)  # what `score` fitted before the reference existed: sigma alone, on 1024 training images
    sigma_alone_s = time.perf_counter() - started
    inliers = inlier_set(run_dir, count)
    far, near = outlier_sets(data, size, channels, count, seed), near_outlier_sets(inliers, seed)
    sets = {"inliers": inliers, **far, **near}
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
    result = {"run": str(run_dir), "model": model.config.model, "steps": model.config.optim.steps,
              "train_seed": model.config.run.seed, "image_size": size, "channels": channels,
              "reference": reference.to_dict(), "reference_s": reference_s, "sigma_alone_s": sigma_alone_s,
              "sets": {name: len(images) for name, images in sets.items()}, "far": list(far), "near": list(near),
              "metrics": metrics, "means": means, "images_per_s": images_scored / seconds,
              "images_per_s_without_compressors": images_scored / max(seconds - compress_s, 1e-9),
              "compressors_s": compress_s, "images_scored": images_scored}
    return result, scores


def summary(runs: dict[str, dict[str, dict]], figure: str = "auroc") -> dict[str, dict[str, dict[str, dict]]]:
    """{model: {set: {score: {"mean", "min", "max"}}}} of `figure` over the training seeds of `runs`
    ({seed: {model: measure's result}})."""
    seeds = list(runs)
    first = runs[seeds[0]]
    table: dict[str, dict[str, dict[str, dict]]] = {}
    for model, result in first.items():
        table[model] = {}
        for name, by_key in result["metrics"].items():
            table[model][name] = {}
            for key in by_key:
                values = [runs[seed][model]["metrics"][name][key][figure] for seed in seeds]
                table[model][name][key] = {"mean": float(np.mean(values)), "min": float(min(values)),
                                           "max": float(max(values))}
    return table


def markdown_table(table: dict[str, dict[str, dict[str, dict]]], sets: list[str], keys: list[str] | None = None,
                   spread: bool = True) -> str:
    """One row per (model, score), one column per outlier set of `sets`: the mean over seeds of `summary`'s table,
    with +- half the range between the seeds when there are several."""
    from introvae.latent import DEFAULT_SCORE, SCORE_KEYS

    keys = keys or list(SCORE_KEYS)
    lines = [f"| model | score | {' | '.join(sets)} |", "| --- | --- |" + " --- |" * len(sets)]
    for model, by_set in table.items():
        for key in keys:
            cells = []
            for name in sets:
                cell = by_set[name][key]
                half_range = (cell["max"] - cell["min"]) / 2
                cells.append(f"{cell['mean']:.3f}" + (f" ± {half_range:.3f}" if spread else ""))
            label = f"**`{key}`** (default)" if key == DEFAULT_SCORE else f"`{key}`"
            lines.append(f"| {model} | {label} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="glyphs", help="the in-distribution data the models train on (default: "
                        "glyphs, the digits; builtin: the coloured shapes)")
    parser.add_argument("--steps", type=int, help="training steps of each model (default: its preset's: 4000 for "
                        "glyphs-32, 6000 for vae-glyphs-32, 3000 for builtin-32 and vae-32)")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0], help="training seeds: one pair of runs "
                        "each, the tables give their mean and spread (default: 0)")
    parser.add_argument("--vae-run", type=Path, help="score this VAE run instead of training one")
    parser.add_argument("--introvae-run", type=Path, help="score this IntroVAE run instead of training one")
    parser.add_argument("--count", type=int, default=300, help="images per set (default: 300)")
    parser.add_argument("--samples", type=int, default=16, help="posterior samples K per image (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the outlier sets and posterior samples")
    parser.add_argument("--train-only", action="store_true", help="train (or find) the runs and stop")
    parser.add_argument("--runs-dir", type=Path, default=RESULTS / "ood-runs", help="where trained runs go")
    parser.add_argument("--out", type=Path, help="JSON to write (default: benchmarks/results/ood-DATA.json; the "
                        "per-image scores go to the same name, .npz)")
    args = parser.parse_args()
    if args.count < 2 or args.samples < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--count must be at least 2, --samples and --steps at least 1")
    given = {"vae": args.vae_run, "introvae": args.introvae_run}
    if any(given.values()) and len(args.train_seeds) > 1:
        parser.error("--vae-run and --introvae-run score one pair of runs: give one --train-seeds, or none")
    for model, run_dir in given.items():
        if run_dir is not None and not run_dir.exists():
            parser.error(f"--{model}-run {run_dir} does not exist")
    runs = {seed: {model: given[model] or train_run(model, args.data, args.steps, args.runs_dir, seed)
                   for model in given} for seed in args.train_seeds}
    if args.train_only:
        return 0
    from introvae.latent import DEFAULT_SCORE

    results, per_image = {}, {}
    for seed, by_model in runs.items():
        results[seed], per_image[seed] = {}, {}
        for model, run_dir in by_model.items():
            results[seed][model], per_image[seed][model] = measure(run_dir, args.data, args.count, args.samples,
                                                                   args.seed)
    out = args.out or RESULTS / f"ood-{args.data.replace(':', '-').replace('/', '-')}.json"
    from machine import cpu_bf16, cpu_name  # benchmarks/machine.py: run as a script, its folder is on sys.path

    report = {"command": " ".join(["python", "benchmarks/ood.py", *sys.argv[1:]]), "commit": _commit(),
              "cpu": cpu_name(), "cpu_bf16": cpu_bf16(), "torch": torch.__version__, "data": args.data,
              "count": args.count, "samples": args.samples, "seed": args.seed, "train_seeds": args.train_seeds,
              "default": DEFAULT_SCORE, "auroc": summary(results), "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    np.savez_compressed(out.with_suffix(".npz"), **{f"{seed}/{model}/{name}/{key}": values
                                                    for seed, by_model in per_image.items()
                                                    for model, by_set in by_model.items()
                                                    for name, by_key in by_set.items()
                                                    for key, values in by_key.items()})
    first = next(iter(results[args.train_seeds[0]].values()))
    spread = len(args.train_seeds) > 1
    tables = [f"### {figure}, {kind} outliers\n\n{markdown_table(summary(results, figure), first[kind], spread=spread)}"
              for figure in ("auroc", "auprc", "fpr_at_95_tpr") for kind in ("far", "near")]
    speed = "\n".join(f"- {model}, seed {seed}: {r['images_per_s']:.1f} images/s with the compressors, "
                      f"{r['images_per_s_without_compressors']:.1f} without ({r['compressors_s']:.2f} s of "
                      f"compression for {r['images_scored']} images); reference fitted in {r['reference_s']:.1f} s "
                      f"on {r['reference']['images']} training images (sigma {r['reference']['sigma']:.4g}), against "
                      f"{r['sigma_alone_s']:.1f} s for sigma alone on 1024"
                      for seed, by_model in results.items() for model, r in by_model.items())
    seeds_note = (f"training seeds {', '.join(map(str, args.train_seeds))}: the mean ± half the range between them"
                  if spread else f"training seed {args.train_seeds[0]}")
    out.with_suffix(".md").write_text(f"`{report['command']}` at {report['commit']}, {report['cpu']} (AVX512-BF16 or "
                                      f"AMX: {report['cpu_bf16']}), K = {args.samples}, {args.count} images per "
                                      f"set, {seeds_note}\n\n" + "\n".join(tables) + f"\n### speed\n\n{speed}\n")
    print(tables[0])
    print(tables[1])
    print(speed)
    print(f"wrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.npz')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
