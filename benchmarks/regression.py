"""Quality regression check: train the default `introvae` and `vae` for a fixed number of steps on shipped real data,
with several seeds, score their samples, and compare with a committed baseline.

    python benchmarks/regression.py                       # check this checkout against
                                                          # benchmarks/baselines/regression.json
    python benchmarks/regression.py --src /tmp/old/src    # the same check on another commit's source tree
    python benchmarks/regression.py --write-baseline      # measure and store the baseline instead of checking
    python benchmarks/regression.py --compare RESULT.json # compare an earlier result with the baseline, no training

Why fixed steps and seeds. A short adversarial run's quality moves by tens of percent between seeds, so one run per
commit says nothing; and wall-clock budgets make the result depend on the machine's load. Each (data, model, seed)
trains exactly `--steps` steps in its own process, so the figures do not depend on how busy the machine is, and the
check compares the mean over seeds with the baseline's mean plus the baseline's spread (max - min over seeds).

What is trained. The library's defaults for each model (App. B networks, m 35, beta 2, warm-up 200, lr 2e-4), at
32x32 with base 64 / max 256 channels, latent 128, batch 32, test fraction 0.05: the settings of a first run on a
user's own data. In fp32 by default, so that a baseline measured on one CPU holds on another (bf16 is chosen by
`--precision auto` only where the CPU has it). Training and sampling go through the command line of the tree given by
`--src` (`python -m introvae train ...`, then `sample --out FILE.npz`), which every commit since the first has, so the
same script measures old commits too; only the options both old and new command lines know are passed. The data is
written once as a folder of PNG files for the same reason.

The data (all shipped inside packages, nothing downloaded):
* `photos-gray`, `photos`: crops of the photographs inside scikit-image (benchmarks/photos.py), in gray and colour;
* `glyphs`: the built-in rendered digits (`--data glyphs`), when this checkout has them: gray, centred strokes, the
  closest shipped data to handwriting.
The samples are scored against crops or glyphs that no run trained on (another seed, or indices past the training
set), so every commit is scored against the same reference:
* `fd_8px`: Frechet distance between Gaussians of the 8x8 area-downsampled images (benchmarks/quality.py);
* `swd`: sliced Wasserstein distance x 1e3 (PGGAN's, introvae.metrics.swd);
* on glyphs, `judge_fd`: the Frechet distance of the glyph judge's penultimate features (benchmarks/glyphs.py).
The first metric of each data set (`judge_fd` on glyphs, `fd_8px` on photos) decides; the others are reported.

Exit status 1 when any (data, model) is worse than the baseline by more than the spread, 0 otherwise. Prints the
per-run table and the per-(data, model) comparison, and writes JSON (benchmarks/results/regression.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_name  # benchmarks/machine.py: this script's folder is on sys.path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
BASELINE = HERE / "baselines" / "regression.json"
DATA_SETS = ("photos-gray", "photos", "glyphs")
MODELS = ("introvae", "vae")
# The settings of issue 19's report: App. B networks at the library's defaults otherwise.
TRAIN_OPTIONS = ["--image-size", "32", "--base-channels", "64", "--max-channels", "256", "--latent-dim", "128",
                 "--batch-size", "32", "--test-fraction", "0.05"]
TRAIN_IMAGES, REFERENCE_IMAGES = 4096, 1000
PRIMARY = {"photos-gray": "fd_8px", "photos": "fd_8px", "glyphs": "judge_fd"}


def _gray(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W, 1) by ITU-R 601 luma, as Pillow's "L" conversion."""
    luma = images.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]


def data_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(training images, reference images) of a data set as uint8 (N, H, W, C)."""
    if name in ("photos", "photos-gray"):
        from photos import photos_npz  # benchmarks/photos.py: this script's folder is on sys.path

        def load(path: Path) -> np.ndarray:
            with np.load(path, allow_pickle=False) as f:
                return f["images"]

        train = load(photos_npz(32, TRAIN_IMAGES, 0))
        # Crops drawn with another seed: the same photographs, other windows, none of them trained on.
        reference = load(photos_npz(32, REFERENCE_IMAGES, 1))
        return (_gray(train), _gray(reference)) if name == "photos-gray" else (train, reference)
    if name == "glyphs":
        from introvae.data.glyphs import make_glyphs

        images = make_glyphs(TRAIN_IMAGES + REFERENCE_IMAGES, 32)
        images = np.asarray(images)
        if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
            images = images.transpose(0, 2, 3, 1)
        if images.ndim == 3:
            images = images[..., None]
        return images[:TRAIN_IMAGES], images[TRAIN_IMAGES:]
    raise SystemExit(f"--data {name!r} is unknown: choose from {', '.join(DATA_SETS)}.")


def export_folder(images: np.ndarray, folder: Path) -> Path:
    """Write the images as numbered PNG files once (every commit's command line reads folders)."""
    from PIL import Image

    done = folder / ".complete"
    if done.is_file() and done.read_text() == str(len(images)):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / f"{i:05d}.png")
    done.write_text(str(len(images)))
    return folder


def train_and_sample(src: Path, folder: Path, channels: int, model: str, seed: int, steps: int,
                     precision: str | None, num_samples: int, work: Path) -> dict:
    """Train through `src`'s command line, then sample `num_samples` images with seed 0; the samples and timing."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    run = work / f"{model}-seed{seed}"
    command = [sys.executable, "-m", "introvae", "train", "--data", str(folder), "--channels", str(channels),
               *TRAIN_OPTIONS, "--model", model, "--seed", str(seed), "--steps", str(steps), "--out", str(run),
               "--quiet", *(["--precision", precision] if precision else [])]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    samples_path = work / f"{model}-seed{seed}-samples.npz"
    # The baseline samples N(0, I). Since runs store a code density, `sample` draws from it by default; --prior normal
    # keeps the protocol where the command has that option (commits before it sample N(0, I) anyway).
    sample_help = subprocess.run([sys.executable, "-m", "introvae", "sample", "--help"], env=env,
                                 capture_output=True, text=True).stdout
    prior = ["--prior", "normal"] if "--prior" in sample_help else []
    subprocess.run([sys.executable, "-m", "introvae", "sample", str(run), "--num", str(num_samples), "--seed", "0",
                    *prior, "--out", str(samples_path)], env=env, check=True, capture_output=True, text=True)
    with np.load(samples_path) as f:
        samples = f["images"]
    return {"samples": samples, "train_seconds": seconds, "run": run}


def score(name: str, samples: np.ndarray, reference: np.ndarray) -> dict:
    """The data set's metrics of uint8 (N, H, W, C) samples against the reference images."""
    import torch
    from quality import fd_8px  # benchmarks/quality.py

    from introvae.metrics.swd import swd

    def nchw(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

    s, r = nchw(samples), nchw(reference)
    if s.shape[1] != r.shape[1]:  # e.g. a run that decided on 3 channels for gray data
        s = s[:, :1] if r.shape[1] == 1 else s.expand(-1, r.shape[1], -1, -1)
    row = {"fd_8px": fd_8px(s, r), "swd": float(swd(s, r)["mean"])}
    if name == "glyphs":
        from glyphs import judge_images  # benchmarks/glyphs.py

        judged = judge_images(s)
        row["judge_fd"] = judged["fd"]
        row["legible"] = judged["legible"]
    return row


def compare(summary: dict, baseline: dict) -> list[dict]:
    """One verdict per (data, model) present in both: worse when the mean of the primary metric exceeds the baseline's
    mean by more than the larger of the two spreads (max - min over seeds)."""
    verdicts = []
    for key, now in summary.items():
        if key not in baseline:
            continue
        then = baseline[key]
        metric = now["metric"]
        allowed = max(then["spread"], now["spread"])
        worse = now["mean"] - then["mean"] > allowed
        verdicts.append({"key": key, "metric": metric, "baseline_mean": then["mean"], "baseline_spread": then["spread"],
                         "mean": now["mean"], "spread": now["spread"], "allowed": allowed,
                         "verdict": "WORSE" if worse else "ok"})
    return verdicts


def summarise(rows: list[dict]) -> dict:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(f"{r['data']}/{r['model']}", []).append(r)
    summary = {}
    for key, runs in groups.items():
        metric = PRIMARY[runs[0]["data"]]
        values = [r[metric] for r in runs]
        summary[key] = {"metric": metric, "mean": float(np.mean(values)), "spread": float(max(values) - min(values)),
                        "values": values}
    return summary


def table(rows: list[dict], columns: list[str]) -> str:
    columns = [c for c in columns if any(c in r for r in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c])) if c in r else "-" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=HERE.parent / "src",
                        help="the source tree (folder holding the introvae package) to train with (default: this "
                             "checkout's src/)")
    parser.add_argument("--data", nargs="+", default=["glyphs"], choices=DATA_SETS,
                        help="data sets (default glyphs: about 30 minutes on 2 cores for 2 seeds of both models)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=750)
    parser.add_argument("--precision", default="fp32",
                        help="--precision passed to train (default fp32: the same arithmetic on every CPU, which the "
                             "baseline needs; 'auto' measures the library's default here; 'none' passes nothing)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (each gets cores / jobs threads)")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--write-baseline", action="store_true", help="store the measurement as the baseline")
    parser.add_argument("--out", type=Path, default=RESULTS / "regression.json")
    parser.add_argument("--keep", type=Path, help="keep the run directories under this folder")
    parser.add_argument("--compare", type=Path, metavar="RESULT.json",
                        help="train nothing: compare a result this script wrote earlier with the baseline")
    args = parser.parse_args()
    if args.compare:
        if not args.baseline.is_file() or not args.compare.is_file():
            print(f"--compare needs {args.compare} and the baseline {args.baseline}; one is missing.", file=sys.stderr)
            return 2
        return check(json.loads(args.compare.read_text())["summary"], args.baseline)
    if not (args.src / "introvae").is_dir():
        print(f"--src {args.src}: no introvae package there; give the src/ folder of a checkout.", file=sys.stderr)
        return 2
    if args.precision == "none":
        args.precision = None
    if args.jobs > 1:
        # Each child gets its share of the cores, so that side-by-side runs do not oversubscribe them.
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))

    from concurrent.futures import ThreadPoolExecutor

    work_root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="regression-"))
    rows = []
    for name in args.data:
        train_images, reference = data_arrays(name)
        folder = export_folder(train_images, RESULTS / f"regression-data-{name}")
        channels = train_images.shape[-1]
        jobs = [(model, seed) for model in args.models for seed in args.seeds]

        def one(job: tuple[str, int]) -> dict:
            model, seed = job
            work = work_root / name
            work.mkdir(parents=True, exist_ok=True)
            print(f"training {model} on {name}, seed {seed}, {args.steps} steps ...", file=sys.stderr, flush=True)
            trained = train_and_sample(args.src, folder, channels, model, seed, args.steps, args.precision,
                                       args.samples, work)
            row = {"data": name, "model": model, "seed": seed, "train_seconds": round(trained["train_seconds"], 1),
                   **score(name, trained["samples"], reference)}
            print(table([row], list(row)).splitlines()[-1], file=sys.stderr, flush=True)
            return row

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            rows.extend(pool.map(one, jobs))
    columns = ["data", "model", "seed", "train_seconds", "judge_fd", "legible", "fd_8px", "swd"]
    print(table(rows, columns))
    summary = summarise(rows)
    result = {"src": str(args.src), "steps": args.steps, "precision": args.precision, "seeds": args.seeds,
              "samples": args.samples, "platform": platform.platform(), "processor": cpu_name(),
              "rows": rows, "summary": summary}
    status = 0
    if args.write_baseline:
        args.baseline.parent.mkdir(parents=True, exist_ok=True)
        args.baseline.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote the baseline {args.baseline}", file=sys.stderr)
    elif args.baseline.is_file():
        status = check(summary, args.baseline, result)
    else:
        print(f"no baseline at {args.baseline}: nothing to compare with (use --write-baseline)", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return status


def check(summary: dict, baseline: Path, result: dict | None = None) -> int:
    """Print the comparison of `summary` with the baseline file; 1 when any (data, model) is worse."""
    stored = json.loads(baseline.read_text())["summary"]
    for key in summary:
        if key not in stored:
            print(f"{key}: not in the baseline {baseline}, so not compared", file=sys.stderr)
    verdicts = compare(summary, stored)
    if result is not None:
        result["verdicts"] = verdicts
    print()
    print(table(verdicts, ["key", "metric", "baseline_mean", "baseline_spread", "mean", "spread", "allowed",
                           "verdict"]))
    if any(v["verdict"] == "WORSE" for v in verdicts):
        print("regression: worse than the baseline by more than the spread between seeds", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
