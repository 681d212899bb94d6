"""The 2-D benchmark: the four data sets, the histogram metrics, the MLPs, a short Soft-IntroVAE training that finds
all eight modes of 8gaussians, and `introvae toy2d` for every registered model."""

import json
import math

import pytest
import torch
from PIL import Image

from introvae.cli import main
from introvae.data.toy2d import (
    EIGHT_GAUSSIANS_CENTRES,
    EIGHT_GAUSSIANS_STD,
    RING_RADII,
    TOY_DATASETS,
    sample_toy,
    toy_extent,
)
from introvae.errors import UserError
from introvae.metrics.hist2d import (
    JSD_MAX,
    as_grid,
    histogram2d,
    js_divergence,
    kl_divergence,
    mode_shares,
    toy_metrics,
)
from introvae.nets.mlp import MLPAutoencoder, MLPDecoder, MLPEncoder, PointBuilders
from introvae.objectives import OBJECTIVES
from introvae.toy2d import toy_config, train_toy


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------- data sets


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_datasets_shape_dtype_determinism(name):
    a = sample_toy(name, 1001, _gen(3))
    assert a.shape == (1001, 2) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, sample_toy(name, 1001, _gen(3)))  # a function of the generator's seed alone
    assert not torch.equal(a, sample_toy(name, 1001, _gen(4)))
    assert (a.abs() <= toy_extent(name)).float().mean() > 0.999  # the authors' plotting range holds the data
    assert sample_toy(name, 0, _gen(0)).shape == (0, 2)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown 2-D data set"):
        sample_toy("moons", 10, _gen(0))


def test_eight_gaussians_near_their_centres():
    angles = torch.atan2(EIGHT_GAUSSIANS_CENTRES[:, 1], EIGHT_GAUSSIANS_CENTRES[:, 0])
    expected = torch.arange(8) * (math.pi / 4)
    assert torch.allclose(torch.remainder(angles, 2 * math.pi), expected, atol=1e-6)  # multiples of 45 degrees
    assert torch.allclose(EIGHT_GAUSSIANS_CENTRES.norm(dim=1), torch.full((8,), 2 / 1.414))
    x = sample_toy("8gaussians", 40_000, _gen(0))
    distance, mode = torch.cdist(x, EIGHT_GAUSSIANS_CENTRES).min(dim=1)
    assert distance.max() < 8 * EIGHT_GAUSSIANS_STD  # std 0.02 / 1.414 about each centre
    assert abs(float(distance.pow(2).mean() / 2) ** 0.5 - EIGHT_GAUSSIANS_STD) < 0.05 * EIGHT_GAUSSIANS_STD
    shares = torch.bincount(mode, minlength=8).float() / len(x)
    assert (shares - 1 / 8).abs().max() < 0.01  # modes chosen uniformly


def test_rings_radii():
    x = sample_toy("rings", 40_000, _gen(1))
    radius = x.norm(dim=1)
    radii = torch.tensor(RING_RADII)
    gap, ring = (radius[:, None] - radii).abs().min(dim=1)
    assert gap.max() < 0.4  # noise std 0.08: five standard deviations
    assert abs(float(gap.pow(2).mean()) ** 0.5 - 0.08) < 0.01  # radial noise of a 2-D Gaussian of std 0.08
    shares = torch.bincount(ring, minlength=4).float() / len(x)
    assert (shares - 0.25).abs().max() < 0.01
    assert sorted(RING_RADII) == [0.75, 1.5, 2.25, 3.0]


def test_checkerboard_cells():
    x = sample_toy("checkerboard", 40_000, _gen(2))
    assert (x >= -4).all() and (x < 4).all()
    cell = torch.floor(x / 2).long()  # 2 x 2 squares, indices -2 .. 1
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()  # only the "black" squares are filled
    index = (cell[:, 0] + 2) * 4 + (cell[:, 1] + 2)
    counts = torch.bincount(index, minlength=16).float() / len(x)
    filled = counts[counts > 0]
    assert len(filled) == 8 and (filled - 1 / 8).abs().max() < 0.01  # eight squares, uniform


def test_two_spirals_extent_and_symmetry():
    x = sample_toy("2spirals", 40_000, _gen(5))
    assert x.abs().max() < 4.2  # t / 3 <= pi, plus 0.5 / 3 and the noise
    assert x.mean(dim=0).abs().max() < 0.03  # the mirror image through the origin
    first, second = x[:20_000], x[20_000:]
    # The second half mirrors the first before the noise: their sum is the sum of two noises of std 0.1 (+ uniforms).
    assert (first + second).std(dim=0).max() < 0.25
    radius = x.norm(dim=1)
    assert radius.max() > 3.0 and radius.min() < 0.3  # the arms run from the centre out to ~3 pi / 3
    # Point symmetry of the whole set: a histogram of x and of -x agree.
    assert js_divergence(histogram2d(x, 40, 4.0), histogram2d(-x, 40, 4.0)) < 0.01


# -------------------------------------------------------------------------------------------------------- metrics


def test_histogram_cells_sum_to_one_and_count_outside_points():
    points = torch.tensor([[-3.99, -3.99], [0.01, -3.99], [4.0, 4.0], [10.0, 0.0], [0.0, -4.5], [float("nan"), 0.0]])
    p = histogram2d(points, bins=100, extent=4.0)
    assert p.shape == (100 * 100 + 1,) and p.dtype == torch.float64
    assert math.isclose(float(p.sum()), 1.0)
    assert p[0] == 1 / 6 and p[50 * 100 + 0] == 1 / 6  # cell (x index, y index) is entry x * bins + y
    assert p[99 * 100 + 99] == 1 / 6  # the top-right edge belongs to the last cell
    assert math.isclose(float(p[-1]), 3 / 6)  # outside (and non-finite) points are counted, not dropped
    assert as_grid(p, 100)[50, 0] == 1 / 6
    rng = sample_toy("rings", 5000, _gen(0))
    assert math.isclose(float(histogram2d(rng, 100, 4.0).sum()), 1.0)


def test_identical_histograms_have_zero_divergence():
    p = histogram2d(sample_toy("rings", 5000, _gen(0)), 50, 4.0)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)


def test_disjoint_supports_reach_the_maximum():
    p = torch.tensor([0.5, 0.5, 0.0, 0.0])
    q = torch.tensor([0.0, 0.0, 0.25, 0.75])
    assert js_divergence(p, q) == pytest.approx(math.log(2), abs=1e-12) and JSD_MAX == math.log(2)
    assert kl_divergence(p, q, eps=0) == math.inf
    assert 0 < kl_divergence(p, q) < math.inf  # the smoothing keeps it finite
    real = sample_toy("8gaussians", 5000, _gen(0))
    far = real + 10.0  # every point off the grid: disjoint cells
    assert toy_metrics(real, far, extent=2.0)["jsd"] == pytest.approx(math.log(2), abs=1e-12)


def test_kl_and_jsd_against_hand_computation():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    assert kl_divergence(p, q, eps=0) == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))
    eps = 0.01  # smoothing: add eps to every cell of both, renormalise
    ps, qs = [(v + eps) / (1 + 2 * eps) for v in (0.5, 0.5)], [(v + eps) / (1 + 2 * eps) for v in (0.9, 0.1)]
    assert kl_divergence(p, q, eps=eps) == pytest.approx(sum(a * math.log(a / b) for a, b in zip(ps, qs)))
    # JSD of (1, 0) and (1/2, 1/2): M = (3/4, 1/4).
    expected = 0.5 * math.log(1 / 0.75) + 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    assert js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])) == pytest.approx(expected)
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p))  # symmetric
    # Unnormalised counts are normalised first.
    assert kl_divergence(torch.tensor([2.0, 2.0]), torch.tensor([9.0, 1.0]), eps=0) == pytest.approx(
        kl_divergence(p, q, eps=0))


def test_toy_metrics_of_samples():
    a, b = sample_toy("checkerboard", 50_000, _gen(0)), sample_toy("checkerboard", 50_000, _gen(1))
    same = toy_metrics(a, b, extent=4.0)
    other = toy_metrics(a, sample_toy("rings", 50_000, _gen(2)), extent=4.0)
    assert same["jsd"] < 0.05 and same["kl"] < 0.2
    assert other["jsd"] > 0.4 and other["kl"] > 2.0
    assert same["real_outside"] == 0.0 and same["fake_outside"] == 0.0


def test_mode_shares():
    x = sample_toy("8gaussians", 8000, _gen(0))
    shares = mode_shares(x, EIGHT_GAUSSIANS_CENTRES, 0.1)
    assert shares["near"] == 1.0 and max(abs(s - 1 / 8) for s in shares["shares"]) < 0.02
    one_mode = mode_shares(EIGHT_GAUSSIANS_CENTRES[:1].repeat(10, 1), EIGHT_GAUSSIANS_CENTRES, 0.1)
    assert one_mode["shares"][0] == 1.0 and sum(one_mode["shares"][1:]) == 0.0


# -------------------------------------------------------------------------------------------------------- networks


def test_mlp_networks():
    x = torch.randn(5, 2)
    mu, logvar = MLPEncoder(2, 3)(x)
    assert mu.shape == logvar.shape == (5, 3)
    decoder = MLPDecoder(3, 2, hidden=16, layers=1)
    assert decoder(mu).shape == (5, 2)
    assert sum(isinstance(m, torch.nn.Linear) for m in decoder.modules()) == 3  # in, 1 hidden, out
    disc = MLPAutoencoder(2, 4, hidden=8)
    rec, code = disc(x)
    assert rec.shape == (5, 2) and code.shape == (5, 4)
    assert torch.allclose(disc.decode(disc.encode(x)), rec)
    builders = PointBuilders(data_dim=2, latent_dim=3, hidden=8, layers=1)
    mu, logvar = builders.encoder()(x)
    assert mu.shape == logvar.shape == (5, 3) and builders.generator()(mu).shape == (5, 2)
    assert sum(isinstance(m, torch.nn.Linear) for m in builders.generator().modules()) == 3
    nets = OBJECTIVES["avae"].build_networks(OBJECTIVES["avae"].Options(disc_latent=1), builders)
    assert list(nets) == ["encoder", "generator", "discriminator"]
    rec, code = nets["discriminator"](x)  # the avae's own option sets the code size; the builders, the widths
    assert rec.shape == (5, 2) and code.shape == (5, 1) and nets["discriminator"].encoder[0].out_features == 8


# -------------------------------------------------------------------------------------------------------- training


@pytest.mark.slow
def test_soft_introvae_covers_the_eight_modes(tmp_path):
    """A short seeded Soft-IntroVAE run finds all eight modes of 8gaussians, evenly.

    To fit in ~15 s of two CPU cores this is not the published recipe (30,000 steps of batch 512, 256 units,
    beta_rec 0.2): 3000 steps of batch 64 with 128 units, lr 2e-3 lowered x0.1 for the last fifth, no VAE warm-up,
    and beta_rec 1 (with the published 0.2 the reconstruction term is weaker than the KL of telling 8 modes apart,
    ln 8 * beta_kl, and the modes appear only after many more steps). beta_kl 0.3 and beta_neg 0.9 are the
    published ones. Seeds 0-5 all pass the tolerances below: over them the shares ranged 0.067-0.171, the fraction
    near a centre 0.82-0.89 and the smallest near share 0.058 (seed 0: 0.104-0.142, 0.89, 0.096).
    """
    metrics = train_toy("8gaussians", "soft-introvae", steps=3000, out_dir=tmp_path / "run", seed=0, batch_size=64,
                        hidden=128, lr_milestones=(0.8,), lr=2e-3, beta_rec=1.0, warmup_steps=0, eval_points=20_000)
    modes = metrics["modes"]
    assert modes["radius"] == 0.2
    # Each generated point is assigned to its nearest centre: every mode holds 1/8 +- 0.06 of them ...
    assert all(abs(share - 1 / 8) <= 0.06 for share in modes["shares"]), modes["shares"]
    # ... and most points lie within 0.2 (14 noise std) of a centre, at least 4% of all points near every centre.
    assert modes["near"] >= 0.7, modes
    assert min(modes["near_shares"]) >= 0.04, modes["near_shares"]
    assert metrics["skipped_steps"] == 0 and metrics["fake_outside"] < 0.01
    assert metrics["jsd"] < 0.6 < JSD_MAX  # far from disjoint supports (the untrained decoder scores ~ ln 2)
    config = json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["objective"]
    assert config["beta_kl"] == 0.3 and config["beta_neg"] == 0.9 and config["beta_rec"] == 1.0


def test_toy_defaults_follow_the_authors():
    config = toy_config("checkerboard", "soft-introvae")
    assert (config.objective.beta_kl, config.objective.beta_rec, config.objective.beta_neg) == (0.1, 0.2, 0.2)
    assert (config.optim.batch_size, config.optim.steps, config.networks.latent_dim, config.optim.warmup_steps) == (
        512, 30_000, 2, 2000)
    assert toy_config("rings", "soft-introvae", steps=3000).optim.warmup_steps == 200  # the warm-up keeps its share
    assert toy_config("2spirals", "vae").objective.beta_kl == 0.5
    with pytest.raises(UserError, match="not a 2-D data set"):
        toy_config("moons", "vae")
    with pytest.raises(UserError, match="not a training option"):
        toy_config("rings", "vae", hidden=3)


@pytest.mark.parametrize("model", sorted(OBJECTIVES))
def test_cli_toy2d_every_model(model, tmp_path, capsys, read_chart):
    dataset = TOY_DATASETS[sorted(OBJECTIVES).index(model) % len(TOY_DATASETS)]
    out = tmp_path / "run"
    args = ["toy2d", "--dataset", dataset, "--model", model, "--steps", "4", "--batch-size", "16", "--out", str(out),
            "--eval-points", "500", "--log-every", "2", "--quiet"]
    assert main(args) == 0
    assert "KL" in capsys.readouterr().out
    for name in ("samples.png", "density.png"):
        read_chart(out / name)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["dataset"] == dataset and metrics["steps"] == 4
    assert 0 <= metrics["jsd"] <= JSD_MAX + 1e-12 and metrics["kl"] >= 0
    assert metrics["grid"]["bins"] == 100 and metrics["grid"]["range"] == [-toy_extent(dataset), toy_extent(dataset)]
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [2, 4]
    with Image.open(out / "samples.png") as image:
        assert image.mode == "RGB" and image.size[0] > 500
    # A finished run is not overwritten.
    assert main(args) == 2
    assert str(out) in capsys.readouterr().err
