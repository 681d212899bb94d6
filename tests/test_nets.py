"""The networks: the paper's widths, output shapes at every size, and what each encoder normalisation does."""

import pytest
import torch

from introvae import Config, Model
from introvae.checkpoint import load_networks, save_networks
from introvae.nets import ARCHITECTURES, ENCODER_NORMS, encoder_widths, generator_widths, light_widths


def test_widths_reproduce_table_3_of_the_paper():
    # App. B, Table 3 (1024 x 1024): encoder after each [AvgPool + Res-block], generator after each [Upsample +
    # Res-block].
    assert encoder_widths(1024, 16, 512) == {1024: 16, 512: 32, 256: 64, 128: 128, 64: 256, 32: 512, 16: 512, 8: 512,
                                             4: 512}
    assert generator_widths(1024, 16, 512) == {4: 512, 8: 512, 16: 512, 32: 256, 64: 128, 128: 64, 256: 32, 512: 16,
                                               1024: 16}
    model = Model.build(Config(image_size=1024, channels=3, latent_dim=512, base_channels=16, max_channels=512))
    assert model.encoder.fc.in_features == 8192 and model.encoder.fc.out_features == 1024  # FC-1024, split 512/512
    assert model.generator.fc[0].out_features == 8192  # FC-8192 + ReLU, reshape 512 x 4 x 4


def test_light_widths_double_per_halving_up_to_the_cap():
    assert light_widths(32, 32, 256) == [32, 64, 128]  # 32 -> 16 -> 8 -> 4
    assert light_widths(256, 16, 128) == [16, 32, 64, 128, 128, 128]
    model = Model.build(Config(arch="light", image_size=32, channels=3, latent_dim=16, base_channels=32,
                               max_channels=256))
    assert model.encoder.fc.in_features == 128 * 16 and model.encoder.fc.out_features == 32
    assert model.generator.fc.out_features == 128 * 16


@pytest.mark.parametrize("size", [16, 32, 64, 128,
                                  *(pytest.param(s, marks=pytest.mark.slow) for s in (256, 512, 1024))])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_output_shapes_for_every_size(size, channels, arch):
    model = Model.build(Config(arch=arch, image_size=size, channels=channels, latent_dim=8, base_channels=2,
                               max_channels=8))
    x = torch.rand(2, channels, size, size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 8)
    assert model.decode(mu).shape == (2, channels, size, size)
    model.networks.train()
    assert model.generator(model.encoder(x)[0]).shape == (2, channels, size, size)


@pytest.mark.parametrize("norm", ENCODER_NORMS)
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_encoder_norm_treats_each_image_alone_unless_batch(norm, arch, tmp_path):
    # Batch-norm in training mode codes an image differently in another batch; group-norm, none and spectral
    # code each image alone. Every kind saves and loads to the same outputs.
    config = Config(arch=arch, image_size=16, channels=1, latent_dim=4, base_channels=4, max_channels=8,
                    encoder_norm=norm)
    model = Model.build(config)
    layers = [type(m).__name__ for m in model.encoder.modules()]
    assert ("BatchNorm2d" in layers) == (norm == "batch") and ("GroupNorm" in layers) == (norm == "group")
    # (spectral norm's power iteration moves the weights at every training-mode call: compare it in eval mode, where
    # its encoder has nothing else that depends on the mode)
    model.networks.train(norm != "spectral")
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    alone = model.encoder(x[:3])[0]
    mixed = model.encoder(torch.cat([x[:3], 1 - x[3:]]))[0][:3]
    assert torch.allclose(alone, mixed, atol=1e-5) == (norm != "batch")
    model.networks.eval()
    save_networks(tmp_path / "m.safetensors", model.networks)
    loaded = Model.build(config)
    load_networks(tmp_path / "m.safetensors", loaded.networks)
    loaded.networks.eval()
    torch.testing.assert_close(loaded.encoder(x)[0], model.encoder(x)[0])


def test_spectral_encoder_norm_bounds_each_layer():
    model = Model.build(Config(arch="light", image_size=16, channels=1, latent_dim=4, base_channels=4,
                               max_channels=8, encoder_norm="spectral"))
    model.networks.train()
    for _ in range(20):  # power iterations converge over forward passes
        model.encoder(torch.rand(2, 1, 16, 16))
    linear = model.encoder.fc
    assert torch.linalg.matrix_norm(linear.weight.detach(), ord=2).item() == pytest.approx(1.0, abs=0.05)
