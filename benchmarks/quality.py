"""Side-by-side quality of every model after the same wall-clock training budget, on the built-in shapes and on real
photo crops at 32x32, for chosen training precisions and seeds.

    python benchmarks/quality.py [--budget-s 300] [--models introvae soft-introvae avae vae] [--samples 2000]
                                 [--data builtin photos photos-gray glyphs] [--precisions fp32 bf16]
                                 [--seeds 0 1 2]
                                 [--device auto] [--out benchmarks/results/quality.json]
                                 [--set beta=64 batch_size=8 ...] [--pictures DIR]

Data sets: "builtin" is the generated shapes; "photos" is 4096 random crops of the colour photographs shipped inside
scikit-image (benchmarks/photos.py builds benchmarks/results/photos-32.npz once; `pip install introvae[bench]`);
"photos-gray" is the same crops in one channel (the library's conversion of RGB to gray, `--channels 1`);
"glyphs" is the rendered digits, gray, trained from their own presets (glyphs-32 and vae-glyphs-32) and judged
by the glyph judge too (benchmarks/glyphs.py: legible, class cover, its feature FD, the high-frequency ratio).

Each model trains from its preset (builtin-32 for introvae, soft-introvae-32, avae-32, vae-32: latent size 128 and
batch 32, each objective with its paper's settings; introvae and its baseline vae on the light networks, base 32 /
max 256, soft-introvae and avae on App. B's of the same widths, which `--set arch='"light"'` changes) with `--data`
pointed at the data set (the photos keep the presets' networks and loss weights) and `Config.precision` / `Config.seed`
set. Every (data, model, precision, seed) runs in its own process for `--budget-s` seconds, then is evaluated with
`introvae.evaluate` on the held-out split (410 images; the same split for every seed, see SPLIT_SEED):

* RMSE (0-255), PSNR, SSIM of held-out reconstructions;
* MS-SSIM diversity of samples (the real images' value is the reference point);
* SWD x 1e3 (PGGAN) between samples and held-out images;
* FD-8px: the Frechet distance between Gaussians fitted to the samples and the held-out images after area
  down-sampling to 8x8 (a 192-d feature space). Inception features mean little for flat synthetic shapes and the
  Inception weights are not available offline, so this FID-style distance is defined on the data's own pixels: at
  8x8 it sees colours, sizes and positions of shapes and of photo regions, not pixel noise. FID is added when the
  Inception weights are found on disk (they are never downloaded here).
* on the built-in set, how recognisable the samples' shapes are (benchmarks/shapes.py): `recognised`, the fraction
  of samples a classifier of the built-in kinds names as one kind with probability >= 0.5 rather than "no shape"
  (blurred, shuffled or noisy), each kind counting for at most 1/8, and `shape_is`, the Inception Score's form over
  the eight kinds (1 to 8).

A first row per data set, "real (train split)", scores 2000 training images the same way: the floor each metric can
reach with this many images. A run the library refuses (e.g. a precision this device does not support) or that
fails becomes a row with its error instead of stopping the benchmark. With more than one seed, a second table gives
the mean and spread (max - min) over seeds of SWD, FD-8px, RMSE and the shape metrics per (data, model, precision):
the noise between seeds that a precision's difference is measured against. `--set KEY=VALUE ...` overrides options
of every model's preset (flat `Config` names, values parsed as JSON: a tuning experiment), and `--pictures DIR`
keeps 64 samples and 32 held-out reconstructions of each run as PNGs, to look at. Prints the tables and writes JSON.
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
DATA_SETS = ("builtin", "photos", "photos-gray", "glyphs")
# The glyphs are gray and have their own IntroVAE preset; every other (data, model) trains from MODELS' preset, in RGB
# but for the gray photo crops.
DATA_PRESETS = {("glyphs", "introvae"): "glyphs-32", ("glyphs", "vae"): "vae-glyphs-32"}
DATA_CHANNELS = {"glyphs": 1, "photos-gray": 1}
PRECISIONS = ("auto", "fp32", "bf16")  # passed through; the library decides which it accepts on this device
# The train/test split of a file data set follows a seed; it is fixed here so that every seed and precision is scored
# against the same held-out images as the data set's real row (the seeds vary initialisation, data order and noise).
SPLIT_SEED = 0
REAL = "real (train split)"

ROW_COLUMNS = [("data", "{}"), ("model", "{}"), ("precision", "{}"), ("seed", "{}"), ("steps", "{}"),
               ("images_per_second", "{:.1f}"), ("rmse", "{:.2f}"), ("psnr", "{:.2f}"), ("ssim", "{:.3f}"),
               ("ms_ssim", "{:.4f}"), ("swd", "{:.1f}"), ("fd_8px", "{:.3f}"), ("recognised", "{:.3f}"),
               ("shape_is", "{:.2f}"), ("legible", "{:.3f}"), ("class_cover", "{:.3f}"), ("judge_fd", "{:.2f}"),
               ("hf_ratio", "{:.2f}"), ("fid", "{:.2f}"), ("error", "{}")]
SUMMARY_METRICS = [("swd", "{:.1f}"), ("fd_8px", "{:.3f}"), ("rmse", "{:.2f}"), ("recognised", "{:.3f}"),
                   ("shape_is", "{:.2f}"), ("legible", "{:.3f}"), ("class_cover", "{:.3f}"), ("judge_fd", "{:.2f}"),
                   ("hf_ratio", "{:.2f}")]
SUMMARY_COLUMNS = [("data", "{}"), ("model", "{}"), ("precision", "{}"), ("seeds", "{}")] + [
    (f"{metric}_{stat}", fmt) for metric, fmt in SUMMARY_METRICS for stat in ("mean", "spread")]


def data_spec(name: str) -> str:
    """The `--data` value of a benchmark data set (building the photo crops on first use; the gray ones are the
    same file, read in one channel)."""
    if name in ("builtin", "glyphs"):
        return name
    from photos import photos_npz  # benchmarks/photos.py: this script's folder is on sys.path

    from introvae.config import PRESETS

    return str(photos_npz(PRESETS[MODELS["introvae"]]["image_size"]))


def preset_of(spec: str, model: str) -> str:
    return DATA_PRESETS.get((spec, model), MODELS[model])


def open_split(config, channels: int):
    """The config's data at its image size and `channels`, split with SPLIT_SEED."""
    from introvae.data import open_data

    dataset = config.dataset
    return open_data(dataset.path, dataset.image_size, channels, dataset.test_fraction, SPLIT_SEED,
                     dataset.builtin_count)


def fd_8px(samples_u8, reference_u8) -> float:
    import torch.nn.functional as F

    from introvae.images import to_float
    from introvae.metrics.fid import fid

    def features(images):
        return F.interpolate(to_float(images), size=(8, 8), mode="area").flatten(1).double()

    return fid(features(samples_u8), features(reference_u8))


def score(samples_u8, reference_u8, settings, shapes: bool = False, glyphs: bool = False) -> dict:
    """The sample metrics of the rows; `shapes` adds the shape classifier's (benchmarks/shapes.py), for the built-in
    set, and `glyphs` the glyph judge's (benchmarks/glyphs.py: legible, class cover, its feature FD, the
    high-frequency ratio)."""
    from introvae.evaluate import FeatureSpace, compare_sets

    features = FeatureSpace(settings)
    metrics, _ = compare_sets(samples_u8, reference_u8, settings, features)
    row = {"ms_ssim": metrics["ms_ssim"]["samples"], "ms_ssim_real": metrics["ms_ssim"]["reference"],
           "swd": metrics["swd"]["mean"], "fd_8px": fd_8px(samples_u8, reference_u8)}
    if "fid" in metrics:
        row["fid"] = metrics["fid"]
    if shapes:
        from shapes import shape_scores  # benchmarks/shapes.py: this script's folder is on sys.path

        row.update(shape_scores(samples_u8))
    if glyphs:
        from glyphs import judge_images  # benchmarks/glyphs.py

        judged = judge_images(samples_u8)
        row.update(legible=judged["legible"], class_cover=judged["class_cover"], judge_fd=judged["fd"],
                   hf_ratio=judged["hf_ratio"])
    return row


def parse_settings(items: list[str]) -> dict:
    """KEY=VALUE strings as Config overrides: the value as JSON when it parses (64, 1e-3, true), else the text."""
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: write KEY=VALUE with a Config option name, e.g. beta=64.")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def run_model(model: str, spec: str, precision: str, seed: int, budget_s: float, num_samples: int,
              device: str, steps: int = 0, overrides: dict | None = None, pictures: Path | None = None,
              channels: int = 3) -> dict:
    """Train `model` on `spec` in `channels` channels for `budget_s` seconds of steps (or exactly `steps` steps when
    positive), with `overrides` of its preset, then evaluate it (called in a child process); with `pictures`, keep
    PNGs of its samples and held-out reconstructions there."""
    import torch

    from introvae import from_preset
    from introvae.evaluate import EvalSettings, generate_samples, reconstruct_set, reconstruction_errors
    from introvae.train import Trainer

    config = from_preset(preset_of(spec, model), **(overrides or {}), data=spec, precision=precision, seed=seed,
                         steps=10**9, grid_every=0, checkpoint_every=0, device=device)
    # validate() as the command line does, so a precision the library does not know is refused, not ignored.
    # The learning rate and warm-up the run trains with, as `introvae train` records them.
    config = config.replace(channels=channels).validate().resolved()
    data = open_split(config, channels)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, Path(run_dir), data, quiet=True)
        started = time.perf_counter()
        while (trainer.step < steps) if steps > 0 else (time.perf_counter() - started < budget_s):
            trainer.train_step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        trainer.outputs.prepare(trainer.step)  # the batch-norm statistics that checkpoints hold (introvae.batchnorm)
        model_ = trainer.model
        settings = EvalSettings(num_samples=num_samples, device=device, download=False)
        reference = data.test.images
        samples = generate_samples(model_, num_samples, seed=seed, batch_size=64)
        reconstructions = reconstruct_set(model_, reference, 64)
        rec = reconstruction_errors(reference, reconstructions)
        if pictures is not None:
            from introvae.images import as_float, save_image

            pictures.mkdir(parents=True, exist_ok=True)
            gray = "-gray" if channels == 1 and spec != "glyphs" else ""
            name = f"{Path(spec).stem}{gray}-{model}-{precision}-seed{seed}"
            save_image(as_float(samples[:64]), pictures / f"{name}-samples.png")
            # reconstruct_set gives float images, the reference set is uint8
            save_image(torch.cat([as_float(reference[:32]), as_float(reconstructions[:32])]),
                       pictures / f"{name}-reconstructions.png")
        row = {"preset": preset_of(spec, model), "steps": trainer.step, "train_seconds": round(seconds, 1),
               "images_per_second": trainer.step * config.optim.batch_size / seconds,
               "rmse": rec["rmse"], "psnr": rec["psnr"], "ssim": rec["ssim"],
               **score(samples, reference, settings, shapes=spec == "builtin", glyphs=spec == "glyphs")}
    return row


def real_row(name: str, spec: str, num_samples: int) -> dict:
    from introvae import from_preset
    from introvae.evaluate import EvalSettings

    data = open_split(from_preset(preset_of(spec, "introvae"), data=spec), DATA_CHANNELS.get(name, 3))
    train_images = data.train.images[:num_samples]
    return {"data": name, "model": REAL, "steps": 0,
            **score(train_images, data.test.images, EvalSettings(num_samples=num_samples, download=False),
                    shapes=name == "builtin", glyphs=name == "glyphs")}


def run_child(name: str, spec: str, model: str, precision: str, seed: int, args: argparse.Namespace) -> dict:
    """One (data, model, precision, seed) in a fresh process; its failure becomes the row's "error"."""
    child = subprocess.run([sys.executable, __file__, "--one", model, "--spec", spec,
                            "--channels", str(DATA_CHANNELS.get(name, 3)), "--precisions", precision,
                            "--seeds", str(seed), "--budget-s", str(args.budget_s), "--steps", str(args.steps),
                            "--samples", str(args.samples), "--device", args.device, "--set", *args.set,
                            *(["--pictures", str(args.pictures)] if args.pictures else [])],
                           capture_output=True, text=True)
    row = {"data": name, "model": model, "precision": precision, "seed": seed}
    if child.returncode == 0:
        return {**row, **json.loads(child.stdout.strip().splitlines()[-1])}
    lines = child.stderr.strip().splitlines()
    return {**row, "error": lines[-1] if lines else f"exit status {child.returncode}"}


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and spread (max - min) over seeds of SUMMARY_METRICS per (data, model, precision); failed runs left out."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["model"] != REAL and "error" not in r:
            groups.setdefault((r["data"], r["model"], r["precision"]), []).append(r)
    summary = []
    for (name, model, precision), runs in groups.items():
        entry = {"data": name, "model": model, "precision": precision, "seeds": len(runs)}
        for metric, _ in SUMMARY_METRICS:
            values = [r[metric] for r in runs if metric in r]  # the shape metrics exist for the built-in set only
            if not values:
                continue
            entry[f"{metric}_mean"] = sum(values) / len(values)
            entry[f"{metric}_spread"] = max(values) - min(values)
        summary.append(entry)
    return summary


def _format(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    columns = [(k, f) for k, f in columns if any(k in r for r in rows)]
    header = "| " + " | ".join(k for k, _ in columns) + " |"
    lines = [header, "|" + "---|" * len(columns)]
    for r in rows:
        # A "|" inside an error message would split its markdown cell.
        cells = [f.format(r[k]).replace("|", "\\|") if k in r else "-" for k, f in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-s", type=float, default=300.0, help="training seconds per run (default 300)")
    parser.add_argument("--steps", type=int, default=0,
                        help="train exactly this many steps instead of --budget-s (equal steps: quality per step, "
                             "e.g. to compare precisions)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--data", nargs="+", default=list(DATA_SETS), choices=DATA_SETS,
                        help="data sets (default both)")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=PRECISIONS,
                        help="training precisions, Config.precision (default fp32)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="Config.seed of each run (default 0)")
    parser.add_argument("--samples", type=int, default=2000, help="samples per run for the metrics (default 2000)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "quality.json")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override options of every model's preset (flat Config names; values as JSON)")
    parser.add_argument("--pictures", type=Path, help="folder for each run's samples and reconstructions (PNG)")
    # Child process: train and evaluate one model on the data at --spec, with the first precision and seed.
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--channels", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = parse_settings(args.set)
    if args.one:
        print(json.dumps(run_model(args.one, args.spec, args.precisions[0], args.seeds[0], args.budget_s,
                                   args.samples, args.device, args.steps, overrides, args.pictures,
                                   args.channels)))
        return
    rows = []
    for name in args.data:
        spec = data_spec(name)
        rows.append(real_row(name, spec, args.samples))
        for model in args.models:
            for precision in args.precisions:
                for seed in args.seeds:
                    length = f"{args.steps} steps" if args.steps > 0 else f"{args.budget_s:g} s"
                    print(f"training {model} on {name} ({precision}, seed {seed}) for {length} ...",
                          file=sys.stderr, flush=True)
                    rows.append(run_child(name, spec, model, precision, seed, args))
                    print(_format(rows[-1:], ROW_COLUMNS).splitlines()[-1], file=sys.stderr, flush=True)
    table = _format(rows, ROW_COLUMNS)
    print(table)
    result = {"budget_s": args.budget_s, "steps": args.steps, "samples": args.samples, "data": args.data,
              "precisions": args.precisions, "seeds": args.seeds, "set": overrides, "platform": platform.platform(),
              "python": platform.python_version(), "rows": rows, "table": table}
    summary = summarize(rows)
    if len(args.seeds) > 1 and summary:
        result["summary"], result["summary_table"] = summary, _format(summary, SUMMARY_COLUMNS)
        print(f"\nover seeds {', '.join(map(str, args.seeds))}: mean and spread (max - min)\n")
        print(result["summary_table"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
