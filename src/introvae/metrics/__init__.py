"""Offline evaluation metrics: each module implements one family, cites the reference it follows, and declares its
metrics of two image sets (`introvae.metrics.base.Metric`) for the registry below.

    fid.py        Frechet distance, KID and the Inception Score on Inception features
    inception.py  the FID Inception-v3 network (pytorch-fid / torch-fidelity weights layout) and its loading
    ssim.py       SSIM and MS-SSIM (PGGAN's convention for small images), MS-SSIM sample diversity
    swd.py        sliced Wasserstein distance on Laplacian-pyramid patches (PGGAN)
    prdc.py       improved precision and recall (Kynkaanniemi et al. 2019)
    hist2d.py     KL and JSD of 2-D histograms, for the 2-D benchmark
    base.py       what a registered metric declares

`introvae.evaluate` computes, reports and logs the metrics of `METRICS`, in this order; a new metric is its module
(with its `Metric`) and its entry here.
"""

from introvae.metrics.base import Metric
from introvae.metrics.fid import FID, INCEPTION_SCORE, KID
from introvae.metrics.prdc import PRECISION_RECALL
from introvae.metrics.ssim import MS_SSIM_DIVERSITY
from introvae.metrics.swd import SWD

METRICS: tuple[Metric, ...] = (FID, KID, INCEPTION_SCORE, PRECISION_RECALL, MS_SSIM_DIVERSITY, SWD)

__all__ = ["METRICS", "Metric"]
