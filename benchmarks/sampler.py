"""Which sampler draws the best glyphs from a trained run (issue 29): the prior N(0, I), the run's code density (a
Gaussian mixture fitted to the training codes) at a few temperatures, and selection by the critic, judged by the
glyph judge (benchmarks/glyphs.py), with their cost and how close the samples come to the training images.

    python benchmarks/sampler.py RUN_DIR[@STEP] [RUN_DIR ...] [--samplers normal run run-T0.8 run-select4] [--num 500]

Each run is loaded at its newest checkpoint (or at STEP); its code density is fitted anew with the library's defaults
(what training stores at its end), so runs trained before densities were stored are judged alike. Samplers:

* `normal`: N(0, I), the papers' sampling (`--prior normal`);
* `run`: the run's density at its default temperature; `run-TX`: the same at temperature X (every component's spread
  times X; `run-T1` is the fitted mixture itself);
* `run-selectK` (also `run-TX-selectK`): selection by the critic, K candidates per image (`Model.sample(select=K)`);
* `run-cN` (also with -TX, -selectK after it): a density of N components instead of the default.

Copying: for each image the L2 distance (pixels in [0, 1]) to its nearest training image; the median over the
samples is printed beside the median over the run's held-out images (`copy_ratio` = samples / held-out: below 1 the
samples sit closer to the training set than unseen real images do). A decoder that blurs also lowers the distance
without copying anything, so `blur_ratio` gives the same ratio for the reconstructions of the held-out images, which
copy nothing: a sampler copies where its copy_ratio falls below the blur_ratio. The seconds are those of drawing the
samples (decoding and, with selection, judging the candidates), not of fitting the density. Prints a table and
writes JSON (benchmarks/results/sampler.json, or --out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

JUDGED = ("legible", "class_cover", "fd", "hf_ratio")


def parse_sampler(name: str) -> tuple[str, float | None, int, int | None]:
    """(prior, temperature (None: the density's default), candidates, components (None: the default)) of a sampler
    name."""
    if name == "normal":
        return "normal", None, 1, None
    match = re.fullmatch(r"run(?:-c(\d+))?(?:-T([0-9.]+))?(?:-select(\d+))?", name)
    if not match:
        raise SystemExit(f"--samplers {name}: not normal, run, run-cN, run-TX, run-selectK or a combination.")
    return ("run", float(match.group(2)) if match.group(2) else None, int(match.group(3) or 1),
            int(match.group(1)) if match.group(1) else None)


def nearest_distances(images: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """For each image (float, [0, 1]) the L2 distance to its nearest training image."""
    flat_train = train.flatten(1).float()
    return torch.cat([torch.cdist(chunk.flatten(1).float(), flat_train).min(1).values for chunk in images.split(256)])


def judge_run_samplers(run: Path, step: int | None, samplers: list[str], num: int, seed: int) -> list[dict]:
    from glyphs import judge_images

    import introvae
    from introvae.data import open_data
    from introvae.images import to_float, to_uint8
    from introvae.latent import fitted_density

    model = introvae.Model.load(run, step=step, device="cpu")
    started = time.time()
    fitted = fitted_density(model)  # what training stores at its end: DENSITY_IMAGES training codes
    fit_seconds = time.time() - started
    dataset = model.config.dataset
    data = open_data(dataset.path, dataset.image_size, dataset.channels, dataset.test_fraction, model.config.run.seed,
                     dataset.builtin_count)
    train = to_float(data.train.get(list(range(len(data.train)))))
    held_out = to_float(data.test.get(list(range(min(num, len(data.test))))))
    held_out_median = float(nearest_distances(held_out, train).median())
    blur_ratio = float(nearest_distances(model.reconstruct(held_out), train).median()) / held_out_median
    densities = {None: fitted}
    rows = []
    for name in samplers:
        prior, temperature, candidates, components = parse_sampler(name)
        if components not in densities:
            densities[components] = fitted_density(model, components)
        density = densities[components]
        model.density = None if prior == "normal" else dataclasses.replace(
            density, temperature=density.temperature if temperature is None else temperature)
        started = time.time()
        images = model.sample(num, seed=seed, select=candidates)
        seconds = time.time() - started
        judged = judge_images(to_uint8(images))
        sample_median = float(nearest_distances(images, train).median())
        if name == "run":
            name = f"run (T{fitted.temperature:g})"
        rows.append({"run": run.name, "step": model.origin[1], "sampler": name,
                     **{k: round(float(judged[k]), 4) for k in JUDGED},
                     "nearest_train": round(sample_median, 3), "held_out_nearest": round(held_out_median, 3),
                     "copy_ratio": round(sample_median / held_out_median, 3), "blur_ratio": round(blur_ratio, 3),
                     "seconds": round(seconds, 2),
                     "fit_seconds": round(fit_seconds, 1), "training_images": len(train)})
        print(" | ".join(str(v) for v in rows[-1].values()), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR[@STEP]")
    parser.add_argument("--samplers", nargs="+", default=["normal", "run", "run-T0.8", "run-select4"])
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sampler.json")
    args = parser.parse_args()
    for name in args.samplers:
        parse_sampler(name)
    rows = []
    for run in args.runs:
        path, _, step = run.partition("@")
        rows += judge_run_samplers(Path(path), int(step) if step else None, args.samplers, args.num, args.seed)
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    keys = {(r["run"], r["step"], r["sampler"]) for r in rows}
    merged = [r for r in previous if (r["run"], r["step"], r["sampler"]) not in keys] + rows
    args.out.write_text(json.dumps({"processor": platform.processor() or platform.machine(),
                                    "threads": torch.get_num_threads(), "rows": merged}, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
