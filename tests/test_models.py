"""The registry of objectives and the Model they build: the soft-introvae and vae losses against plain hand
computations, sampling from the EMA generator, one network per role, and every model through the command line (train,
sample, evaluate). The IntroVAE objective has its own file (test_objective.py), avae too (test_avae.py); tests that hold
for every model are parametrised over OBJECTIVES here, in test_engine.py and in test_train.py."""

import json

import pytest
import torch
from torch import nn

from introvae.cli import main
from introvae.config import PRESETS, Config
from introvae.model import Model
from introvae.nets import ImageBuilders, PointBuilders
from introvae.objectives import OBJECTIVES, Objective, build_objective
from introvae.train import train


def _kl(mu, logvar):
    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)


def _sse(a, b):
    return ((a - b) ** 2).flatten(1).sum(1)


def test_soft_introvae_losses_by_hand(tiny_networks):
    nets = tiny_networks()
    x = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    config = Config(model="soft-introvae", beta_kl=0.7, beta_rec=1.3, beta_neg=5.0, gamma_r=0.2)
    phases = build_objective(config).phases(nets, x, 0, torch.Generator().manual_seed(2))
    loss_encoder = next(phases).loss
    loss_decoder = next(phases).loss  # no optimizer step in between: both use the same weights

    # The same computation written out, drawing the noise in the objective's order.
    g = torch.Generator().manual_seed(2)
    enc, dec = nets["encoder"], nets["generator"]
    s = 1 / 4
    with torch.no_grad():
        mu, logvar = enc(x)
        x_r = dec(mu + (0.5 * logvar).exp() * torch.randn(5, 3, generator=g))
        x_p = dec(torch.randn(5, 3, generator=g))
        real = s * (1.3 * _sse(x_r, x).mean() + 0.7 * _kl(mu, logvar).mean())
        penalty = 0
        for fake in (x_r, x_p):
            m, lv = enc(fake)
            rec = dec(m + (0.5 * lv).exp() * torch.randn(5, 3, generator=g))
            penalty = penalty + torch.exp(-2 * s * (1.3 * _sse(rec, fake) + 5.0 * _kl(m, lv))).mean()
        expected_encoder = real + 0.25 * penalty
        kls, sses = [], []
        for fake in (x_r, x_p):
            m, lv = enc(fake)
            kls.append(_kl(m, lv).mean())
            sses.append(_sse(dec(m + (0.5 * lv).exp() * torch.randn(5, 3, generator=g)), fake).mean())
        expected_decoder = s * (1.3 * _sse(x_r, x).mean() + 0.7 / 2 * (kls[0] + kls[1])
                                + 0.2 * 1.3 / 2 * (sses[0] + sses[1]))
    torch.testing.assert_close(loss_encoder, expected_encoder)
    torch.testing.assert_close(loss_decoder, expected_decoder)


def test_vae_loss_by_hand(tiny_networks):
    nets = tiny_networks()
    x = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(3))
    config = Config(model="vae", beta_kl=0.5, beta=2.0, reconstruction="half_sse")
    phases = build_objective(config).phases(nets, x, 0, torch.Generator().manual_seed(4))
    encoder_phase, generator_phase = next(phases), next(phases)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        mu, logvar = nets["encoder"](x)
        x_r = nets["generator"](mu + (0.5 * logvar).exp() * torch.randn(6, 3, generator=g))
        ae = 0.5 * _sse(x_r, x).mean()
    torch.testing.assert_close(encoder_phase.loss, 0.5 * _kl(mu, logvar).mean() + 2.0 * ae)
    torch.testing.assert_close(generator_phase.loss, 2.0 * ae)


def test_learning_rate_defaults_per_model():
    assert Config(model="introvae").resolved_lr() == 2e-4
    assert Config(model="introvae", lr=1e-3).resolved_lr() == 1e-3
    for name, cls in OBJECTIVES.items():
        assert Config(model=name).resolved_lr() == cls.default_lr


# ---- EMA of the generator



@pytest.mark.slow
def test_sampling_uses_the_ema_generator(tmp_path):
    config = Config(image_size=16, latent_dim=8, base_channels=4, max_channels=16, batch_size=8, steps=3,
                    warmup_steps=1, builtin_count=32, grid_every=0, ema=0.5)
    run = train(config, out=tmp_path / "run", quiet=True)
    model = Model.load(run)
    assert model.generator is model.networks["generator_ema"]
    raw = model.networks["generator"]
    assert any(not torch.equal(a, b) for a, b in zip(raw.parameters(), model.generator.parameters()))
    z = model.latents(4, seed=0)
    # prior codes decode with prior statistics
    torch.testing.assert_close(model.sample(4, seed=0), model.decode(z, prior=True))
    with model.evaluating():
        assert not torch.allclose(raw(z).clamp(0, 1), model.sample(4, seed=0))


# ---- the networks of an objective's roles


class _WithCritic(Objective):
    """An objective (unregistered: no name) with a network beyond the encoder and generator."""

    roles = ("encoder", "critic", "generator")

    @classmethod
    def build_role(cls, role, options, builders):
        return nn.Linear(builders.latent_dim, options)


def test_an_objective_builds_the_roles_beyond_the_encoder_and_generator_itself():
    images = ImageBuilders(image_size=8, channels=1, latent_dim=4, arch="light", base_channels=4, max_channels=8,
                           encoder_norm="batch")
    networks = _WithCritic.build_networks(3, images)
    assert list(networks) == ["encoder", "critic", "generator"]  # the order of its roles
    assert networks["critic"].out_features == 3 and networks["generator"](torch.zeros(2, 4)).shape == (2, 1, 8, 8)
    points = _WithCritic.build_networks(1, PointBuilders(data_dim=2, latent_dim=5, hidden=4, layers=0))
    assert points["encoder"](torch.zeros(3, 2))[0].shape == (3, 5) and points["critic"].in_features == 5

    class Unbuilt(Objective):
        roles = ("encoder", "generator", "critic")

    with pytest.raises(NotImplementedError, match="Unbuilt declares the role 'critic'"):
        Unbuilt.build_networks(None, images)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_a_model_holds_one_network_per_role_of_its_objective(name):
    config = Config(model=name, image_size=8, channels=1, latent_dim=4, base_channels=4, max_channels=8,
                    disc_channels=4, disc_latent=4, ema=0.5)
    model = Model.build(config)
    objective = OBJECTIVES[name]
    assert list(model.networks) == [*objective.roles, *(f"{role}_ema" for role in objective.averaged_roles)]


# ---- every model through the command line




@pytest.mark.parametrize("model", sorted(OBJECTIVES))
@pytest.mark.slow
def test_every_model_trains_samples_and_evaluates_from_the_command_line(model, tmp_path, monkeypatch, capsys, tiny_cli):
    monkeypatch.setenv("INTROVAE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("INTROVAE_FID_WEIGHTS", raising=False)
    run = tmp_path / "run"
    flags = tiny_cli(batch_size=8, builtin_count=64, test_fraction=0.25, warmup_steps=1, ema=0.9)
    assert main(["train", "--model", model, "--out", str(run), "--steps", "3", *flags, "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == model and config["optim"]["lr"] == OBJECTIVES[model].default_lr  # the resolved default
    assert main(["sample", str(run), "--num", "5", "--out", str(tmp_path / "s.npz")]) == 0
    import numpy as np

    with np.load(tmp_path / "s.npz") as f:
        assert f["images"].shape == (5, 16, 16, 3)
    assert main(["evaluate", str(run), "--num-samples", "8", "--msssim-pairs", "20", "--quiet"]) == 0
    report = json.loads((run / "eval" / "eval-00000003.json").read_text())
    assert report["reconstruction"]["count"] == 16 and "ms_ssim" in report["metrics"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_are_valid_configs(preset):
    from introvae.config import from_preset

    config = from_preset(preset).validate()
    assert config.model in OBJECTIVES
