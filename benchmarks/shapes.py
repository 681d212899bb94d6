"""How recognisable generated shapes are: a small classifier of the built-in shapes' kinds, scoring sets of images.

    python benchmarks/shapes.py [--size 32] [--steps 1500]

Why. SWD and FD-8px compare distributions of pixels: they move when colours, sizes and positions match, and they
can reward textures (README, "Tried and left out"). Issue 9 asks whether the demo's samples show shapes you could
name. This module puts a number on that: a convolutional classifier trained on the built-in generator's one-shape
images (`make_shapes(..., one_shape=True)`, eight kinds) plus a ninth class, "no shape", made of the same images
spoilt in one of four ways: blurred by a box filter (3-7 px at 32 x 32), so that a soft blob where a shape should
be is not counted as a circle; cut into 4 x 4 patches shuffled in place, which keeps the colours and destroys the
outline; with Gaussian pixel noise (sigma 0.1-0.3), the speckled texture that an introspective generator can paint;
or blurred and then speckled, the textured blob. Without the last three, textured samples were named one kind with
confidence. Written here because no library ships a classifier of these shapes, and nothing can be downloaded.

For a set of images it reports:

* `recognised`: the fraction of images whose most likely class is one of the eight kinds with probability at least
  RECOGNISED_P (a shape the classifier names, not "no shape"), where each kind counts for at most 1/8 of the images
  (the built-in kinds are equally frequent). Without that cap a generator that paints one texture the classifier
  takes for a kind scored 0.2-0.6; with it, one kind everywhere scores at most 0.125;
* `shape_is`: exp(E_x KL(p(kind | x) || p(kind))) over the eight kinds, the Inception Score's form on this
  classifier; 8 when every image is confidently one kind and the kinds are equally frequent, 1 when every image gets
  the same distribution (all blobs, or all circles).

The built-in set itself has one or two shapes per image, so its own values are the reference (quality.py's "real"
row), not 1.0 and 8. The classifier is trained once per size with fixed seeds (about 3 minutes on 2 cores) and kept
in benchmarks/results/shape-classifier-<size>.pt; the command line retrains it and prints its held-out accuracy and
the scores of built-in, one-shape and spoilt images (benchmarks/results/shapes-<size>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

RESULTS = Path(__file__).parent / "results"
VERSION = 3  # bump when the training changes, so a kept classifier is retrained
TRAIN_SEED, TEST_SEED = 101, 202  # one-shape sets, disjoint from the built-in set's seed (1234)
TRAIN_IMAGES, TEST_IMAGES = 16384, 2048
BATCH, LR, DEFAULT_STEPS = 64, 2e-3, 1500
BLUR_SIZES = (3, 5, 7)  # box-filter widths of the "no shape" class, in pixels of a 32 x 32 image
PATCH = 4  # side of the shuffled patches, in pixels of a 32 x 32 image
NOISE_SIGMAS = (0.1, 0.3)  # range of the pixel noise's standard deviation
RECOGNISED_P = 0.5


def kinds() -> tuple[str, ...]:
    from introvae.data.shapes import SHAPE_KINDS

    return SHAPE_KINDS


class ShapeClassifier(nn.Module):
    """(N, 3, S, S) in [0, 1] -> logits over the eight kinds and "no shape" (last)."""

    def __init__(self, classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in ((3, 32), (32, 64), (64, 128)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(128, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _blur(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image box-blurred with a width from BLUR_SIZES (scaled to the image size), edges replicated."""
    out = torch.empty_like(x)
    widths = torch.randint(len(BLUR_SIZES), (x.shape[0],), generator=generator)
    for i, base in enumerate(BLUR_SIZES):
        chosen = widths == i
        if chosen.any():
            k = max(3, round(base * x.shape[-1] / 32) | 1)
            padded = F.pad(x[chosen], (k // 2,) * 4, mode="replicate")
            out[chosen] = F.avg_pool2d(padded, k, stride=1)
    return out


def _shuffle_patches(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image cut into square patches that are shuffled in place (its own permutation per image)."""
    n, c, s, _ = x.shape
    p = max(2, PATCH * s // 32)
    g = s // p
    patches = x[:, :, :g * p, :g * p].reshape(n, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(n, g * g, c, p, p)
    order = torch.argsort(torch.rand(n, g * g, generator=generator), dim=1)
    patches = torch.gather(patches, 1, order[:, :, None, None, None].expand_as(patches))
    out = x.clone()
    out[:, :, :g * p, :g * p] = patches.reshape(n, g, g, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(n, c, g * p, g * p)
    return out


def _noisy(x: Tensor, generator: torch.Generator) -> Tensor:
    sigma = torch.empty(x.shape[0], 1, 1, 1).uniform_(*NOISE_SIGMAS, generator=generator)
    return (x + sigma * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def labelled_set(count: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """`count` one-shape images in [0, 1] labelled with their kind's index, then `count` of the same images spoilt
    (blurred, patch-shuffled, noisy, or blurred and noisy: a quarter each) labelled "no shape"."""
    from introvae.data.shapes import make_shapes, shape_kinds
    from introvae.images import to_float

    images = to_float(make_shapes(count, size, 3, seed=seed, one_shape=True))
    names = kinds()
    labels = torch.tensor([names.index(k[0]) for k in shape_kinds(count, seed=seed, one_shape=True)])
    generator = torch.Generator().manual_seed(seed)
    quarters = torch.arange(count) % 4
    spoilt = torch.empty_like(images)
    spoils = (_blur, _shuffle_patches, _noisy, lambda x, g: _noisy(_blur(x, g), g))
    for i, spoil in enumerate(spoils):
        spoilt[quarters == i] = spoil(images[quarters == i], generator)
    return torch.cat([images, spoilt]), torch.cat([labels, torch.full_like(labels, len(names))])


def train_classifier(size: int, steps: int = DEFAULT_STEPS) -> tuple[ShapeClassifier, dict]:
    torch.manual_seed(0)
    x, y = labelled_set(TRAIN_IMAGES, size, TRAIN_SEED)
    model = ShapeClassifier(len(kinds()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=steps)
    order = torch.Generator().manual_seed(1)
    started = time.perf_counter()
    model.train()
    for _ in range(steps):
        batch = torch.randint(x.shape[0], (BATCH,), generator=order)
        loss = F.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    x_test, y_test = labelled_set(TEST_IMAGES, size, TEST_SEED)
    with torch.no_grad():
        predicted = torch.cat([model(chunk).argmax(1) for chunk in x_test.split(256)])
    shapes = y_test < len(kinds())
    info = {"size": size, "steps": steps, "train_seconds": round(time.perf_counter() - started, 1),
            "accuracy_kinds": (predicted[shapes] == y_test[shapes]).float().mean().item(),
            "accuracy_no_shape": (predicted[~shapes] == y_test[~shapes]).float().mean().item()}
    return model, info


def load_classifier(size: int) -> ShapeClassifier:
    """The kept classifier for `size`, trained and saved first if there is none of this VERSION."""
    path = RESULTS / f"shape-classifier-{size}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        # A classifier of another version, or one retrained with other --steps, is not the benchmark's: retrain.
        if saved.get("version") == VERSION and saved.get("info", {}).get("steps") == DEFAULT_STEPS:
            model = ShapeClassifier(len(kinds()) + 1)
            model.load_state_dict(saved["state"])
            return model.eval()
    model, info = train_classifier(size)
    _save(model, info, path)
    return model


def _save(model: ShapeClassifier, info: dict, path: Path) -> None:
    """Write then rename, so that quality.py's processes, which may train at the same time, never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    torch.save({"version": VERSION, "state": model.state_dict(), "info": info}, partial)
    os.replace(partial, path)


@torch.no_grad()
def shape_scores(images_u8: Tensor, classifier: ShapeClassifier | None = None) -> dict:
    """`recognised` and `shape_is` (module docstring) of uint8 RGB images (N, 3, S, S)."""
    from introvae.images import to_float

    classifier = classifier or load_classifier(images_u8.shape[-1])
    probabilities = torch.cat([F.softmax(classifier(to_float(chunk)).double(), dim=1)
                               for chunk in images_u8.split(256)])
    n_kinds = len(kinds())
    top_p, top = probabilities.max(dim=1)
    named = top[(top < n_kinds) & (top_p >= RECOGNISED_P)]
    per_kind = torch.bincount(named, minlength=n_kinds).double() / images_u8.shape[0]
    recognised = per_kind.clamp(max=1.0 / n_kinds).sum().item()
    # Over the kinds alone, renormalised: the Inception Score's form.
    p_kind = probabilities[:, :n_kinds]
    p_kind = p_kind / p_kind.sum(dim=1, keepdim=True).clamp_min(1e-12)
    marginal = p_kind.mean(dim=0, keepdim=True)
    kl = (p_kind * (p_kind.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(dim=1)
    return {"recognised": recognised, "shape_is": kl.mean().exp().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    args = parser.parse_args()
    from introvae.data.shapes import SHAPES_SEED, make_shapes

    model, info = train_classifier(args.size, args.steps)
    _save(model, info, RESULTS / f"shape-classifier-{args.size}.pt")
    builtin = make_shapes(2048, args.size, 3, seed=SHAPES_SEED)
    one, _ = labelled_set(1024, args.size, TEST_SEED)
    rows = {"builtin set (1-2 shapes)": shape_scores(builtin, model),
            "one-shape test images": shape_scores((one[:1024] * 255).round().to(torch.uint8), model),
            "the same, spoilt (no shape)": shape_scores((one[1024:] * 255).round().to(torch.uint8), model)}
    print(f"classifier: {info}")
    print("| images | recognised | shape IS |\n|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['recognised']:.3f} | {row['shape_is']:.2f} |")
    (RESULTS / f"shapes-{args.size}.json").write_text(json.dumps({"classifier": info, "scores": rows}, indent=2))


if __name__ == "__main__":
    main()
