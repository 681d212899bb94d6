"""Scoring named image sets for `introvae score` and for Python users: one set (`data`) or two (`inliers`,
`outliers`), every column of `score_images` per image, the reference they were scored against and, with two sets,
each score's detection metrics. `ScoreReport` writes the CSV, the JSON report and the histogram the command writes.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from ..errors import UserError
from ..images import to_float
from ..model import Model
from .ood import (
    DEFAULT_SCORE,
    SCORE_KEYS,
    OODReference,
    detection_metrics,
    fit_reference,
    plot_score_histograms,
    score_images,
)
from .sets import load_named_images

__all__ = ["ScoreReport", "score_sets", "TWO_SETS", "read_reference"]

TWO_SETS = ("inliers", "outliers")


@dataclass
class ScoreReport:
    sets: dict[str, Path]  # label ("data", or "inliers" and "outliers") -> where the images came from
    names: dict[str, list[str]]  # label -> each image's name (its path relative to the set)
    scores: dict[str, dict[str, np.ndarray]]  # label -> column of SCORE_KEYS -> one value per image
    reference: OODReference
    samples: int
    seed: int

    @property
    def two_sets(self) -> bool:
        return set(self.sets) == set(TWO_SETS)

    @cached_property
    def metrics(self) -> dict[str, dict[str, float]] | None:
        """AUROC, AUPRC and FPR at 95 % TPR of every score (outliers positive), with two sets."""
        if not self.two_sets:
            return None
        return {key: detection_metrics(self.scores["inliers"][key], self.scores["outliers"][key])
                for key in SCORE_KEYS}

    def csv_text(self) -> str:
        """One row per image: (set,) file, then every score."""
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow((["set"] if self.two_sets else []) + ["file", *SCORE_KEYS])
        for label in self.sets:
            for i, name in enumerate(self.names[label]):
                writer.writerow(([label] if self.two_sets else []) + [name]
                                + [f"{self.scores[label][key][i]:.6g}" for key in SCORE_KEYS])
        return table.getvalue()

    def to_dict(self, **context: Any) -> dict[str, Any]:
        """The JSON report: `context` (run, step, ...), the sets, the reference, the default column and, with two
        sets, the metrics."""
        report = {**context, **{label: str(path) for label, path in self.sets.items()},
                  "sigma": self.reference.sigma, "sigma_fitted": self.reference.sigma_fitted, "samples": self.samples,
                  "seed": self.seed, "reference": self.reference.to_dict(), "default": DEFAULT_SCORE}
        if self.two_sets:
            report["metrics"] = self.metrics
        return report

    def write(self, csv_path: str | Path, histogram_score: str = DEFAULT_SCORE, title: str = "",
              **context: Any) -> list[Path]:
        """Write CSV_PATH, its .json beside it and, with two sets, CSV_PATH-histogram.png of `histogram_score`;
        return the paths written."""
        csv_path = Path(csv_path)
        atomic_write_text(csv_path, self.csv_text())
        json_path = csv_path.with_suffix(".json")
        atomic_write_text(json_path, json.dumps(self.to_dict(**context, scores_csv=str(csv_path)), indent=2) + "\n")
        if not self.two_sets:
            return [csv_path, json_path]
        histogram = csv_path.with_name(csv_path.stem + "-histogram.png")
        auroc = self.metrics[histogram_score]["auroc"]
        plot_score_histograms(self.scores["inliers"][histogram_score], self.scores["outliers"][histogram_score],
                              histogram, score_name=histogram_score,
                              title=f"{title}: AUROC {auroc:.3f} ({histogram_score})" if title else
                              f"AUROC {auroc:.3f} ({histogram_score})",
                              inlier_label=f"inliers: {self.sets['inliers'].name}",
                              outlier_label=f"outliers: {self.sets['outliers'].name}")
        return [csv_path, json_path, histogram]


def score_sets(model: Model, sets: dict[str, str | Path], samples: int = 16, seed: int = 0, batch_size: int = 64,
               reference: OODReference | None = None, sigma: float | None = None) -> ScoreReport:
    """Score every image of `sets` ({"data": PATH} or {"inliers": PATH, "outliers": PATH}; a folder, an image or
    a .npz/.npy array each). Every set is read before the reference is fitted (on the run's training images,
    unless given), so a bad path fails at once."""
    if set(sets) not in ({"data"}, set(TWO_SETS)):
        raise UserError("give either one set (data) or two (inliers and outliers).")
    if samples < 1:
        raise UserError(f"--samples must be at least 1, got {samples}.")
    size, channels = model.config.dataset.image_size, model.config.dataset.channels
    loaded = {label: load_named_images(path, size, channels, f"--{label}") for label, path in sets.items()}
    if reference is None:
        reference = fit_reference(model, samples=samples, seed=seed, batch_size=batch_size, sigma=sigma)
    scores = {label: score_images(model, to_float(images), samples, seed, batch_size, reference=reference)
              for label, (_, images) in loaded.items()}
    return ScoreReport({label: Path(path) for label, path in sets.items()},
                       {label: names for label, (names, _) in loaded.items()}, scores, reference, samples, seed)


def read_reference(path: str | Path) -> OODReference:
    """The reference stored in a report that `ScoreReport.write` wrote (its "reference"), to score more images
    against without fitting it again; anything else is refused in one sentence."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"--reference {path} cannot be read ({e.strerror or type(e).__name__}): give the JSON report "
                        f"of an earlier `introvae score`.") from None
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"--reference {path} is not a JSON file: give the JSON report of an earlier `introvae "
                        f"score`.") from None
    return OODReference.from_dict(report.get("reference") if isinstance(report, dict) else None, f"--reference {path}")
