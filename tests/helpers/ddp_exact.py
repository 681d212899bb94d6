"""Run by tests/test_distributed.py, under torchrun or alone: three `step_phases` steps of a VAE on MLPs (no
batch-norm) with fixed data and fixed noise, each rank taking every world_size-th row of the global batch. With the
gradients averaged over the ranks, the result must equal one process on the whole batch.

    [torchrun --nproc_per_node 2] tests/helpers/ddp_exact.py OUT_FILE
"""

import sys

import torch
from safetensors.torch import save_file
from torch import nn

from introvae.distributed import setup, teardown
from introvae.engine import step_phases
from introvae.nets.mlp import PointBuilders
from introvae.objectives.base import Objective, Phase, kl_per_sample

torch.set_num_threads(1)
info, _ = setup("cpu")
torch.manual_seed(0)
builders = PointBuilders(data_dim=4, latent_dim=2, hidden=16, layers=2)
networks = nn.ModuleDict({"encoder": builders.encoder(), "generator": builders.generator()})
data = torch.Generator().manual_seed(1)
x_global, eps_global = torch.rand(3, 8, 4, generator=data), torch.randn(3, 8, 2, generator=data)


class FixedNoiseVAE(Objective):
    """A VAE step whose reparameterisation noise is given, so the split over ranks is the only difference."""

    roles = ("encoder", "generator")

    def __init__(self, eps):
        super().__init__()
        self.eps = eps

    def phases(self, nets, x, step, noise):
        mu, logvar = nets["encoder"](x)
        x_rec = nets["generator"](mu + (0.5 * logvar).exp() * self.eps)
        ae = (x_rec - x).pow(2).sum(1).mean()
        yield Phase("encoder", kl_per_sample(mu, logvar).mean() + ae)
        yield Phase("generator", ae)


optimizers = {name: torch.optim.Adam(networks[name].parameters(), lr=1e-2) for name in ("encoder", "generator")}
rows = slice(info.rank, None, info.world_size)
for step in range(3):
    logs, bad = step_phases(FixedNoiseVAE(eps_global[step][rows]), networks, optimizers, x_global[step][rows], step,
                            torch.Generator(), world_size=info.world_size)
    assert bad is None
save_file({k: v.detach().contiguous() for k, v in networks.state_dict().items()},
          sys.argv[1].replace("RANK", str(info.rank)))
teardown()
