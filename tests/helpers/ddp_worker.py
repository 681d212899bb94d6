"""Run by tests/test_distributed.py under torchrun: train a tiny model and save this rank's weights and the
objective's state (e.g. avae's PID-controlled k).

    torchrun --nproc_per_node 2 tests/helpers/ddp_worker.py OUT_DIR STEPS [MODEL]
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from introvae import Config
from introvae.data import open_data
from introvae.distributed import setup, teardown
from introvae.train import Trainer

out, steps = Path(sys.argv[1]), int(sys.argv[2])
model = sys.argv[3] if len(sys.argv) > 3 else "introvae"
torch.set_num_threads(1)
narrow = dict(disc_channels=8, disc_latent=8) if model == "avae" else {}  # a small discriminator, as elsewhere
config = Config(model=model, image_size=16, channels=3, latent_dim=8, base_channels=4, max_channels=16, batch_size=8,
                steps=steps, builtin_count=64, log_every=1, grid_every=0, checkpoint_every=0, warmup_steps=1,
                **narrow)
info, device = setup("cpu")
data = open_data("builtin", 16, 3, 0.1, 0, builtin_count=64)
run = out / "run"
run.mkdir(parents=True, exist_ok=True)
trainer = Trainer(config.replace(device=device), run, data, quiet=True, dist=info)
trainer.fit()
state = {k: v.detach().contiguous() for k, v in trainer.networks.state_dict().items()}
save_file(state, str(out / f"rank{info.rank}.safetensors"))
(out / f"rank{info.rank}.json").write_text(json.dumps(trainer.engine.objective.state_dict()))
teardown()
