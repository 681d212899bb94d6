"""Evaluation of a trained run, or of any two image sets: the numbers the papers report, computed offline.

    evaluate_run(run_dir)                 samples (seeded) vs the run's held-out split (or another folder), the
                                          reconstruction errors of held-out images, nearest-neighbour grids
    evaluate_sets(samples, reference)     two sets of images, no model (like torch-fidelity with two inputs)
    light_evaluation(...)                 the cheap subset that `train --eval-every` logs with the losses

Metrics and their conventions (each module under `introvae.metrics` cites its reference):

* FID, KID, Inception Score, precision/recall: on the FID Inception-v3 (pool3 features, 2048-d; unbiased logits
  for IS), images given to it as uint8 like saved PNGs. They need the weights file; without it they are listed under
  "skipped" with the reason, and everything else is still computed.
* MS-SSIM diversity (IntroVAE Table 2, PGGAN): mean MS-SSIM of random pairs of samples, at 128x128 for larger
  images; the same figure for the reference images is the point of comparison. Lower means more diverse.
* SWD (PGGAN): sliced Wasserstein distance of 7x7 Laplacian-pyramid patches, x1e3, per level and averaged.
* Reconstructions of held-out images (posterior mean): RMSE on the 0-255 scale (App. D), PSNR in dB, SSIM, each per
  image and then averaged over images.
* Nearest neighbours (App. E): the closest training images of a few samples by L1 in pixel space and by cosine
  distance of Inception features, drawn as grids (a memorisation check).

Inception features of a reference set are cached on disk under a hash of the images' bytes and of the weights
file (EDM's `fid.py ref` idea, made automatic), so evaluating many runs against one data set pays for it once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .atomic import atomic_write_bytes, atomic_write_text
from .checkpoint import read_metadata
from .config import Config
from .data import DataSplit, ImageSource, cache_in_memory, open_data
from .data.imagesets import load_image_set
from .errors import DataError, UserError
from .images import save_image, to_float, to_uint8
from .latent.sets import set_sampler
from .metrics import METRICS, Metric
from .metrics.base import FEATURES, SetPair
from .metrics.inception import WeightsMissing, inception_features, load_inception
from .metrics.ssim import ssim
from .model import Model
from .rundir import RunDir
from .seeds_devices import resolve_device

__all__ = ["EvalSettings", "FeatureSpace", "evaluate_run", "evaluate_sets", "light_evaluation", "format_table",
           "load_image_set", "reconstruction_errors", "report_path"]

CACHE_ENV = "INTROVAE_CACHE"
_CHUNK = 500  # images generated, reconstructed or compared at a time


@dataclass
class EvalSettings:
    """How much to sample and how each metric is estimated; the defaults follow the papers' protocols."""

    num_samples: int = 10000  # IntroVAE's MS-SSIM uses 10K pairs; FID in the papers uses 50K samples
    seed: int = 0  # sample i is drawn with seed (seed, i); the metrics' random pairs, subsets and patches also use it
    batch_size: int = 64
    fid_weights: str | None = None
    download: bool = True  # fetch the Inception weights into the torch hub cache when a network is there
    device: str = "auto"
    msssim_pairs: int = 10000
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    pr_k: int = 3
    swd_descriptors: int = 128
    max_reconstructions: int = 10000
    neighbour_rows: int = 8  # samples shown in each nearest-neighbour grid (0: no grids)
    neighbour_k: int = 5  # neighbours per sample
    neighbour_pool: int = 5000  # training images searched in feature space (pixel space searches them all)

    def validate(self) -> "EvalSettings":
        for name in ("num_samples", "batch_size", "msssim_pairs", "kid_subsets", "kid_subset_size", "swd_descriptors"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}.")
        if self.pr_k < 1 or self.neighbour_k < 1 or self.neighbour_rows < 0:
            raise UserError("--pr-k and --neighbour-k must be at least 1, and --neighbour-rows at least 0.")
        return self


def _cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "introvae"


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(f"introvae: {message}", file=sys.stderr, flush=True)


class FeatureSpace:
    """The FID Inception network when its weights can be found, else the sentence that says why not."""

    def __init__(self, settings: EvalSettings, quiet: bool = True):
        self.batch_size, self.quiet = settings.batch_size, quiet
        self.model: torch.nn.Module | None = None
        self.missing: str | None = None
        try:
            self.model = load_inception(settings.fid_weights, device=resolve_device(settings.device),
                                        download=settings.download)
        except WeightsMissing as error:
            self.missing = str(error)

    @property
    def available(self) -> bool:
        return self.model is not None

    def of(self, images_u8: Tensor) -> dict[str, Tensor]:
        """pool (N, 2048) and logits (N, 1008) of uint8 images."""
        assert self.model is not None
        feats = inception_features(self.model, images_u8, batch_size=self.batch_size)
        return {"pool": feats["pool"], "logits": feats["logits_unbiased"]}

    def of_cached(self, images_u8: Tensor, what: str) -> dict[str, Tensor]:
        """Like `of`, but read from / written to the on-disk cache keyed by the images' bytes and the weights."""
        assert self.model is not None
        digest = hashlib.sha256()
        digest.update(repr((tuple(images_u8.shape), self.model.weights_sha256, 1)).encode())
        digest.update(images_u8.contiguous().numpy().tobytes())
        path = _cache_dir() / "inception-features" / f"{digest.hexdigest()[:32]}.npz"
        if path.exists():
            try:
                with np.load(path) as stored:
                    return {"pool": torch.from_numpy(stored["pool"]), "logits": torch.from_numpy(stored["logits"])}
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is recomputed and replaced
        _say(self.quiet, f"Inception features of {len(images_u8)} {what} (cached afterwards in {path.parent})")
        feats = self.of(images_u8)
        try:
            buffer = io.BytesIO()
            np.savez(buffer, pool=feats["pool"].numpy(), logits=feats["logits"].numpy())
            atomic_write_bytes(path, buffer.getvalue())
        except OSError as error:  # a read-only home must not stop an evaluation
            _say(self.quiet, f"could not cache Inception features in {path.parent} ({error.strerror}); set {CACHE_ENV}")
        return feats


# ---- metrics of two sets


def reconstruction_errors(originals_u8: Tensor, reconstructions: Tensor) -> dict[str, float]:
    """RMSE on the 0-255 scale, PSNR (dB, capped at 100 for identical images) and SSIM, each averaged over images.

    `reconstructions` are float images in [0, 1] (not quantised), `originals_u8` the uint8 images they came from.
    """
    originals = to_float(originals_u8).double()
    recs = reconstructions.detach().double().clamp(0, 1).cpu()
    mse_per_image = (originals - recs).pow(2).flatten(1).mean(1)
    rmse_255 = mse_per_image.sqrt() * 255.0
    psnr = 10.0 * torch.log10(1.0 / mse_per_image.clamp_min(1e-10))
    ssim_per_image = torch.cat([ssim(o, r, data_range=1.0).double() for o, r in
                                zip(originals.split(_CHUNK), recs.split(_CHUNK))])
    return {"rmse": float(rmse_255.mean()), "psnr": float(psnr.mean()), "ssim": float(ssim_per_image.mean()),
            "count": int(len(originals))}


def compare_sets(samples_u8: Tensor, reference_u8: Tensor, settings: EvalSettings, features: FeatureSpace | None,
                 reference_figures: bool = True, metrics: tuple[Metric, ...] = METRICS
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """Each of `metrics` (all registered ones by default) between generated and reference images; returns
    (results, skipped metric -> reason).

    A metric is skipped when it needs Inception features and the network is not there, or when the sets do not
    meet its requirements. `reference_figures` adds the reference set's own MS-SSIM and Inception Score, the
    points of comparison for the samples' values (the light evaluation during training leaves them out: they do
    not change).
    """
    results: dict[str, Any] = {"num_samples": len(samples_u8), "num_reference": len(reference_u8)}
    skipped: dict[str, str] = {}
    pair = SetPair(samples_u8, reference_u8, reference_figures=reference_figures)
    features_missing = None  # why the metrics on Inception features cannot run, if they cannot
    if features is None:
        features_missing = "the Inception network was not requested"
    elif not features.available:
        features_missing = features.missing or "the Inception network was not requested"
    for metric in metrics:
        if metric.needs == FEATURES and features_missing is not None:
            skipped[metric.name] = features_missing
            continue
        reason = metric.unmet_reason(samples_u8, reference_u8, settings)
        if reason is not None:
            skipped[metric.name] = reason
            continue
        if metric.needs == FEATURES and pair.sample_features is None:
            pair.sample_features = features.of(samples_u8)
            pair.reference_features = features.of_cached(reference_u8, "reference images")
        results[metric.name] = metric.compute(pair, settings)
    return results, skipped


# ---- nearest neighbours (App. E)


def nearest_by_pixels(queries_u8: Tensor, train: ImageSource, k: int) -> Tensor:
    """For each query image, the indices of its k training images with the smallest L1 distance in pixel space.

    The training images are read a chunk at a time (a folder source decodes them), keeping the k best so far.
    """
    queries = queries_u8.flatten(1).double()
    best_l1 = torch.empty((len(queries), 0), dtype=torch.float64)
    best_index = torch.empty((len(queries), 0), dtype=torch.long)
    for start in range(0, len(train), _CHUNK):
        stop = min(len(train), start + _CHUNK)
        l1 = torch.cdist(queries, train.get(list(range(start, stop))).flatten(1).double(), p=1)
        l1 = torch.cat([best_l1, l1], dim=1)
        index = torch.cat([best_index, torch.arange(start, stop).expand(len(queries), -1)], dim=1)
        keep = l1.topk(min(k, l1.shape[1]), dim=1, largest=False).indices
        best_l1, best_index = l1.gather(1, keep), index.gather(1, keep)
    return best_index


def nearest_by_features(query_features: Tensor, train_features: Tensor, k: int) -> Tensor:
    """Indices of the k training feature vectors with the highest cosine similarity to each query."""
    q = torch.nn.functional.normalize(query_features.double(), dim=1)
    t = torch.nn.functional.normalize(train_features.double(), dim=1)
    return (q @ t.T).topk(min(k, len(t)), dim=1).indices


def _neighbour_grid(queries_u8: Tensor, neighbours_u8: Tensor, path: Path) -> None:
    """Row r: query r, then its neighbours, nearest first."""
    rows = [torch.cat([queries_u8[r:r + 1], neighbours_u8[r]]) for r in range(len(queries_u8))]
    save_image(to_float(torch.cat(rows)), path, nrow=1 + neighbours_u8.shape[1])


def write_nearest_neighbours(samples_u8: Tensor, train: ImageSource, settings: EvalSettings,
                             features: FeatureSpace | None, out_dir: Path) -> dict[str, str]:
    """Draw nearest_pixels.png (and nearest_features.png with Inception features) into `out_dir`."""
    queries = samples_u8[:settings.neighbour_rows]
    k = min(settings.neighbour_k, len(train))
    written = {}
    index = nearest_by_pixels(queries, train, k)
    _neighbour_grid(queries, torch.stack([train.get(row.tolist()) for row in index]), out_dir / "nearest_pixels.png")
    written["pixels_l1"] = str(out_dir / "nearest_pixels.png")
    if features is not None and features.available:
        g = torch.Generator().manual_seed(settings.seed)
        pool_index = torch.randperm(len(train), generator=g)[:settings.neighbour_pool].sort().values
        pool_images = train.get(pool_index)
        train_feats = features.of_cached(pool_images, "training images for nearest neighbours")["pool"]
        index = nearest_by_features(features.of(queries)["pool"], train_feats, k)
        _neighbour_grid(queries, torch.stack([pool_images[row] for row in index]), out_dir / "nearest_features.png")
        written["features_cosine"] = str(out_dir / "nearest_features.png")
    return written


# ---- reports


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of a report from evaluate_run / evaluate_sets."""
    m = report["metrics"]
    rows = [metric.row(m[metric.name], m) for metric in METRICS if metric.name in m]
    rec = report.get("reconstruction")
    if rec:
        rows.append(("RMSE (0-255)", f"{rec['rmse']:.2f}", f"reconstructions of {rec['count']} held-out images"))
        rows.append(("PSNR (dB)", f"{rec['psnr']:.2f}", "higher is better"))
        rows.append(("SSIM", f"{rec['ssim']:.4f}", "higher is better"))
    width = [max(len(r[i]) for r in rows + [("metric", "value", "")]) for i in range(2)]
    lines = [f"{'metric':<{width[0]}}  {'value':<{width[1]}}  notes"]
    lines += [f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows]
    # Metrics skipped for the same reason (typically: no Inception weights) share one line.
    by_reason: dict[str, list[str]] = {}
    for name, reason in report.get("skipped", {}).items():
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        lines.append(f"skipped: {', '.join(names)}: {reason}")
    return "\n".join(lines)


def _write_report(report: dict[str, Any], path: Path) -> None:
    atomic_write_text(path, json.dumps(report, indent=2, allow_nan=True) + "\n")


# ---- entry points


def evaluate_sets(samples: str | Path | Tensor, reference: str | Path | Tensor, settings: EvalSettings | None = None,
                  out: str | Path | None = None, quiet: bool = True) -> dict[str, Any]:
    """Compare two image sets (folders, .npz/.npy files or uint8 tensors); the reference is loaded at the samples'
    size."""
    settings = (settings or EvalSettings()).validate()
    started = time.time()
    samples_u8 = samples if isinstance(samples, Tensor) else load_image_set(samples)
    if isinstance(reference, Tensor):
        reference_u8 = reference
    else:
        reference_u8 = load_image_set(reference, size=samples_u8.shape[-1], channels=samples_u8.shape[1])
    _check_sets(samples_u8, reference_u8)
    features = FeatureSpace(settings, quiet)
    if features.missing:
        _say(quiet, features.missing)
    metrics, skipped = compare_sets(samples_u8, reference_u8, settings, features)
    report = {"mode": "sets", "samples": str(samples) if not isinstance(samples, Tensor) else "tensor",
              "reference": str(reference) if not isinstance(reference, Tensor) else "tensor",
              "metrics": metrics, "skipped": skipped, "settings": dataclasses.asdict(settings),
              "seconds": round(time.time() - started, 1)}
    if out is not None:
        _write_report(report, Path(out))
    return report


def _check_sets(samples_u8: Tensor, reference_u8: Tensor) -> None:
    for name, images in (("samples", samples_u8), ("reference", reference_u8)):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise UserError(f"the {name} must be uint8 images (N, 1 or 3, S, S), "
                            f"got {images.dtype} {tuple(images.shape)}.")
        if len(images) < 2:
            raise UserError(f"the {name} set has {len(images)} image; at least 2 are needed to compare distributions.")


def generate_samples(model, num: int, seed: int, batch_size: int) -> Tensor:
    """uint8 samples 0 .. num-1 of `seed`, generated in chunks so memory holds only the uint8 results."""
    chunks = []
    for start in range(0, num, _CHUNK):
        count = min(_CHUNK, num - start)
        chunks.append(to_uint8(model.decode(model.latents(count, seed, start=start), batch_size, prior=True)))
    return torch.cat(chunks)


def reconstruct_set(model, images_u8: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model.reconstruct(to_float(chunk), batch_size) for chunk in images_u8.split(_CHUNK)])


def report_path(run: str | Path, step: int | None) -> Path:
    """Where `evaluate_run` writes its report unless told: RUN_DIR/eval/eval-STEP.json, or, for a weights file
    (`Model.load` takes one), eval/eval-NAME.json beside it."""
    run = Path(run)
    if run.is_file():
        return run.parent / RunDir.EVAL / f"eval-{run.stem}.json"
    return RunDir(run).eval_report(step)


def _run_images(run_dir: Path, config: Config,
                data: str | Path | None) -> tuple[DataSplit | None, ImageSource, str]:
    """The run's data split (None when its training images are gone but `data` is given), the reference images
    (the folder `data`, or the held-out split) and the reference's name for the report."""
    dataset = config.dataset
    try:
        split = open_data(dataset.path, dataset.image_size, dataset.channels, dataset.test_fraction, config.run.seed,
                          dataset.builtin_count)
    except DataError:
        if data is None:
            raise
        split = None  # the training images are gone: compare with --data, but no nearest neighbours
    if data is not None:
        reference = open_data(str(data), dataset.image_size, dataset.channels, test_fraction=0.0).train
        return split, reference, str(data)
    if split is not None and split.test is not None and len(split.test) >= 2:
        return split, split.test, f"held-out split of {dataset.path}"
    raise UserError(f"{run_dir} has no held-out images to compare with (it was trained with --test-fraction "
                    f"{dataset.test_fraction}); pass --data DIR with reference images.")


def _evaluated_step(run_dir: Path, step: int | None) -> int | None:
    """The step of the checkpoint evaluated: a weights file's own (its metadata's; None when it records none), else
    `step` or the run's newest."""
    if run_dir.is_file():
        recorded = read_metadata(run_dir).get("step")
        return int(recorded) if recorded is not None else None
    return RunDir(run_dir).latest_step() if step is None else step


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, settings: EvalSettings | None = None,
                 out: str | Path | None = None, step: int | None = None, quiet: bool = True,
                 prior: str = "run", temperature: float | None = None) -> dict[str, Any]:
    """Evaluate a run's newest (or `step`) checkpoint, or a weights file, and write the report to `report_path`
    (or `out`); the nearest-neighbour grids go beside it. The samples' codes come from the sampler `prior` names
    (`introvae.latent.set_sampler`: the run's code density by default, "normal" for N(0, I)) at `temperature` (None:
    the density's own); the report says which.

    The reference set is the run's held-out split, or all images of the folder `data`. Reconstructions are of the
    reference images; nearest neighbours are searched in the run's training split.
    """
    settings = (settings or EvalSettings()).validate()
    started = time.time()
    run_dir = Path(run_dir)
    model = Model.load(run_dir, step=step, device=settings.device)
    sampler = set_sampler(model, prior, temperature=temperature)
    _say(quiet, f"sampling {sampler}")
    step = _evaluated_step(run_dir, step)
    split, reference_source, reference_name = _run_images(run_dir, model.config, data)
    reference_u8 = cache_in_memory(reference_source).images
    out_dir = report_path(run_dir, step).parent
    _say(quiet, f"sampling {settings.num_samples} images (seed {settings.seed}) from {run_dir} at step {step}")
    samples_u8 = generate_samples(model, settings.num_samples, settings.seed, settings.batch_size)
    features = FeatureSpace(settings, quiet)
    if features.missing:
        _say(quiet, features.missing)
    metrics, skipped = compare_sets(samples_u8, reference_u8, settings, features)
    held_out = reference_u8[:settings.max_reconstructions]
    _say(quiet, f"reconstructing {len(held_out)} reference images")
    reconstruction = reconstruction_errors(held_out, reconstruct_set(model, held_out, settings.batch_size))
    neighbours = {}
    if settings.neighbour_rows and split is None:
        skipped["nearest_neighbours"] = f"the training images ({model.config.dataset.path}) cannot be opened"
    elif settings.neighbour_rows:
        neighbours = write_nearest_neighbours(samples_u8, split.train, settings, features, out_dir)
        if not features.available:
            skipped["nearest_features"] = features.missing or ""
    report = {"mode": "run", "run_dir": str(run_dir), "step": step, "sampler": sampler, "reference": reference_name,
              "metrics": metrics, "reconstruction": reconstruction, "nearest_neighbours": neighbours,
              "skipped": skipped, "settings": dataclasses.asdict(settings), "seconds": round(time.time() - started, 1)}
    _write_report(report, Path(out) if out is not None else report_path(run_dir, step))
    return report


# ---- during training


LIGHT_SETTINGS = dict(msssim_pairs=1000, kid_subsets=10, kid_subset_size=500, max_reconstructions=256, neighbour_rows=0)


def light_evaluation(model, reference_u8: Tensor, num_samples: int, features: FeatureSpace | None,
                     seed: int = 0) -> dict[str, float]:
    """The cheap metrics for `train --eval-every`, as flat `eval_*` numbers for the log."""
    settings = EvalSettings(num_samples=num_samples, seed=seed, **LIGHT_SETTINGS)
    samples_u8 = generate_samples(model, num_samples, seed, settings.batch_size)
    logged = tuple(metric for metric in METRICS if metric.log is not None)  # the others are not worth their time here
    metrics, _ = compare_sets(samples_u8, reference_u8, settings, features, reference_figures=False, metrics=logged)
    held_out = reference_u8[:settings.max_reconstructions]
    rec = reconstruction_errors(held_out, reconstruct_set(model, held_out, settings.batch_size))
    flat = {"eval_rmse": rec["rmse"], "eval_psnr": rec["psnr"], "eval_ssim": rec["ssim"]}
    for metric in logged:
        if metric.name in metrics:
            flat.update(metric.log(metrics[metric.name]))
    return {k: (v if math.isfinite(v) else float("nan")) for k, v in flat.items()}
