"""What the explorer page computes, without any web framework: a loaded run, the directions its sliders move along,
the images a visitor uploaded, and the decoding behind every request.

Kept apart from the HTTP layer (`introvae.serve.app`) so that it can be used and tested from Python alone, and so
that `import introvae.serve` does not import the server library.

A *code* on the page is named by an endpoint: `{"seed": s, "index": i}` is the prior code of sample i under seed s
(the one `Model.sample` decodes), `{"upload": id}` the posterior mean of an uploaded image. Prior codes are decoded
with the generator's prior batch-norm statistics and posterior means with the posterior ones (see
`introvae.batchnorm`); a path that mixes the two kinds uses the posterior statistics.

Slider units: a principal direction moves the code by `value x` that component's standard deviation over the
reference images; an attribute vector moves it by `value x` the vector itself (mean code with the attribute minus
mean code without it), so 1 is the distance between the two groups' means.
"""

from __future__ import annotations

import io
import json
import math
import secrets
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image
from torch import Tensor

from ..errors import DataError, UserError
from ..evaluate import format_table, report_path
from ..images import load_image, to_float, to_uint8
from ..latent import (
    DEFAULT_SCORE,
    AttributeVector,
    attribute_position,
    fit_reference,
    load_attributes,
    principal_directions,
    run_attributes,
    score_images,
    set_sampler,
    training_images,
)
from ..model import Model
from ..plot import draw_run_dynamics
from ..rundir import RunDir

__all__ = ["Explorer", "Direction", "UploadError", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "SLIDER_RANGE"]

MAX_UPLOAD_BYTES = 16 * 2**20
MAX_UPLOAD_PIXELS = 50_000_000  # a small file can claim a huge size; refuse before decoding it
MAX_SAMPLES = 64
MAX_UPLOADS_KEPT = 64  # the oldest uploads are forgotten beyond this; the page then asks to upload again
MAX_INTERPOLATION_STEPS = 64
SLIDER_RANGE = 3.0  # every slider spans [-SLIDER_RANGE, SLIDER_RANGE] in its direction's units


class UploadError(UserError):
    """An upload the page cannot use (not an image, too large, ...): shown to the visitor, never a server error."""


@dataclass
class Direction:
    """One slider: moving it by `value` adds `value * step` to the code."""

    key: str  # "pc1", "pc2", ... or "attribute:NAME"
    label: str
    kind: str  # "pca" or "attribute"
    step: Tensor  # (latent_dim,): the change of the code per unit of the slider
    note: str

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "kind": self.kind, "note": self.note,
                "min": -SLIDER_RANGE, "max": SLIDER_RANGE}


@dataclass
class _Upload:
    name: str
    image: Tensor  # (C, S, S) float in [0, 1], as the model sees it
    mu: Tensor  # (latent_dim,)


@dataclass
class Explorer:
    """A run opened for exploring. Build it with `Explorer.open(run_dir)`; every method is thread-safe."""

    model: Model
    run_dir: Path
    directions: list[Direction]
    attributes: dict[str, Any]  # name -> introvae.latent.AttributeVector
    reference_scores: dict[str, np.ndarray]  # per-image OOD scores of reference images, for percentiles
    notes: list[str] = field(default_factory=list)
    score_samples: int = 16
    step: int | None = None  # the checkpoint's step (None for a weights file outside a run directory)
    sigma: float = 1.0  # the Gaussian decoder's standard deviation the OOD scores use
    ood_reference: Any = None  # introvae.latent.OODReference: sigma and the training statistics of the OOD scores
    sampler: str = ""  # where sampled codes come from, in words (`introvae.latent.set_sampler`)
    _uploads: "OrderedDict[str, _Upload]" = field(default_factory=OrderedDict)
    # One request at a time touches the networks: decoding with prior statistics swaps batch-norm buffers, and
    # Model.evaluating switches train/eval modes, so concurrent requests would see each other's state.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- building

    @classmethod
    def open(cls, run_dir: str | Path, attribute_files: Sequence[str | Path] = (), step: int | None = None,
             device: str = "auto", components: int = 8, reference_count: int = 512, score_reference: int = 64,
             score_samples: int = 16, prior: str = "run", temperature: float | None = None) -> "Explorer":
        """Load a run (or a weights file that `Model.load` takes), its stored attribute vectors (RUN_DIR/attributes/,
        or attributes/ beside a weights file, where `introvae attribute` puts them) and those of `attribute_files`, and
        compute the principal directions of the posterior means of `reference_count` training images (evenly spaced
        over the run's training split). Sampled codes come from the sampler `prior` names (`set_sampler`)."""
        run_dir = Path(run_dir)
        model = Model.load(run_dir, step=step, device=device)
        sampler = set_sampler(model, prior, temperature=temperature)
        attributes = _attributes(run_dir, attribute_files, model.config.networks.latent_dim)
        reference, where = _reference_images(model, reference_count)
        notes = [where] if where else []
        directions = _principal_directions(model, reference, components) + [
            Direction(key=f"attribute:{name}", label=name, kind="attribute", step=vector.direction.float().cpu(),
                      note=f"{vector.count_with} images with against {vector.count_without} without; units of the "
                           f"vector (norm {vector.norm:.3g})") for name, vector in attributes.items()]
        # The decoder's noise level and the training statistics of the OOD scores, fitted once on the reference
        # images (see introvae.latent.ood).
        ood_reference = fit_reference(model, reference, samples=score_samples, seed=0)
        if step is None and run_dir.is_dir():
            step = RunDir(run_dir).latest_step()
        explorer = cls(model=model, run_dir=run_dir, directions=directions, attributes=attributes,
                       reference_scores={}, notes=notes, score_samples=score_samples, step=step,
                       sigma=ood_reference.sigma, ood_reference=ood_reference, sampler=sampler)
        if score_reference > 0:
            explorer.reference_scores = explorer._scores(reference[:score_reference])
        return explorer

    # ---- what the page shows

    def info(self) -> dict[str, Any]:
        """The run's description for the page: sizes, sliders, stored attributes, evaluation table, notes."""
        config, run = self.model.config, RunDir(self.run_dir)
        return {
            "run": self.run_dir.name,
            "run_dir": str(self.run_dir),
            "model": config.model,
            "step": self.step,
            "image_size": config.dataset.image_size,
            "channels": config.dataset.channels,
            "latent_dim": config.networks.latent_dim,
            "data": str(config.dataset.path),
            "sampler": self.sampler,
            "directions": [d.describe() for d in self.directions],
            "attributes": [{"name": name, "count_with": v.count_with, "count_without": v.count_without,
                            "norm": float(v.norm)} for name, v in self.attributes.items()],
            "score_samples": self.score_samples,
            "sigma": self.sigma,
            "default_score": DEFAULT_SCORE,
            "reference_scored": int(len(next(iter(self.reference_scores.values()), []))),
            "evaluation": self.evaluation_table(),
            "has_dynamics": any(p.is_file() for p in (run.dynamics, run.log)),
            "notes": self.notes,
            "limits": {"max_upload_bytes": MAX_UPLOAD_BYTES, "max_samples": MAX_SAMPLES,
                       "max_interpolation_steps": MAX_INTERPOLATION_STEPS, "slider_range": SLIDER_RANGE},
        }

    def samples(self, seed: int, count: int) -> Tensor:
        """Samples 0 .. count-1 of `seed`, as `Model.sample` draws them: (count, C, S, S)."""
        seed = _integer(seed, "seed", 0, 2**63 - 1)
        count = _integer(count, "count", 1, MAX_SAMPLES)
        with self._lock:
            return self.model.sample(count, seed=seed)

    def analyse_upload(self, data: bytes, name: str) -> dict[str, Any]:
        """Decode an uploaded file, keep it (under a new id) and describe it: the image the model sees, its
        reconstruction, its out-of-distribution scores and its position along each attribute vector."""
        image, resized_from = self._decode_upload(data, name)
        batch = image[None]
        with self._lock:
            mu, _ = self.model.encode(batch)
            reconstruction = self.model.decode(mu)
            scores = self._scores(batch)
            positions = {n: float(attribute_position(self.model, batch, v)[0]) for n, v in self.attributes.items()}
            upload_id = secrets.token_hex(8)
            self._uploads[upload_id] = _Upload(name=name, image=image, mu=mu[0])
            while len(self._uploads) > MAX_UPLOADS_KEPT:
                self._uploads.popitem(last=False)
        size = self.model.config.dataset.image_size
        return {
            "id": upload_id, "name": name, "image": image, "reconstruction": reconstruction[0],
            "resized": None if resized_from is None else
            f"resized from {resized_from[0]} x {resized_from[1]} to {size} x {size} "
            "(shorter side, then centre-cropped)",
            # JSON has no NaN or infinity (the page could not parse them): a score that is not finite is null.
            "scores": {key: float(values[0]) if math.isfinite(values[0]) else None for key, values in scores.items()},
            "percentiles": {key: self._percentile(key, float(values[0])) for key, values in scores.items()},
            "attributes": positions,
        }

    def decode(self, endpoint: Mapping[str, Any], offsets: Mapping[str, Any] | None = None) -> Tensor:
        """The image of an endpoint's code moved along the sliders' directions by `offsets` (key -> value)."""
        code, prior = self._code(endpoint)
        by_key = {d.key: d for d in self.directions}
        for key, value in (offsets or {}).items():
            if key not in by_key:
                raise UserError(f"there is no slider {key!r}: the sliders are {', '.join(by_key) or 'none'}.")
            value = _number(value, f"slider {key}", -SLIDER_RANGE, SLIDER_RANGE)
            code = code + value * by_key[key].step
        with self._lock:
            return self.model.decode(code[None], prior=prior)[0]

    def interpolate(self, a: Mapping[str, Any], b: Mapping[str, Any], steps: int = 17,
                    method: str = "lerp") -> Tensor:
        """`steps` decoded images on the path from endpoint a's code to endpoint b's, ends included, in one batch."""
        steps = _integer(steps, "steps", 2, MAX_INTERPOLATION_STEPS)
        if method not in ("lerp", "slerp"):
            raise UserError(f"method {method!r} is not lerp or slerp.")
        (code_a, prior_a), (code_b, prior_b) = self._code(a), self._code(b)
        codes = self.model.interpolate_latents(code_a, code_b, steps, method)
        with self._lock:
            return self.model.decode(codes, prior=prior_a and prior_b)

    @property
    def upload_count(self) -> int:
        """How many uploads the explorer keeps now (at most MAX_UPLOADS_KEPT)."""
        with self._lock:
            return len(self._uploads)

    # ---- the run's files

    def evaluation_table(self) -> dict[str, Any] | None:
        """The newest report of `introvae evaluate` in RUN_DIR/eval/ (for a weights file, its own report beside it),
        as the table the command prints."""
        if self.run_dir.is_file():
            reports = [path for path in [report_path(self.run_dir, None)] if path.is_file()]
        else:
            reports = sorted(RunDir(self.run_dir).eval.glob("eval-*.json"))
        if not reports:
            return None
        path = reports[-1]
        try:
            report = json.loads(path.read_text())
            table = format_table(report)
        except (OSError, ValueError, KeyError, TypeError) as error:
            return {"file": str(path), "step": None, "table": f"{path.name} cannot be read ({error})."}
        return {"file": str(path), "step": report.get("step"), "table": table}

    def dynamics_png(self) -> bytes | None:
        """The run's training-dynamics plot: RUN_DIR/dynamics.png, redrawn into a temporary file when log.jsonl is
        newer (a run still training) or the picture is missing. The run directory is never written to."""
        run = RunDir(self.run_dir)
        picture, log = run.dynamics, run.log
        try:
            if picture.is_file() and (not log.is_file() or picture.stat().st_mtime >= log.stat().st_mtime):
                return picture.read_bytes()
            if not log.is_file():
                return None
            with tempfile.TemporaryDirectory() as folder:
                # The figure the trainer and `introvae plot` draw: the objective's panels, the same title.
                return draw_run_dynamics(run, Path(folder) / RunDir.DYNAMICS, self.model.config).read_bytes()
        except (OSError, UserError, ValueError):
            return None

    # ---- internals

    def _decode_upload(self, data: bytes, name: str) -> tuple[Tensor, tuple[int, int] | None]:
        size, channels = self.model.config.dataset.image_size, self.model.config.dataset.channels
        if not data:
            raise UploadError(f"{name} is empty: choose an image file (png, jpeg, webp, bmp, tiff).")
        if len(data) > MAX_UPLOAD_BYTES:
            raise UploadError(f"{name} is {len(data) / 2**20:.1f} MiB; the page takes images up to "
                              f"{MAX_UPLOAD_BYTES // 2**20} MiB: choose a smaller file.")
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size  # read from the header only
        except Image.DecompressionBombError:  # Pillow's own refusal of a header claiming a gigantic size
            raise UploadError(f"{name} claims more than {2 * Image.MAX_IMAGE_PIXELS // 1_000_000} megapixels; the "
                              f"page takes images up to {MAX_UPLOAD_PIXELS // 1_000_000} megapixels: scale it down "
                              f"first.") from None
        except Exception:  # Pillow raises many types for what is not an image (UnidentifiedImageError, ...).
            raise UploadError(f"{name} is not an image Pillow can read: choose a png, jpeg, webp, bmp or tiff "
                              f"file.") from None
        if width * height > MAX_UPLOAD_PIXELS:
            raise UploadError(f"{name} is {width} x {height} pixels; the page takes images up to "
                              f"{MAX_UPLOAD_PIXELS // 1_000_000} megapixels: scale it down first.")
        try:
            image = to_float(load_image(data, size, channels, name=name))
        except DataError:
            raise UploadError(f"{name} looks like an image but cannot be decoded (broken or truncated): choose "
                              f"another file.") from None
        return image, None if (width, height) == (size, size) else (width, height)

    def _upload(self, upload_id: Any) -> _Upload:
        with self._lock:
            upload = self._uploads.get(str(upload_id))
        if upload is None:
            raise UserError("that uploaded image is no longer kept by the server (it keeps the newest "
                            f"{MAX_UPLOADS_KEPT}, and forgets all on restart): upload it again.")
        return upload

    def _code(self, endpoint: Mapping[str, Any]) -> tuple[Tensor, bool]:
        """An endpoint's code and whether it is a prior code."""
        if not isinstance(endpoint, Mapping):
            raise UserError('an image is named by {"seed": S, "index": I} or {"upload": ID}.')
        if "upload" in endpoint:
            return self._upload(endpoint["upload"]).mu.clone(), False
        if "seed" in endpoint:
            seed = _integer(endpoint["seed"], "seed", 0, 2**63 - 1)
            index = _integer(endpoint.get("index", 0), "index", 0, 2**31 - 1)
            return self.model.latents(1, seed, start=index)[0], True
        raise UserError('an image is named by {"seed": S, "index": I} or {"upload": ID}.')

    def _scores(self, images: Tensor) -> dict[str, np.ndarray]:
        scores = score_images(self.model, images, samples=self.score_samples, seed=0, reference=self.ood_reference)
        return {key: np.asarray(values, dtype=np.float64) for key, values in scores.items()}

    def _percentile(self, key: str, value: float) -> float | None:
        """Share (in %) of the reference images whose score is below `value`: near 100 means unusually high."""
        reference = self.reference_scores.get(key)
        if reference is None or len(reference) == 0 or not math.isfinite(value):
            return None
        return float((reference < value).mean() * 100)


def _reference_images(model: Model, count: int) -> tuple[Tensor, str]:
    """`count` evenly spaced images of the run's training split (uint8), or, when its data cannot be opened any
    more, `count` of the model's own samples, with a note saying so."""
    try:
        return training_images(model.config, count), ""
    except UserError as error:
        samples = to_uint8(model.sample(count, seed=0))
        return samples, (f"{error} The principal directions and the reference scores come from {count} of the "
                         f"model's own samples instead.")


def _integer(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{what} must be a whole number from {low} to {high}.")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{what} must be a whole number from {low} to {high}, got {value!r}.") from None
    if number != float(value) or not low <= number <= high:
        raise UserError(f"{what} must be a whole number from {low} to {high}, got {value!r}.")
    return number


def _number(value: Any, what: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number from {low:g} to {high:g}, got {value!r}.") from None
    if isinstance(value, bool) or not low <= number <= high:
        raise UserError(f"{what} must be a number from {low:g} to {high:g}, got {value!r}.")
    return number


def _attributes(run_dir: Path, attribute_files: Sequence[str | Path], latent_dim: int) -> dict[str, AttributeVector]:
    """The run's stored attribute vectors and those of `attribute_files`, by name; UserError for one of another size."""
    attributes = dict(run_attributes(run_dir))
    for path in attribute_files:
        attributes.update(load_attributes(path))
    for name, vector in attributes.items():
        if vector.direction.numel() != latent_dim:
            raise UserError(f"attribute vector {name!r} has {vector.direction.numel()} dimensions but the codes "
                            f"of {run_dir} have {latent_dim}: use vectors computed with this run.")
    return attributes


def _principal_directions(model: Model, reference: Tensor, components: int) -> list[Direction]:
    """The first `components` principal directions of the reference images' posterior means, each a step of one
    standard deviation (fewer when there are too few images or dimensions)."""
    k = min(components, len(reference) - 1, model.config.networks.latent_dim)
    if k < 1:
        return []
    pca = principal_directions(model, reference, k)
    return [Direction(key=f"pc{j + 1}", label=f"PC {j + 1}", kind="pca", step=pca.components[j] * pca.stddev[j],
                      note=f"{float(pca.explained[j]) * 100:.1f} % of the variance of {len(reference)} reference "
                           f"codes; units of its standard deviation ({float(pca.stddev[j]):.3g})") for j in range(k)]
