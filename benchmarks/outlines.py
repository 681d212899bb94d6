"""How fast an `--arch` family learns the built-in shapes' outlines, without any VAE or introspective term.

    python benchmarks/outlines.py [--archs light appb] [--budget-s 300] [--gray] [--every 1000]
                                  [--threads 1] [--jobs 1] [--out benchmarks/results/outlines.json]

Why. Issue 9 asks for samples whose shapes you can name after the demo's minutes. Every IntroVAE setting tried on
top of `builtin-32` left the reconstructions, not only the samples, as soft blobs at 3000 steps (README,
"Benchmarks"), so the question below the game is how fast the networks learn outlines at all. This benchmark
answers it with the simplest objective that needs outlines: a deterministic autoencoder (the encoder's mu fed to the
generator, the sum of squared errors, Adam), the networks, widths, latent size, batch and learning rate of the
`builtin-32` preset, and the run's precision as `--precision auto` picks it. A new network family is measured here
in minutes before it is worth an IntroVAE run.

Every `--every` steps and at the end it reconstructs 512 one-shape images that training never sees (the shape
classifier's held-out seed, benchmarks/shapes.py) with the batch's own batch-norm statistics, and reports their RMSE
(0-255); `named`, the fraction whose reconstruction the classifier names as the drawn kind with probability >= 0.5
(a blurred shape counts as "no shape"; the originals score about 0.99); and `kind`, the fraction whose most likely
kind, leaving "no shape" aside, is the drawn one (whether the blur still carries the outline; chance is 1/8).
`--gray` also trains and scores on the same images converted to gray and repeated over the three channels (same
networks, same classifier): how much of the difficulty is colour. Each (arch, colour) runs in its own process,
`--jobs` of them side by side (give each its own core: `--threads 1 --jobs 2` on 2 cores); it prints a table, writes
the JSON and, per run, a picture of 16 originals above their reconstructions (results/outlines-<arch>[-gray].png).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

RESULTS = Path(__file__).parent / "results"
PRESET = "builtin-32"
EVAL_IMAGES = 512
RECOGNISED_P = 0.5
COLUMNS = [("arch", "{}"), ("colour", "{}"), ("precision", "{}"), ("steps", "{}"), ("seconds", "{:.0f}"),
           ("rmse", "{:.2f}"), ("named", "{:.3f}"), ("kind", "{:.3f}"), ("named_originals", "{:.3f}")]


def _evaluate(encoder, generator, images: torch.Tensor, labels: torch.Tensor,
              classifier) -> tuple[dict, torch.Tensor]:
    """({rmse, named, kind}, reconstructions) of `images` (float, [0, 1]) with the batch's own statistics: the
    networks stay in train mode (the running averages this pass moves are never read here)."""
    with torch.no_grad():
        reconstructions = generator(encoder(images)[0]).float().clamp(0, 1)
        logits = classifier(reconstructions)
    rmse = (reconstructions - images).pow(2).mean().sqrt().item() * 255
    return {"rmse": rmse, "named": _named(logits, labels), "kind": _kind(logits, labels)}, reconstructions


def _named(logits: torch.Tensor, labels: torch.Tensor) -> float:
    top_p, top = F.softmax(logits, dim=1).max(dim=1)
    return ((top == labels) & (top_p >= RECOGNISED_P)).float().mean().item()


def _kind(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits[:, :-1].argmax(dim=1) == labels).float().mean().item()  # the last class is "no shape"


def run_one(arch: str, gray: bool, budget_s: float, steps: int, every: int, threads: int) -> dict:
    from introvae.config import from_preset
    from introvae.data.shapes import SHAPE_KINDS, SHAPES_SEED, make_shapes, shape_kinds
    from introvae.images import save_image
    from introvae.nets.build import build_networks
    from introvae.nets.conv import init_weights
    from introvae.precision import autocast, resolve_precision

    sys.path.insert(0, str(Path(__file__).parent))
    from shapes import TEST_SEED, load_classifier

    torch.set_num_threads(threads)
    config = from_preset(PRESET, arch=arch, channels=3)
    device = torch.device("cpu")
    precision, _ = resolve_precision("auto", device)
    # Gray images come from make_shapes itself (PIL's luma), repeated over three channels so that the networks
    # and the classifier are the same as in colour.
    channels = 1 if gray else 3
    dataset = config.dataset
    train_u8 = make_shapes(dataset.builtin_count, dataset.image_size, channels, seed=SHAPES_SEED)
    test_u8 = make_shapes(EVAL_IMAGES, dataset.image_size, channels, seed=TEST_SEED, one_shape=True)
    train, test = (u8.expand(-1, 3, -1, -1).float() / 255 for u8 in (train_u8, test_u8))
    labels = torch.tensor([SHAPE_KINDS.index(kinds[0]) for kinds in shape_kinds(EVAL_IMAGES, TEST_SEED, True)])
    classifier = load_classifier(dataset.image_size)

    encoder, generator = build_networks(config)
    init = torch.Generator().manual_seed(config.run.seed)
    init_weights(encoder, init)
    init_weights(generator, init)
    optimizer = torch.optim.Adam([*encoder.parameters(), *generator.parameters()], lr=config.optim.lr)
    order = torch.Generator().manual_seed(config.run.seed)

    curve, step, start = [], 0, time.perf_counter()
    train_seconds = 0.0
    while (step < steps) if steps else (train_seconds < budget_s):
        tick = time.perf_counter()
        batch = train[torch.randint(len(train), (config.optim.batch_size,), generator=order)]
        with autocast(precision, device):
            reconstructions = generator(encoder(batch)[0])
        loss = (reconstructions.float() - batch).pow(2).flatten(1).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        train_seconds += time.perf_counter() - tick
        if step % every == 0:
            scores, _ = _evaluate(encoder, generator, test, labels, classifier)
            curve.append({"steps": step, "seconds": train_seconds, **scores})
            print(f"  {arch} {'gray' if gray else 'colour'} step {step}: {train_seconds:.0f} s, "
                  f"RMSE {scores['rmse']:.2f}, named {scores['named']:.3f}, kind {scores['kind']:.3f}", flush=True)
    scores, reconstructions = _evaluate(encoder, generator, test, labels, classifier)
    with torch.no_grad():
        named_originals = _named(classifier(test), labels)
    picture = RESULTS / f"outlines-{arch}{'-gray' if gray else ''}.png"
    save_image(torch.cat([test[:16], reconstructions[:16]]), picture, nrow=16)
    return {"arch": arch, "colour": "gray" if gray else "colour", "precision": precision, "steps": step,
            "seconds": train_seconds, **scores, "named_originals": named_originals,
            "curve": curve, "picture": str(picture), "wall_seconds": time.perf_counter() - start}


def _format(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[name]) for name, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    from introvae.nets.build import ARCHITECTURES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    parser.add_argument("--budget-s", type=float, default=300.0, help="training seconds per run (default 300)")
    parser.add_argument("--steps", type=int, default=0, help="train this many steps instead of --budget-s")
    parser.add_argument("--every", type=int, default=1000, help="score every this many steps (default 1000)")
    parser.add_argument("--gray", action="store_true", help="also train and score on the gray version of the images")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (default 1; at most one per core)")
    parser.add_argument("--out", type=Path, default=RESULTS / "outlines.json")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # arch, colour: run one in this process
    args = parser.parse_args()
    if args.budget_s <= 0 and args.steps <= 0 or min(args.every, args.threads, args.jobs) < 1:
        parser.error("--budget-s or --steps must be positive, and --every, --threads and --jobs at least 1")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.one:
        row = run_one(args.one[0], args.one[1] == "gray", args.budget_s, args.steps, args.every, args.threads)
        print("RESULT " + json.dumps(row))
        return

    def child(arch: str, colour: str) -> dict:
        command = [sys.executable, __file__, "--one", arch, colour, "--budget-s", str(args.budget_s),
                   "--steps", str(args.steps), "--every", str(args.every), "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = done.stdout.splitlines()
        print(f"{arch} autoencoder, {colour} built-in shapes:", flush=True)
        print("\n".join(line for line in lines if not line.startswith("RESULT ")) or done.stderr, flush=True)
        result = [line for line in lines if line.startswith("RESULT ")]
        return (json.loads(result[0][len("RESULT "):]) if result else
                {"arch": arch, "colour": colour, "error": done.stderr.strip().splitlines()[-1:]})

    runs = [(arch, colour) for arch in args.archs for colour in ["colour"] + (["gray"] if args.gray else [])]
    print(f"{len(runs)} runs, {args.jobs} at a time, {args.threads} thread(s) each ...", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda run: child(*run), runs))
    ok = [row for row in rows if "error" not in row]
    print(_format(ok))
    args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                                    "preset": PRESET, "threads": args.threads, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
