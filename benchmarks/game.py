"""Leads for an introspective game that sharpens (issue 20): train variants of a preset on the built-in glyphs and
judge the samples of every checkpoint with the glyph judge (benchmarks/glyphs.py), so each lead gives a curve of
legible / class cover / FD / high-frequency ratio against training seconds, not only an end point.

    python benchmarks/game.py --leads base group samples --seeds 0 1 [--steps 3000] [--every 500]
    python benchmarks/game.py --list

Each lead is a preset plus overrides (LEADS below; `--set KEY=VALUE` adds overrides to every lead, values as JSON).
Each (lead, seed) trains in this process through `introvae.train`, keeping a checkpoint every `--every` steps; the
seconds at a checkpoint are the run's own clock from log.jsonl, so leads whose steps cost differently are compared
at equal minutes by reading the curves at the same seconds. Samples are drawn with seed 0 (`--samples` of them).
With `--fitted K` each checkpoint is also judged on samples from a K-component Gaussian mixture fitted to its training
images' codes (the *_fitted columns; the run's sampler with K = 100), at `--temperature` (default: the library's).
Prints the curve table and the last row per run, and writes JSON (benchmarks/results/game.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

BASE = {"preset": "builtin-32"}
# the earlier glyphs-32 (the lead beta4-beta1-0.5), and it with a 32-d code and --sample-codes between
EARLIER_GLYPHS = {**BASE, "beta": 4.0, "adam_beta1": 0.5}
Z32_BETWEEN = {**EARLIER_GLYPHS, "latent_dim": 32, "sample_codes": "between"}
# name -> preset and overrides (flat Config names). "base" is the preset as shipped; the others change one thing.
LEADS: dict[str, dict] = {
    "base": BASE,
    "vae": {"preset": "vae-32", "steps_factor": 2.0},  # a VAE step costs about half of the game's
    "group": {**BASE, "encoder_norm": "group"},
    "none": {**BASE, "encoder_norm": "none"},
    "spectral": {**BASE, "encoder_norm": "spectral"},
    "samples": {**BASE, "negatives": "samples"},
    "margin-1.2": {**BASE, "margin_factor": 1.2},
    "margin-1.1": {**BASE, "margin_factor": 1.1},
    "beta1-0.5": {**BASE, "adam_beta1": 0.5},
    "lr-2e-4": {**BASE, "lr": 2e-4},
    "warmup-1000": {**BASE, "warmup_steps": 1000},
    "soft-mnist": {"preset": "soft-introvae-mnist", "arch": "light", "steps_factor": 0.35},
    # The data's side: a smaller latent code (MNIST-like digits need far fewer than 128 numbers).
    "z32": {**BASE, "latent_dim": 32},
    "z32-group": {**BASE, "latent_dim": 32, "encoder_norm": "group"},
    "vae-z32": {"preset": "vae-32", "latent_dim": 32, "steps_factor": 2.0},
    "alpha-gen-1": {**BASE, "alpha_generator": 1.0},
    # The weight of L_AE: builtin-32's 16 was tuned on the shapes' small outlines; a lower beta lets the KL shape the
    # posterior (fewer holes between the codes of real images, so more prior samples decode to a digit).
    "beta4": {**BASE, "beta": 4.0},
    "beta2": {**BASE, "beta": 2.0},
    "beta4-beta1-0.5": EARLIER_GLYPHS,
    "vae-beta4": {"preset": "vae-32", "beta": 4.0, "steps_factor": 2.0},
    # the earlier glyphs-32 with prior samples as the only negatives (no reconstructions), which removed most speckle
    # on base
    "beta4-beta1-0.5-samples": {**EARLIER_GLYPHS, "negatives": "samples"},
    "vae-beta2": {"preset": "vae-32", "beta": 2.0, "steps_factor": 2.0},
    # A code the fitted mixture can describe: a full covariance in 128 dimensions has 8256 numbers per component, more
    # than the glyphs' 3686 training codes it is fitted to; in 32 dimensions it has 528.
    "beta4-beta1-0.5-z32": {**EARLIER_GLYPHS, "latent_dim": 32},
    # The game's samples decoded from codes between two real images' codes (--sample-codes between), where a fitted
    # density's samples fall, instead of from N(0, I)
    "beta4-beta1-0.5-between": {**EARLIER_GLYPHS, "sample_codes": "between"},
    "beta4-beta1-0.5-between-samples": {**EARLIER_GLYPHS, "sample_codes": "between", "negatives": "samples"},
    # with z32-between-every2 below, the steps to today's glyphs-32 (docs/experiments/2026-12-06-between-codes.md)
    "z32-between": Z32_BETWEEN,
    "z32-between-samples": {**Z32_BETWEEN, "negatives": "samples"},
    "z32-between-beta8": {**Z32_BETWEEN, "beta": 8.0},
    "z32-between-beta16": {**Z32_BETWEEN, "beta": 16.0},  # builtin-32's beta
    "z32-between-alpha0.5": {**Z32_BETWEEN, "alpha": 0.5},
    # today's glyphs-32: z32-between with the game on every other step; a VAE step costs about half of a game step,
    # so 4000 steps take the minutes of 3000. vae-beta4-z32 is today's vae-glyphs-32.
    "z32-between-every2": {**Z32_BETWEEN, "game_every": 2, "steps_factor": 4 / 3},
    "vae-beta4-z32": {"preset": "vae-32", "beta": 4.0, "latent_dim": 32, "steps_factor": 2.0},
    # Issue 29: the presets as shipped, and the game judged on images: real images, reconstructions and samples through
    # the encoder as one batch (--encoder-batch joint), so batch-norm cannot tell them apart by their batch.
    "glyphs-32": {"preset": "glyphs-32", "steps_factor": 4 / 3},
    "vae-glyphs-32": {"preset": "vae-glyphs-32", "steps_factor": 2.0},
    "glyphs-32-joint": {"preset": "glyphs-32", "encoder_batch": "joint", "steps_factor": 4 / 3},
    "glyphs-32-every1": {"preset": "glyphs-32", "game_every": 1, "steps_factor": 4 / 3},
    "glyphs-32-every1-joint": {"preset": "glyphs-32", "game_every": 1, "encoder_batch": "joint", "steps_factor": 4 / 3},
    # a gentler game: half the adversarial weight (as a lower learning rate of the game's terms would be), or a margin
    # closer to the warm-up's KL(real)
    "glyphs-32-alpha0.125": {"preset": "glyphs-32", "alpha": 0.125, "steps_factor": 4 / 3},
    "glyphs-32-margin1.2": {"preset": "glyphs-32", "margin_factor": 1.2, "steps_factor": 4 / 3},
    "soft-mnist-joint": {"preset": "soft-introvae-mnist", "arch": "light", "encoder_batch": "joint",
                         "steps_factor": 0.35},
    # Issue 29's untried leads, on today's game and on the joint batch: R1 on the encoder's KL of real images (gamma;
    # lazy, every 4th game at 4x the weight), two time-scale learning rates (a slower generator or a faster encoder),
    # m ramped up from the warm-up's KL(real), and DiffAugment's translation alone of the images the encoder judges.
    "glyphs-32-r1": {"preset": "glyphs-32", "r1": 0.1, "r1_every": 4, "steps_factor": 4 / 3},
    "glyphs-32-r1-0.01": {"preset": "glyphs-32", "r1": 0.01, "r1_every": 4, "steps_factor": 4 / 3},
    "glyphs-32-r1-every1": {"preset": "glyphs-32", "r1": 0.1, "steps_factor": 4 / 3},
    "glyphs-32-ttur": {"preset": "glyphs-32", "generator_lr_factor": 0.5, "steps_factor": 4 / 3},
    "glyphs-32-ttur-enc2": {"preset": "glyphs-32", "encoder_lr_factor": 2.0, "steps_factor": 4 / 3},
    "glyphs-32-margin-ramp": {"preset": "glyphs-32", "margin_ramp": 1000, "steps_factor": 4 / 3},
    "glyphs-32-margin-ramp-3000": {"preset": "glyphs-32", "margin_ramp": 3000, "steps_factor": 4 / 3},
    "glyphs-32-translate": {"preset": "glyphs-32", "translate": 0.125, "steps_factor": 4 / 3},
    "glyphs-32-translate-0.0625": {"preset": "glyphs-32", "translate": 0.0625, "steps_factor": 4 / 3},
    # the strengths kept after the screen on seed 0, on the joint batch
    "glyphs-32-r1-0.01-joint": {"preset": "glyphs-32", "r1": 0.01, "r1_every": 4, "encoder_batch": "joint",
                                "steps_factor": 4 / 3},
    "glyphs-32-ttur-joint": {"preset": "glyphs-32", "generator_lr_factor": 0.5, "encoder_batch": "joint",
                             "steps_factor": 4 / 3},
    "glyphs-32-margin-ramp-joint": {"preset": "glyphs-32", "margin_ramp": 1000, "encoder_batch": "joint",
                                    "steps_factor": 4 / 3},
    "glyphs-32-margin-ramp-3000-joint": {"preset": "glyphs-32", "margin_ramp": 3000, "encoder_batch": "joint",
                                         "steps_factor": 4 / 3},
    "glyphs-32-translate-joint": {"preset": "glyphs-32", "translate": 0.125, "encoder_batch": "joint",
                                  "steps_factor": 4 / 3},
    "glyphs-32-translate-0.0625-joint": {"preset": "glyphs-32", "translate": 0.0625, "encoder_batch": "joint",
                                         "steps_factor": 4 / 3},
}


JUDGED = ("legible", "class_cover", "fd", "hf_ratio")


def run_lead(name: str, lead: dict, seed: int, steps: int, every: int, samples: int, extra: dict, work: Path,
             fitted: int = 0, fitted_every: int = 1, temperature: float | None = None) -> list:
    from glyphs import judge_images

    import introvae
    from introvae.images import to_uint8
    from introvae.latent import fitted_density

    lead_steps = int(round(steps * lead.get("steps_factor", 1.0)))
    config = lead_config(lead, seed, lead_steps, checkpoint_every=every, keep_checkpoints=1000, grid_every=0, **extra)
    run = work / f"{name}-seed{seed}"
    if (run / "config.json").is_file() and not (run / "checkpoints" / f"model-{lead_steps:08d}.safetensors").is_file():
        # a kept run that stopped earlier is continued to the longer budget (the curves up to an hour)
        run = introvae.train(resume=run, steps=lead_steps, checkpoint_every=every, keep_checkpoints=1000, quiet=True)
    elif not (run / "checkpoints" / f"model-{lead_steps:08d}.safetensors").is_file():  # a kept run is judged again
        run = introvae.train(config, out=run, quiet=True)
    seconds = {}
    for line in (Path(run) / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "step" in record and "time" in record:
            seconds[record["step"]] = record["time"]
    rows = []
    for step in sorted({*range(every, lead_steps + 1, every), lead_steps}):
        model = introvae.Model.load(run, step=step, device="cpu")
        judged = judge_images(to_uint8(model.sample(samples, seed=0, prior="normal").cpu()))
        at = seconds.get(step, seconds[max(s for s in seconds if s <= step)] if seconds else 0.0)
        rows.append({"lead": name, "seed": seed, "step": step, "seconds": round(at, 1),
                     **{k: round(judged[k], 4) for k in JUDGED}, **{f"{k}_fitted": "" for k in JUDGED if fitted}})
        if fitted and step % fitted_every == 0:
            # the same checkpoint sampled from a mixture fitted to its training codes (introvae.density)
            density = fitted_density(model, fitted)
            if temperature is not None:
                density = dataclasses.replace(density, temperature=temperature)
            judged = judge_images(to_uint8(model.sample(samples, seed=0, prior=density).cpu()))
            rows[-1].update({f"{k}_fitted": round(judged[k], 4) for k in JUDGED})
        print(" | ".join(str(v) for v in rows[-1].values()), file=sys.stderr, flush=True)
    return rows


def lead_config(lead: dict, seed: int, steps: int, **extra):
    import introvae
    options = {k: v for k, v in lead.items() if k not in ("preset", "steps_factor")}
    return introvae.from_preset(lead["preset"], data="glyphs", channels=1, image_size=32, seed=seed, steps=steps,
                                **{**options, **extra})


def step_costs(names: list[str], repeats: int, steps: int, extra: dict) -> dict[str, float]:
    """Median seconds of one step after the warm-up of each lead (its game steps and the VAE steps between them, as
    --game-every mixes them), timed round-robin in this process, so that a busy spell of a shared machine slows every
    lead alike. The runs' own clocks are not comparable when other jobs share the machine; steps times these costs
    are (the warm-up's steps cost what the VAE lead's steps cost: the same networks and the same VAE step)."""
    import statistics
    import time

    from introvae.data import open_data
    from introvae.train import Trainer

    trainers = {}
    work = Path(tempfile.mkdtemp(prefix="step-cost-"))
    for name in names:
        # a fixed margin and no ramp: no warm-up is run here to measure KL(real) (a ramp changes only a number)
        config = lead_config(LEADS[name], 0, 10**6, grid_every=0, checkpoint_every=0, margin=35.0, margin_ramp=0,
                             **extra)
        data = open_data(config.dataset.path, 32, 1, config.dataset.test_fraction, 0, config.dataset.builtin_count)
        trainer = Trainer(config, work / name, data, quiet=True)
        trainer.step = trainer.engine.objective.warmup_steps
        for _ in range(4):  # untimed: allocations, first-call costs
            trainer.train_step()
        trainers[name] = trainer
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            seconds[name].append((time.perf_counter() - start) / steps)
    for trainer in trainers.values():
        trainer.close()
    return {name: statistics.median(values) for name, values in seconds.items()}


def table(rows: list[dict]) -> str:
    columns = ["lead", "seed", "step", "seconds", *JUDGED]
    columns += [f"{k}_fitted" for k in JUDGED if f"{k}_fitted" in rows[0]]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", nargs="+", default=["base", "vae"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--list", action="store_true", help="print the leads and exit")
    parser.add_argument("--keep", type=Path, help="keep the run directories under this folder; a finished run "
                        "already there is judged again without training")
    parser.add_argument("--fitted", type=int, default=0, metavar="K", help="also judge samples from a K-component "
                        "mixture fitted to each checkpoint's training codes (`introvae sample --prior fitted`)")
    parser.add_argument("--temperature", type=float, help="with --fitted: the mixture's sampling temperature "
                        "(default: the library's, introvae.density.DEFAULT_TEMPERATURE)")
    parser.add_argument("--fitted-every", type=int, default=1, metavar="N", help="with --fitted: only at the "
                        "checkpoints whose step is a multiple of N")
    parser.add_argument("--step-cost", action="store_true", help="only time one step after the warm-up of each lead, "
                        "round-robin (see step_costs), and write benchmarks/results/step-cost.json")
    parser.add_argument("--repeats", type=int, default=7, help="with --step-cost: rounds of the round-robin")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "game.json")
    args = parser.parse_args()
    if args.list:
        for name, lead in LEADS.items():
            print(f"{name}: {lead}")
        return 0
    unknown = [name for name in args.leads if name not in LEADS]
    if unknown:
        print(f"--leads {' '.join(unknown)}: unknown; --list shows them.", file=sys.stderr)
        return 2
    extra = {}
    for item in args.set:
        key, _, value = item.partition("=")
        extra[key] = json.loads(value)
    if args.step_cost:
        costs = step_costs(args.leads, args.repeats, 20, extra)
        print("| lead | ms per step | relative to the first |\n|---|---|---|")
        for name, cost in costs.items():
            print(f"| {name} | {1000 * cost:.1f} | {cost / costs[args.leads[0]]:.2f} |")
        out = HERE / "results" / "step-cost.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(out.read_text())["seconds_per_step"] if out.is_file() else {}
        out.write_text(json.dumps({"processor": platform.processor() or platform.machine(),
                                   "seconds_per_step": {**previous, **costs}}, indent=2) + "\n")
        print(f"wrote {out}", file=sys.stderr)
        return 0
    work = args.keep or Path(tempfile.mkdtemp(prefix="game-"))
    rows = []
    for seed in args.seeds:
        for name in args.leads:
            rows += run_lead(name, LEADS[name], seed, args.steps, args.every, args.samples, extra, work, args.fitted,
                             args.fitted_every, args.temperature)
    print(table(rows))
    last = [r for i, r in enumerate(rows) if i + 1 == len(rows) or rows[i + 1]["lead"] != r["lead"]
            or rows[i + 1]["seed"] != r["seed"]]
    print("\nlast checkpoint of each run:\n" + table(last))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    keys = {(r["lead"], r["seed"]) for r in rows}
    merged = [r for r in previous if (r["lead"], r["seed"]) not in keys] + rows
    args.out.write_text(json.dumps({"processor": platform.processor() or platform.machine(), "steps": args.steps,
                                    "set": extra, "rows": merged}, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
