"""The README's picture: 64 samples of each given run side by side, titled with the glyph judge's figures.

    python benchmarks/demo_picture.py RUN_A RUN_B [--labels "IntroVAE, 164 s" "VAE, 146 s"] [--out docs/demo/glyphs.png]
    python benchmarks/demo_picture.py RUN RUN VAE_RUN VAE_RUN --priors run normal run normal ...

Each run draws 1000 samples with seed 0 from the sampler --priors names for it, as `introvae sample --prior` does:
the run's code density (run, the default sampler; fitted on first use for a run without a stored one) or the prior
N(0, I) (normal, the papers' sampling); the judge (benchmarks/glyphs.py) scores all of them and the picture shows the
first 64. Prints the figures as a table row per run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="+", help="a title per run (default: the run directory's name)")
    parser.add_argument("--priors", nargs="+", choices=["run", "normal"], help="per run: where the codes come "
                        "from (default: run for every run)")
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "demo" / "glyphs.png")
    args = parser.parse_args()
    labels = args.labels or [run.name for run in args.runs]
    priors = args.priors or ["run"] * len(args.runs)
    if len(labels) != len(args.runs) or len(priors) != len(args.runs):
        print("--labels, --priors: give one per run.", file=sys.stderr)
        return 2

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from glyphs import judge_images

    from introvae import Model
    from introvae.images import to_uint8
    from introvae.latent import set_sampler

    figure, axes = plt.subplots(1, len(args.runs), figsize=(3.3 * len(args.runs), 3.8))
    axes = [axes] if len(args.runs) == 1 else list(axes)
    print("| run | legible | class cover | FD | HF ratio |\n| --- | --- | --- | --- | --- |")
    for axis, run, label, prior in zip(axes, args.runs, labels, priors):
        model = Model.load(run, device="cpu")
        print(f"{label}: sampling {set_sampler(model, prior)}", file=sys.stderr)
        samples = to_uint8(model.sample(args.num, seed=0).cpu())
        judged = judge_images(samples)
        print(f"| {label} | {judged['legible']:.3f} | {judged['class_cover']:.3f} | {judged['fd']:.1f} | "
              f"{judged['hf_ratio']:.2f} |")
        grid = samples[:64, 0].reshape(8, 8, *samples.shape[-2:]).permute(0, 2, 1, 3).reshape(
            8 * samples.shape[-2], 8 * samples.shape[-1])
        axis.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=255)
        axis.set_title(f"{label}\nlegible {judged['legible']:.2f}, FD {judged['fd']:.1f}, HF {judged['hf_ratio']:.2f}",
                       fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
