"""The trainer and the model API on small data and small networks: resume, the run directory, sampling and
interpolation. The networks, the engine and checkpoints have their own files."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from introvae import Model, train
from introvae.data import open_data
from introvae.distributed import Distributed
from introvae.errors import UserError
from introvae.images import to_float, to_uint8
from introvae.objectives import OBJECTIVES
from introvae.rundir import RunDir
from introvae.runlog import read_log
from introvae.runspec import RunSpec
from introvae.train import Trainer


@pytest.mark.slow
def test_sampling_by_seed_does_not_depend_on_the_batch_size(tiny_config):
    model = Model.build(tiny_config())
    # Batched kernels may round differently (~1e-6); an 8-bit level is 4e-3.
    reference = model.sample(11, seed=7, batch_size=11)
    for batch_size in (1, 4, 64):
        torch.testing.assert_close(model.sample(11, seed=7, batch_size=batch_size), reference, atol=1e-5, rtol=0)
    assert not torch.allclose(model.sample(11, seed=8), reference)
    # Image i of a longer draw is image i of a shorter one.
    torch.testing.assert_close(model.sample(3, seed=7), reference[:3], atol=1e-5, rtol=0)


def test_interpolation_ends_at_the_codes(tiny_config):
    model = Model.build(tiny_config())
    latent_dim = model.config.networks.latent_dim
    z_a, z_b = torch.randn(latent_dim), torch.randn(latent_dim)
    for method in ("lerp", "slerp"):
        path = model.interpolate_latents(z_a, z_b, 5, method)
        torch.testing.assert_close(path[0], z_a)
        torch.testing.assert_close(path[-1], z_b, atol=1e-5, rtol=1e-5)
    x = torch.rand(2, 3, 16, 16)
    assert model.interpolate(x[0], x[1], 6).shape == (6, 3, 16, 16)



def test_a_run_is_resolved_once_into_a_frozen_spec_that_the_trainer_reads(tmp_path, tiny_config):
    data = open_data("builtin", 16, 3, 0.1, 0, builtin_count=32)
    asked = tiny_config(channels=0, lr=-1.0, warmup_steps=-1, precision="auto", device="cpu")
    spec = RunSpec.resolve(asked, data.channels)
    optim = spec.config.optim
    assert (optim.lr, optim.warmup_steps) == (asked.resolved_lr(), asked.resolved_warmup_steps()) and optim.lr > 0
    assert spec.config.dataset.channels == 3 and optim.precision in ("fp32", "bf16") and spec.precision_reason
    assert spec.device == torch.device("cpu") and spec.config.run.device == "cpu" and spec.dist == Distributed()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.device = torch.device("meta")
    with pytest.raises(UserError, match="must split evenly over the 2 processes"):
        RunSpec.resolve(tiny_config(batch_size=5), 3, Distributed(0, 2))
    trainer = Trainer(spec, tmp_path, data, quiet=True)
    assert trainer.config is spec.config and trainer.engine.precision == optim.precision
    assert all(group["lr"] == optim.lr for o in trainer.engine.optimizers.values() for group in o.param_groups)
    assert Trainer(asked, tmp_path, data, quiet=True).config == spec.config  # a Config is resolved the same way
    with pytest.raises(TypeError, match="leave `dist` out"):
        Trainer(spec, tmp_path, data, dist=Distributed(0, 2))


def _weights(run_dir):
    model = Model.load(run_dir, device="cpu")
    return model.networks.state_dict()


@pytest.mark.parametrize("model", sorted(OBJECTIVES))
@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, model, tiny_config):
    # With the EMA generator and (for avae) the PID controller's state in the checkpoint.
    config = tiny_config(hflip=True, warmup_steps=2, model=model, ema=0.9)
    straight = train(config.replace(steps=6), out=tmp_path / "straight", quiet=True)
    stopped = train(config.replace(steps=3), out=tmp_path / "stopped", quiet=True)
    train(resume=stopped, steps=6, quiet=True)
    a, b = _weights(straight), _weights(stopped)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

    # The log is continued, not restarted: the same records as the straight run, bar the wall time.
    def strip(records):
        return [{k: v for k, v in r.items() if k != "time"} for r in records]

    assert strip(read_log(stopped / "log.jsonl")) == strip(read_log(straight / "log.jsonl"))
    assert RunDir(stopped).checkpoint_steps() == [3, 6]


@pytest.mark.slow
def test_resume_refuses_options_that_define_the_run(tmp_path, tiny_config):
    run = train(tiny_config(steps=1), out=tmp_path / "r", quiet=True)
    with pytest.raises(UserError, match="cannot change"):
        train(resume=run, steps=2, latent_dim=32, quiet=True)
    with pytest.raises(UserError, match="already holds a run"):
        train(tiny_config(), out=run, quiet=True)
    for damaged in ('{"test": []}', "[]", "{"):  # valid JSON without the split, or no JSON at all
        (run / "split.json").write_text(damaged)
        with pytest.raises(UserError, match="split.json is missing or damaged"):
            train(resume=run, steps=2, quiet=True)


@pytest.mark.slow
def test_run_directory_contents(tmp_path, tiny_config, read_grid, read_chart):
    run = train(tiny_config(steps=4, checkpoint_every=2, grid_every=2, keep_checkpoints=1, builtin_count=64),
                out=tmp_path / "r", quiet=True)
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"]["channels"] == 3 and config["optim"]["steps"] == 4
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) + len(split["test"]) == 64 and not set(split["train"]) & set(split["test"])
    assert RunDir(run).checkpoint_steps() == [4]  # keep_checkpoints=1 removed step 2
    assert [p.name for p in sorted((run / "grids").iterdir())] == ["step-00000002.png", "step-00000004.png"]
    assert [r["step"] for r in read_log(run / "log.jsonl")] == [1, 2, 3, 4]
    # Training state holds no pickle: a safetensors header, JSON structure.
    assert (run / "checkpoints" / "train-00000004.safetensors").read_bytes()[8:9] == b"{"
    assert RunDir(run).model_weights(4).exists()
    # The pictures show what they say: the held-out images (up to 8), the final model's reconstructions of them and
    # its samples of seed 0, tile by tile (up to one 8-bit level: batched kernels round differently).
    model = Model.load(run, device="cpu")
    held_out = open_data("builtin", 16, 3, 0.1, 0, builtin_count=64).test
    real = held_out.get(list(range(min(8, len(held_out)))))
    grid = read_grid(run / "grids" / "step-00000004.png", 16, len(real))
    assert grid.shape[0] == 3 and np.array_equal(grid[0], _hwc(real))
    reconstructions = read_grid(run / "reconstructions.png", 16, len(real))
    assert np.array_equal(reconstructions[0], _hwc(real))
    assert _max_difference(reconstructions[1], model.reconstruct(to_float(real))) <= 1
    assert _max_difference(grid[1], model.reconstruct(to_float(real))) <= 1
    assert _max_difference(grid[2], model.sample(len(real), seed=0)) <= 1
    samples = read_grid(run / "samples.png", 16, 8)
    # samples.png draws from the run's code density, which training stored with its final checkpoint
    assert model.density is not None and (run / "checkpoints" / "density-00000004.safetensors").is_file()
    assert samples.shape[:2] == (8, 8) and _max_difference(samples.reshape(64, 16, 16, 3),
                                                           model.sample(64, seed=0)) <= 1
    assert _max_difference(samples.reshape(64, 16, 16, 3), model.sample(64, seed=0, prior="normal")) > 1
    interpolation = read_grid(run / "interpolation.png", 16, 10)  # a, 8 steps, b; then 10 steps between two seeds
    assert np.array_equal(interpolation[0, [0, 9]], _hwc(real[:2]))
    assert _max_difference(interpolation[1], model.interpolate_seeds(0, 1, 10)) <= 1
    read_chart(run / "dynamics.png")


def _hwc(images_u8):
    return images_u8.permute(0, 2, 3, 1).numpy()


def _max_difference(tiles, images):
    """Largest difference in 8-bit levels between picture tiles (N, H, W, 3) and float images (N, 3, H, W)."""
    return int(np.abs(tiles.astype(int).reshape(-1, *tiles.shape[-3:]) - _hwc(to_uint8(images)).astype(int)).max())


@pytest.mark.slow
def test_non_finite_losses_stop_with_a_clear_message(tmp_path, tiny_config):
    config = tiny_config(steps=50, lr=1e30)  # an absurd learning rate overflows within steps
    with pytest.raises(UserError, match="diverged"):
        train(config, out=tmp_path / "r", quiet=True)


def test_calibration_proposes_half_again_the_vae_kl():
    from introvae.calibrate import propose_margin

    assert propose_margin(20.7) == 35.0  # 31.05 rounded up to a multiple of 5
    assert propose_margin(40.0) == 60.0
