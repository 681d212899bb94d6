"""Networks, the training loop, checkpoints and the model API, on small data and small networks."""

import json

import pytest
import torch

from introvae.objectives import OBJECTIVES

from introvae import Config, Model, train
from introvae.checkpoint import checkpoint_steps, load_networks, model_path, save_networks
from introvae.errors import UserError
from introvae.nets import encoder_widths, generator_widths
from introvae.plot import read_log
from introvae.train import Trainer
from introvae.data import open_data

TINY = dict(image_size=16, channels=3, latent_dim=16, base_channels=8, max_channels=32, batch_size=8,
            builtin_count=64, log_every=1, grid_every=0, checkpoint_every=0, warmup_steps=0)


def test_widths_reproduce_table_3_of_the_paper():
    # App. B, Table 3 (1024 x 1024): encoder after each [AvgPool + Res-block], generator after each [Upsample + Res-block].
    assert encoder_widths(1024, 16, 512) == {1024: 16, 512: 32, 256: 64, 128: 128, 64: 256, 32: 512, 16: 512, 8: 512, 4: 512}
    assert generator_widths(1024, 16, 512) == {4: 512, 8: 512, 16: 512, 32: 256, 64: 128, 128: 64, 256: 32, 512: 16, 1024: 16}
    model = Model.build(Config(image_size=1024, channels=3, latent_dim=512, base_channels=16, max_channels=512))
    assert model.encoder.fc.in_features == 8192 and model.encoder.fc.out_features == 1024  # FC-1024, split 512/512
    assert model.generator.fc[0].out_features == 8192  # FC-8192 + ReLU, reshape 512 x 4 x 4


@pytest.mark.parametrize("size", [16, 32, 64, 128, 256, 512, 1024])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes_for_every_size(size, channels):
    model = Model.build(Config(image_size=size, channels=channels, latent_dim=8, base_channels=2, max_channels=8))
    x = torch.rand(2, channels, size, size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 8)
    assert model.decode(mu).shape == (2, channels, size, size)
    model.networks.train()
    assert model.generator(model.encoder(x)[0]).shape == (2, channels, size, size)


def test_save_then_load_gives_identical_outputs(tmp_path):
    config = Config(**TINY)
    model = Model.build(config)
    with torch.no_grad():  # move the batch-norm buffers away from their initial values too
        model.networks.train()
        model.generator(torch.randn(8, 16))
        model.encoder(torch.rand(8, 3, 16, 16))
    save_networks(tmp_path / "m.safetensors", model.networks)
    other = Model.build(config.replace(seed=1))
    x = torch.rand(4, 3, 16, 16)
    assert not torch.equal(other.reconstruct(x), model.reconstruct(x))
    load_networks(tmp_path / "m.safetensors", other.networks)
    assert torch.equal(other.reconstruct(x), model.reconstruct(x))
    assert torch.equal(other.sample(5, seed=2), model.sample(5, seed=2))


def test_loading_weights_of_another_shape_is_a_clear_error(tmp_path):
    save_networks(tmp_path / "m.safetensors", Model.build(Config(**TINY)).networks)
    other = Model.build(Config(**{**TINY, "latent_dim": 8}))
    with pytest.raises(UserError, match="does not fit"):
        load_networks(tmp_path / "m.safetensors", other.networks)


def test_sampling_by_seed_does_not_depend_on_the_batch_size():
    model = Model.build(Config(**TINY))
    # Batched kernels may round differently (~1e-6); an 8-bit level is 4e-3.
    reference = model.sample(11, seed=7, batch_size=11)
    for batch_size in (1, 4, 64):
        torch.testing.assert_close(model.sample(11, seed=7, batch_size=batch_size), reference, atol=1e-5, rtol=0)
    assert not torch.allclose(model.sample(11, seed=8), reference)
    # Image i of a longer draw is image i of a shorter one.
    torch.testing.assert_close(model.sample(3, seed=7), reference[:3], atol=1e-5, rtol=0)


def test_interpolation_ends_at_the_codes():
    model = Model.build(Config(**TINY))
    z_a, z_b = torch.randn(16), torch.randn(16)
    for method in ("lerp", "slerp"):
        path = model.interpolate_latents(z_a, z_b, 5, method)
        torch.testing.assert_close(path[0], z_a)
        torch.testing.assert_close(path[-1], z_b, atol=1e-5, rtol=1e-5)
    x = torch.rand(2, 3, 16, 16)
    assert model.interpolate(x[0], x[1], 6).shape == (6, 3, 16, 16)


@pytest.mark.parametrize("model", sorted(OBJECTIVES))
def test_each_phase_moves_only_its_own_network(tmp_path, model):
    config = Config(**{**TINY, "steps": 1, "warmup_steps": 0, "model": model})
    data = open_data("builtin", 16, 3, 0.1, 0, builtin_count=64)
    trainer = Trainer(config, tmp_path, data, resume=False, quiet=True)
    roles = OBJECTIVES[model].roles
    order, seen = [], {}

    def params():
        return {n: [p.detach().clone() for p in trainer.networks[n].parameters()] for n in roles}

    def wrap(name):
        original = trainer.optimizers[name].step

        def step(*args, **kwargs):
            order.append(name)
            # backward(inputs=...) gave gradients to this phase's network only, and they are finite.
            seen[name] = {"before": params(),
                          "own_grads_finite": all(torch.isfinite(p.grad).all() for p in trainer.networks[name].parameters()
                                                  if p.grad is not None),
                          "other_grads": [p.grad for n in roles if n != name for p in trainer.networks[n].parameters()]}
            result = original(*args, **kwargs)
            seen[name]["after"] = params()
            return result
        trainer.optimizers[name].step = step

    for name in roles:
        wrap(name)
    start = params()
    logs = trainer.train_step()
    assert logs and all(torch.isfinite(v).all() for v in logs.values())
    assert order == list(roles)  # each network steps once, in the objective's order

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a, b))

    previous = start
    for name in roles:
        before, after = seen[name]["before"], seen[name]["after"]
        assert all(same(before[n], previous[n]) for n in roles)  # a phase sees the networks as the last one left them
        assert not same(after[name], before[name])  # its own network moved...
        assert all(same(after[n], before[n]) for n in roles if n != name)  # ...and no other
        assert all(g is None for g in seen[name]["other_grads"]) and seen[name]["own_grads_finite"]
        previous = after


def _weights(run_dir):
    model = Model.load(run_dir, device="cpu")
    return model.networks.state_dict()


@pytest.mark.parametrize("model", sorted(OBJECTIVES))
def test_resume_continues_exactly(tmp_path, model):
    # With the EMA generator and (for avae) the PID controller's state in the checkpoint.
    config = Config(**{**TINY, "hflip": True, "warmup_steps": 2, "model": model, "ema": 0.9})
    straight = train(config.replace(steps=6), out=tmp_path / "straight", quiet=True)
    stopped = train(config.replace(steps=3), out=tmp_path / "stopped", quiet=True)
    train(resume=stopped, steps=6, quiet=True)
    a, b = _weights(straight), _weights(stopped)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The log is continued, not restarted: the same records as the straight run, bar the wall time.
    strip = lambda records: [{k: v for k, v in r.items() if k != "time"} for r in records]
    assert strip(read_log(stopped / "log.jsonl")) == strip(read_log(straight / "log.jsonl"))
    assert checkpoint_steps(stopped) == [3, 6]


def test_resume_refuses_options_that_define_the_run(tmp_path):
    run = train(Config(**{**TINY, "steps": 1}), out=tmp_path / "r", quiet=True)
    with pytest.raises(UserError, match="cannot change"):
        train(resume=run, steps=2, latent_dim=32, quiet=True)
    with pytest.raises(UserError, match="already holds a run"):
        train(Config(**TINY), out=run, quiet=True)


def test_run_directory_contents(tmp_path):
    run = train(Config(**{**TINY, "steps": 4, "checkpoint_every": 2, "grid_every": 2, "keep_checkpoints": 1}),
                out=tmp_path / "r", quiet=True)
    config = json.loads((run / "config.json").read_text())
    assert config["channels"] == 3 and config["steps"] == 4
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) + len(split["test"]) == 64 and not set(split["train"]) & set(split["test"])
    assert checkpoint_steps(run) == [4]  # keep_checkpoints=1 removed step 2
    assert [p.name for p in sorted((run / "grids").iterdir())] == ["step-00000002.png", "step-00000004.png"]
    for name in ("samples.png", "reconstructions.png", "interpolation.png", "dynamics.png"):
        assert (run / name).stat().st_size > 0
    assert [r["step"] for r in read_log(run / "log.jsonl")] == [1, 2, 3, 4]
    # Training state holds no pickle: a safetensors header, JSON structure.
    assert (run / "checkpoints" / "train-00000004.safetensors").read_bytes()[8:9] == b"{"
    assert model_path(run, 4).exists()


def test_non_finite_losses_stop_with_a_clear_message(tmp_path):
    config = Config(**{**TINY, "steps": 50, "lr": 1e30})  # an absurd learning rate overflows within steps
    with pytest.raises(UserError, match="diverged"):
        train(config, out=tmp_path / "r", quiet=True)


def test_calibration_proposes_half_again_the_vae_kl():
    from introvae.calibrate import propose_margin

    assert propose_margin(20.7) == 35.0  # 31.05 rounded up to a multiple of 5
    assert propose_margin(40.0) == 60.0
