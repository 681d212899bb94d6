"""The glyph judge: whether generated glyphs (--data glyphs) can be read, cover every class, look like the data, and
are as sharp as the data: neither blurred nor speckled.

    python benchmarks/glyphs.py [--mode digits] [--steps 2000]      # train (once) and report the real-image floors
    python benchmarks/glyphs.py --judge RUN_DIR|FILE.npz|DIR ... [--num 1000] [--seed 0] [--mode digits]

Why. Pixel distances (SWD, FD-8px) move with blur and texture alike; issue 20 needs to tell a blurred digit from a
speckled one and both from a clean one. A small CNN is trained once on the glyph generator's own labelled images
(`make_glyphs(..., seed=JUDGE_SEED)`, images 0 .. TRAIN_IMAGES-1, at 32 x 32 gray) over the classes of the mode: the
ten digits, or digits and letters (--mode all). There is no "no glyph" class: one trained on blurred images would call
blur illegible and so mix the two failures that the high-frequency ratio keeps apart. For a set of images it reports:

* `legible`: the share of images whose most likely class has p >= LEGIBLE_P;
* `class_cover`: the entropy of the histogram of predicted classes over log(number of classes): 1 when every class is
  predicted equally often, 0 when one class is predicted for all;
* `fd`: the Frechet distance between Gaussians fitted to the classifier's penultimate features (128-d) of the images
  and of REFERENCE_COUNT held-out glyphs (indices after those the classifier trained and was tested on);
* `hf_ratio`: the share of each image's spectral power above HF_CUTOFF cycles per pixel (radial frequency of the 2-D
  FFT after subtracting the image's mean), averaged over the images, divided by the same average for the held-out
  glyphs at the same size: 1 is as sharp as the data, blur gives < 1, speckle and texture > 1.

Images of any size and 1 or 3 channels are judged in gray (their luma); the classifier sees them resized to 32 x 32,
the high-frequency ratio at their own size. The real-image floor of every figure is another block of held-out glyphs
judged the same way (`real_floor`). The classifier is kept in benchmarks/results/glyph-judge-<mode>.pt with VERSION
and its steps, and retrained when either differs; the command line prints its held-out accuracy, the floors and the
figures of blurred and speckled glyphs, and writes benchmarks/results/glyphs-<mode>.json (or --out).

From other benchmarks: `judge_images(images_uint8)` and `judge_run(run_dir, num, seed)` return the figures as a dict.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

RESULTS = Path(__file__).parent / "results"
VERSION = 1  # bump when the classifier's data, network or training changes, so a kept one is retrained
JUDGE_SEED = 303  # the judge's own glyphs, apart from the data set's (GLYPHS_SEED)
JUDGE_SIZE = 32
TRAIN_IMAGES, TEST_IMAGES, REFERENCE_COUNT = 24576, 4096, 2048
# Index blocks of the judge's glyphs: training, accuracy test, the reference of FD and the HF ratio, then the
# floor's stand-in for samples.
TEST_START = TRAIN_IMAGES
REFERENCE_START = TEST_START + TEST_IMAGES
FLOOR_START = REFERENCE_START + REFERENCE_COUNT
BATCH, LR, DEFAULT_STEPS = 128, 3e-3, 800
LEGIBLE_P = 0.9
HF_CUTOFF = 0.3  # cycles per pixel; Nyquist is 0.5


class GlyphClassifier(nn.Module):
    """(N, 1, 32, 32) gray in [0, 1] -> logits over the mode's classes; `features` gives the penultimate 128-d."""

    FEATURES = 128

    def __init__(self, classes: int):
        super().__init__()
        # One convolution per resolution, halving 32 -> 4, then one at 4 x 4: about 4 M multiply-adds an image,
        # so that training takes about a minute on two cores; held-out accuracy is still about 1.
        layers: list[nn.Module] = []
        for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        layers += [nn.Conv2d(64, self.FEATURES, 3, padding=1), nn.BatchNorm2d(self.FEATURES), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(self.FEATURES, classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def classes(mode: str) -> tuple[str, ...]:
    from introvae.data.glyphs import glyph_classes

    return glyph_classes(mode)


def judge_glyphs(count: int, size: int, mode: str, start: int) -> Tensor:
    """The judge's glyphs start .. start+count-1, uint8 (N, 1, size, size)."""
    from introvae.data.glyphs import make_glyphs

    return make_glyphs(count, size, 1, seed=JUDGE_SEED, mode=mode, start=start)


def judge_labels(count: int, mode: str, start: int) -> Tensor:
    from introvae.data.glyphs import glyph_labels

    names = classes(mode)
    return torch.tensor([names.index(label) for label in glyph_labels(count, mode, seed=JUDGE_SEED, start=start)])


def as_gray_nchw(images: Tensor | np.ndarray) -> Tensor:
    """uint8 images NHWC or NCHW (or NHW), 1 or 3 channels -> float gray (N, 1, S, S) in [0, 1]."""
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, Tensor) else images
    if x.dtype != torch.uint8:
        raise ValueError(f"the judge takes uint8 images, got {x.dtype}")
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4:
        raise ValueError(f"the judge takes (N, C, S, S) or (N, S, S, C) images, got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3]:
        raise ValueError(f"the judge takes square images with 1 or 3 channels, got shape {tuple(x.shape)}")
    x = x.float() / 255
    if x.shape[1] == 3:  # ITU-R 601-2 luma, as PIL's convert("L")
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return x


def _judge_size(x: Tensor) -> Tensor:
    """Gray images resized to the classifier's 32 x 32 (area averaging down, bilinear up)."""
    if x.shape[-1] == JUDGE_SIZE:
        return x
    mode = "area" if x.shape[-1] > JUDGE_SIZE else "bilinear"
    return F.interpolate(x, size=(JUDGE_SIZE, JUDGE_SIZE), mode=mode, **({} if mode == "area" else
                                                                         {"align_corners": False}))


# ------------------------------------------------------------------------------------------------ the figures


def high_frequency_share(x: Tensor, cutoff: float = HF_CUTOFF) -> Tensor:
    """Per image (N, 1, S, S): the share of its power (mean removed) at radial frequencies above `cutoff` cycles per
    pixel; 0 for a flat image, which has no power."""
    x = x.double()
    spectrum = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True)).abs().square().sum(dim=1)
    frequencies = torch.fft.fftfreq(x.shape[-1], dtype=torch.float64)
    radius = (frequencies[:, None].square() + frequencies[None, :].square()).sqrt()
    total = spectrum.sum(dim=(-2, -1))
    high = (spectrum * (radius > cutoff)).sum(dim=(-2, -1))
    return torch.where(total > 0, high / total.clamp_min(1e-30), torch.zeros_like(total))


def class_cover(predicted: Tensor, num_classes: int) -> float:
    """Entropy of the histogram of predicted class indices over log(num_classes)."""
    p = torch.bincount(predicted.flatten(), minlength=num_classes).double()
    p = p / p.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return entropy / math.log(num_classes)


@torch.no_grad()
def _classify(classifier: GlyphClassifier, x: Tensor) -> tuple[Tensor, Tensor]:
    """(probabilities, penultimate features) of gray images in [0, 1], in chunks."""
    probabilities, features = [], []
    for chunk in _judge_size(x).split(512):
        f = classifier.features(chunk)
        features.append(f.double())
        probabilities.append(F.softmax(classifier.head(f).double(), dim=1))
    return torch.cat(probabilities), torch.cat(features)


def reference_glyphs(mode: str, size: int) -> Tensor:
    """The held-out glyphs that FD and the HF ratio compare with: REFERENCE_COUNT of them, uint8 (N, 1, size, size)."""
    return judge_glyphs(REFERENCE_COUNT, size, mode, REFERENCE_START)


def _reference_stats(classifier: GlyphClassifier, reference_u8: Tensor | np.ndarray) -> tuple[Tensor, float]:
    """Penultimate features of the reference images and their mean high-frequency share."""
    r = as_gray_nchw(reference_u8)
    return _classify(classifier, r)[1], high_frequency_share(r).mean().item()


@lru_cache(maxsize=8)
def _kept_reference_stats(mode: str, size: int) -> tuple[Tensor, float]:
    """`_reference_stats` of the kept classifier and the held-out glyphs, once per process for each mode and size."""
    return _reference_stats(load_classifier(mode), reference_glyphs(mode, size))


def judge_images(images: Tensor | np.ndarray, mode: str = "digits", classifier: GlyphClassifier | None = None,
                 reference: Tensor | np.ndarray | None = None) -> dict:
    """legible, class_cover, fd and hf_ratio (module docstring) of uint8 images NCHW or NHWC.

    `reference` (uint8 images) replaces the held-out glyphs as what FD and the HF ratio compare with; `classifier`
    replaces the kept one (tests give a small one)."""
    from introvae.metrics.fid import fid

    x = as_gray_nchw(images)
    if x.shape[0] < 2:
        raise ValueError(f"the judge needs at least 2 images, got {x.shape[0]}")
    if reference is not None and as_gray_nchw(reference).shape[-1] != x.shape[-1]:
        raise ValueError(f"the reference images are {as_gray_nchw(reference).shape[-1]} px and the judged ones "
                         f"{x.shape[-1]} px: give them at the same size")
    if classifier is None and reference is None:
        classifier = load_classifier(mode)
        reference_features, reference_hf = _kept_reference_stats(mode, x.shape[-1])
    else:
        classifier = classifier if classifier is not None else load_classifier(mode)
        reference_u8 = reference if reference is not None else reference_glyphs(mode, x.shape[-1])
        reference_features, reference_hf = _reference_stats(classifier.eval(), reference_u8)
    classifier.eval()
    probabilities, features = _classify(classifier, x)
    top_p, top = probabilities.max(dim=1)
    return {"images": x.shape[0], "legible": (top_p >= LEGIBLE_P).double().mean().item(),
            "class_cover": class_cover(top, probabilities.shape[1]),
            "fd": fid(features.numpy(), reference_features.numpy()),
            "hf_ratio": high_frequency_share(x).mean().item() / reference_hf}


def judge_run(run_dir: str | Path, num: int = 1000, seed: int = 0, mode: str = "digits", device: str = "cpu") -> dict:
    """The figures of `num` samples of a run directory (or weights file), drawn by the library with `seed`."""
    from introvae import Model
    from introvae.images import to_uint8

    model = Model.load(run_dir, device=device)
    samples = to_uint8(model.sample(num, seed=seed).cpu())
    return judge_images(samples, mode)


def real_floor(mode: str = "digits", size: int = JUDGE_SIZE, num: int = 1000) -> dict:
    """The figures of `num` held-out real glyphs (another block than the reference): what a perfect generator gets."""
    return judge_images(judge_glyphs(num, size, mode, FLOOR_START), mode)


# ------------------------------------------------------------------------------------------- the classifier


def train_classifier(mode: str = "digits", steps: int = DEFAULT_STEPS) -> tuple[GlyphClassifier, dict]:
    """Train on the judge's glyphs 0 .. TRAIN_IMAGES-1; the info holds its accuracy on the next TEST_IMAGES."""
    torch.manual_seed(0)
    started = time.perf_counter()
    x = judge_glyphs(TRAIN_IMAGES, JUDGE_SIZE, mode, 0).float() / 255
    y = judge_labels(TRAIN_IMAGES, mode, 0)
    rendered = time.perf_counter()
    model = GlyphClassifier(len(classes(mode)))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=steps)
    order = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        batch = torch.randint(x.shape[0], (BATCH,), generator=order)
        loss = F.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    x_test = judge_glyphs(TEST_IMAGES, JUDGE_SIZE, mode, TEST_START).float() / 255
    y_test = judge_labels(TEST_IMAGES, mode, TEST_START)
    probabilities, _ = _classify(model, x_test)
    info = {"mode": mode, "steps": steps, "train_images": TRAIN_IMAGES,
            "render_seconds": round(rendered - started, 1),
            "train_seconds": round(time.perf_counter() - rendered, 1),
            "test_accuracy": (probabilities.argmax(dim=1) == y_test).double().mean().item()}
    return model, info


def classifier_path(mode: str) -> Path:
    return RESULTS / f"glyph-judge-{mode}.pt"


def _kept_state(mode: str) -> dict | None:
    """The kept classifier's weights, if the file holds this VERSION trained for DEFAULT_STEPS."""
    path = classifier_path(mode)
    saved = torch.load(path, weights_only=True) if path.exists() else {}
    current = saved.get("version") == VERSION and saved.get("info", {}).get("steps") == DEFAULT_STEPS
    return saved["state"] if current else None


@lru_cache(maxsize=None)
def load_classifier(mode: str = "digits") -> GlyphClassifier:
    """The kept classifier of `mode`, trained and saved first if there is none of this VERSION and DEFAULT_STEPS."""
    state = _kept_state(mode)
    if state is None:
        print(f"glyphs.py: training the {mode} judge (a few minutes, once) -> {classifier_path(mode)}",
              file=sys.stderr)
        model, info = train_classifier(mode)
        save_classifier(model, info, classifier_path(mode))
        return model
    model = GlyphClassifier(len(classes(mode)))
    model.load_state_dict(state)
    return model.eval()


def save_classifier(model: GlyphClassifier, info: dict, path: Path) -> None:
    """Written whole or not at all (the library's atomic write), so benchmarks running at once never read half."""
    from introvae.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({"version": VERSION, "state": model.state_dict(), "info": info}, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------------------- spoilt real glyphs


def blurred(images_u8: Tensor, sigma: float = 1.0) -> Tensor:
    """Gaussian blur of `sigma` pixels (at 32 px, scaled with the size), edges replicated."""
    sigma = sigma * images_u8.shape[-1] / JUDGE_SIZE
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-t.square() / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    x = images_u8.float()
    n, c, s, _ = x.shape
    x = F.pad(x.reshape(n * c, 1, s, s), (radius,) * 4, mode="replicate")
    x = F.conv2d(F.conv2d(x, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))
    return x.reshape(n, c, s, s).round().clamp(0, 255).to(torch.uint8)


def speckled(images_u8: Tensor, share: float = 0.05, seed: int = 0) -> Tensor:
    """Salt noise: a `share` of the pixels set to white."""
    generator = torch.Generator().manual_seed(seed)
    salt = torch.rand(images_u8.shape[0], 1, *images_u8.shape[2:], generator=generator) < share
    return torch.where(salt.expand_as(images_u8), torch.full_like(images_u8, 255), images_u8)


# --------------------------------------------------------------------------------------------- the command


def _load_set(path: Path, num: int, seed: int, mode: str) -> dict:
    """Judge a run directory or weights file (samples drawn here), or an .npz/.npy/folder of images."""
    from introvae.data import load_image_set

    if path.is_dir() and (path / "config.json").exists() or path.suffix == ".safetensors":
        return judge_run(path, num, seed, mode)
    return judge_images(load_image_set(path), mode)


def _table(rows: dict[str, dict]) -> str:
    lines = ["| images | legible (p >= 0.9) | class cover | FD | high-frequency ratio |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['legible']:.3f} | {row['class_cover']:.3f} | {row['fd']:.2f} | "
                     f"{row['hf_ratio']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="digits", choices=("digits", "letters", "all"),
                        help="the classes: the digits (--data glyphs), letters or both")
    parser.add_argument("--judge", nargs="+", type=Path, metavar="SET",
                        help="run directories, weights files, .npz/.npy files or folders of images to judge")
    parser.add_argument("--num", type=int, default=1000, help="samples drawn from each run (and real floor images)")
    parser.add_argument("--seed", type=int, default=0, help="the seed the runs' samples are drawn with")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="classifier training steps (without "
                        "--judge: retrain and keep it)")
    parser.add_argument("--size", type=int, default=JUDGE_SIZE, help="without --judge: the size of the floor rows")
    parser.add_argument("--out", type=Path, help="JSON file (default: benchmarks/results/glyphs-<mode>.json)")
    args = parser.parse_args()
    if args.num < 2:
        parser.error("--num must be at least 2")
    out = args.out or RESULTS / f"glyphs-{args.mode}.json"
    report: dict = {}
    if args.judge:
        load_classifier(args.mode)  # trained first if needed, so its message comes before the table
        rows = {"held-out real glyphs": real_floor(args.mode, JUDGE_SIZE, args.num)}
        rows.update({str(path): _load_set(path, args.num, args.seed, args.mode) for path in args.judge})
    else:
        model, info = train_classifier(args.mode, args.steps)
        if args.steps == DEFAULT_STEPS:
            save_classifier(model, info, classifier_path(args.mode))
        print(f"classifier: {info}")
        report["classifier"] = info
        real = judge_glyphs(args.num, args.size, args.mode, FLOOR_START)
        reference = reference_glyphs(args.mode, args.size)
        spoilt = {"held-out real glyphs (the floor)": real,
                  "the same, Gaussian blur sigma 1 px": blurred(real, 1.0),
                  "the same, Gaussian blur sigma 0.5 px": blurred(real, 0.5),
                  "the same, 5 % salt": speckled(real, 0.05),
                  "the same, 1 % salt": speckled(real, 0.01)}
        rows = {name: judge_images(images, args.mode, model, reference) for name, images in spoilt.items()}
    print(_table(rows))
    report["rows"] = rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
