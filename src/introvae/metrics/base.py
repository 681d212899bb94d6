"""What a metric of two image sets declares, so that `introvae.evaluate` can run and report every registered metric
without naming any: what it needs (pixels or Inception features, how many images, how large), how to compute it,
and how it reports (a row of the printed table, the `eval_*` numbers that `train --eval-every` logs).

Each metric family declares its metrics at the end of its own module; `introvae.metrics.METRICS` lists them in the
order reports show them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor

__all__ = ["Metric", "SetPair", "fmt_number", "PIXELS", "FEATURES"]

PIXELS = "pixels"  # the uint8 images themselves
FEATURES = "features"  # pool3 features and unbiased logits of the FID Inception network


@dataclass
class SetPair:
    """Generated and reference images, with their Inception features when a metric needs them."""

    samples_u8: Tensor  # (N, C, S, S) uint8
    reference_u8: Tensor  # (M, C, S, S) uint8
    sample_features: dict[str, Tensor] | None = None  # "pool" (N, 2048), "logits" (N, 1008)
    reference_features: dict[str, Tensor] | None = None
    # Whether to add the reference set's own figure where a metric has one (MS-SSIM, Inception Score): the point
    # of comparison in a full report, left out by the light evaluation during training since it never changes.
    reference_figures: bool = True


@dataclass(frozen=True)
class Metric:
    """One metric of two image sets, as `introvae.evaluate` runs it.

    `compute(pair, settings)` returns the report's value (a number or a dict); `settings` is an
    `introvae.evaluate.EvalSettings`. The requirements are checked before computing; when one is not met the
    metric is listed under "skipped" with `unmet`, formatted with the settings' fields (e.g. "{pr_k}").
    """

    name: str  # key in the report's "metrics" and "skipped"
    needs: str  # PIXELS or FEATURES
    compute: Callable[[SetPair, Any], Any]
    row: Callable[[Any, dict[str, Any]], tuple[str, str, str]]  # (value, all metrics) -> (label, value, notes)
    log: Callable[[Any], dict[str, float]] | None = None  # value -> eval_* numbers; None: not logged in training
    min_images: int | Callable[[Any], int] = 0  # in each set; a function of the settings when it depends on them
    min_size: int = 0  # pixels on a side
    same_shape: bool = False  # samples and reference of one shape (channels and size)
    unmet: str = ""  # why it was skipped when a requirement above is not met

    def unmet_reason(self, samples_u8: Tensor, reference_u8: Tensor, settings: Any) -> str | None:
        """None when the sets meet the requirements, else the sentence for "skipped"."""
        min_images = self.min_images(settings) if callable(self.min_images) else self.min_images
        if (min(len(samples_u8), len(reference_u8)) < min_images or samples_u8.shape[-1] < self.min_size
                or (self.same_shape and samples_u8.shape[1:] != reference_u8.shape[1:])):
            return self.unmet.format(**dataclasses.asdict(settings))
        return None


def fmt_number(value: float, digits: int = 4) -> str:
    """`digits` significant digits; one decimal from 10,000 on, where the g format would switch to an exponent."""
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.1f}"
