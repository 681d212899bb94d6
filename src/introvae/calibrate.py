"""Choosing the margin m (App. D): train the plain VAE (alpha = 0) and propose m with headroom above its KL of real
data.

App. D: "Pre-training the model following the original VAEs (i.e., alpha = 0) is suggested to find the most
appropriate value of m responding to a specific beta. m can be selected to be a little larger than the training
kl-divergence value of VAEs." We measure KL(real) as the mean over the last quarter of the warm-up's log records and
propose m = 1.5 x that KL, rounded up to a multiple of 5 (`introvae.objectives.introvae.propose_margin`, which says
why 1.5; `--margin auto` makes the same choice inside a training run, at the end of its warm-up).
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import UserError
from .objectives.introvae import IntroVAE, propose_margin
from .rundir import RunDir
from .runlog import read_log
from .train import train


@dataclass
class Calibration:
    steps: int
    beta: float
    kl_first: float  # KL(real) in the first log record
    kl_mean: float  # mean KL(real) over the last quarter of the records
    kl_std: float
    ae_mean: float
    proposed_margin: float

    def report(self) -> str:
        return "\n".join([
            f"VAE warm-up (alpha = 0, beta = {self.beta:g}) for {self.steps} steps:",
            f"  KL(real) at the start        {self.kl_first:10.2f}",
            f"  KL(real), last quarter       {self.kl_mean:10.2f} +- {self.kl_std:.2f}",
            f"  L_AE, last quarter           {self.ae_mean:10.2f}",
            f"proposed margin: --margin {self.proposed_margin:g}",
        ])


def calibrate(config: Config, out: str | Path | None = None, quiet: bool = False) -> Calibration:
    """Run the VAE warm-up for config.optim.steps steps (into `out`, or a temporary directory) and measure KL(real)."""
    if config.model != IntroVAE.name:  # only IntroVAE has a margin, and a warm-up that logs KL(real) and L_AE
        raise UserError(f"calibrate proposes IntroVAE's margin m, which --model {config.model} does not have: leave "
                        f"--model out (it defaults to {IntroVAE.name}).")
    steps = config.optim.steps
    warmup = config.replace(warmup_steps=steps, grid_every=0, checkpoint_every=0)
    with tempfile.TemporaryDirectory(prefix="introvae-calibrate-") as scratch:
        run_dir = train(warmup, out=Path(out) if out else Path(scratch) / "run", quiet=quiet)
        # Loss records only: a divergence roll-back adds event records without losses.
        records = [r for r in read_log(RunDir(run_dir).log) if "kl_real" in r]
    tail = records[-max(1, len(records) // 4):]
    kls = [r["kl_real"] for r in tail]
    kl_mean = statistics.fmean(kls)
    kl_std = statistics.pstdev(kls) if len(kls) > 1 else 0.0
    return Calibration(steps=steps, beta=config.objective.beta, kl_first=records[0]["kl_real"], kl_mean=kl_mean,
                       kl_std=kl_std, ae_mean=statistics.fmean(r["ae"] for r in tail),
                       proposed_margin=propose_margin(kl_mean))
