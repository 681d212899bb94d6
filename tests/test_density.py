"""The fitted code density (introvae.density): EM finds known clusters, its log-density is the mixture's, its codes are
seeded per image, it survives a save and load, and `introvae sample --prior` uses it."""

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from introvae import Model
from introvae.cli import main
from introvae.density import DEFAULT_TEMPERATURE, SMALL_SET, CodeDensity, fit_mixture
from introvae.errors import UserError
from introvae.images import load_image, to_float
from introvae.latent import training_images
from introvae.seeds_devices import stream_seed

CENTRES = torch.tensor([[0.0, 0.0], [6.0, 6.0], [-6.0, 6.0]])
COUNTS, SPREADS = (300, 600, 100), (1.0, 0.5, 0.3)


def _clusters(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([centre + spread * torch.randn(count, 2, generator=generator)
                      for centre, count, spread in zip(CENTRES, COUNTS, SPREADS)])


def _by_position(density: CodeDensity) -> CodeDensity:
    """The components in the order of CENTRES (EM numbers them as k-means happened to)."""
    order = torch.cdist(CENTRES.double(), density.means).argmin(1)
    return CodeDensity(density.weights[order], density.means[order], density.scale_tril[order])


def test_em_finds_the_weights_means_and_spreads_of_separated_clusters():
    density = _by_position(fit_mixture(_clusters(), components=3))
    assert torch.allclose(density.weights, torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS), atol=0.01)
    assert torch.allclose(density.means, CENTRES.double(), atol=0.15)
    stddevs = density.scale_tril.diagonal(dim1=1, dim2=2)  # nearly diagonal covariances: L's diagonal ~ stddev
    assert torch.allclose(stddevs, torch.tensor(SPREADS, dtype=torch.float64)[:, None].expand(3, 2), rtol=0.15)


def test_log_prob_is_the_mixtures_density():
    density = fit_mixture(_clusters(), components=3)
    reference = MixtureSameFamily(Categorical(probs=density.weights),
                                  MultivariateNormal(density.means, scale_tril=density.scale_tril))
    x = torch.randn(50, 2, dtype=torch.float64) * 5
    assert torch.allclose(density.log_prob(x), reference.log_prob(x), atol=1e-8)


def test_codes_are_seeded_per_image_and_follow_the_mixture():
    density = _by_position(fit_mixture(_clusters(), components=3))
    assert torch.equal(density.sample(6, seed=4)[3:], density.sample(3, seed=4, start=3))
    assert not torch.equal(density.sample(3, seed=4), density.sample(3, seed=5))
    codes = density.sample(3000, seed=1).double()
    nearest = torch.cdist(codes, CENTRES.double()).argmin(1)
    shares = torch.bincount(nearest, minlength=3).double() / len(codes)
    assert torch.allclose(shares, density.weights, atol=0.03)


def test_save_and_load_give_the_same_codes(tmp_path):
    density = fit_mixture(_clusters(), components=3)
    density.save(tmp_path / "d.safetensors")
    again = CodeDensity.load(tmp_path / "d.safetensors")
    assert torch.equal(again.sample(20, seed=2), density.sample(20, seed=2))
    (tmp_path / "other.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="is not a code density file"):
        CodeDensity.load(tmp_path / "other.safetensors")


def test_too_few_codes_for_the_components_is_a_clear_error():
    with pytest.raises(UserError, match="needs at least 5 codes"):
        fit_mixture(torch.randn(4, 2), components=5)


@pytest.mark.parametrize("codes, components", [(8192, 100), (2000, 100), (1999, 99), (300, 15), (5, 1)])
def test_without_components_a_small_training_set_gets_a_smaller_mixture(codes, components):
    # one component per 20 codes, up to 100: a few dozen training images still fit (no "needs at least" error)
    assert fit_mixture(torch.randn(codes, 2, generator=torch.Generator().manual_seed(0)),
                       iterations=1).components == components


def test_a_model_samples_the_density_it_is_given(tiny_run):
    model = Model.load(tiny_run)
    density = model.fit_code_density(to_float(training_images(model.config, 64)), components=2)
    assert density.latent_dim == model.config.networks.latent_dim
    samples = model.sample(5, seed=3, prior=density)
    assert torch.equal(samples, model.decode(density.sample(5, seed=3), prior=True))
    assert not torch.equal(samples, model.sample(5, seed=3, prior="normal"))


def test_sample_prior_fitted_saves_a_mixture_that_prior_file_reuses(tiny_run, tmp_path, capsys):
    options = ["--num", "4", "--seed", "2"]
    assert main(["sample", str(tiny_run), *options, "--prior", "fitted", "--components", "2", "--prior-images", "64",
                 "--save-prior", str(tmp_path / "prior.safetensors"), "--out", str(tmp_path / "fitted")]) == 0
    assert main(["sample", str(tiny_run), *options, "--prior", str(tmp_path / "prior.safetensors"),
                 "--out", str(tmp_path / "again")]) == 0
    assert main(["sample", str(tiny_run), *options, "--prior", "normal", "--out", str(tmp_path / "normal")]) == 0
    dataset = Model.load(tiny_run).config.dataset
    size, channels = dataset.image_size, dataset.channels

    def read(folder: str) -> np.ndarray:
        return np.stack([load_image(tmp_path / folder / f"{i:06d}.png", size, channels).numpy() for i in range(4)])

    assert np.array_equal(read("fitted"), read("again"))
    assert not np.array_equal(read("fitted"), read("normal"))


@pytest.mark.parametrize("flags, message", [
    (["--prior", "nowhere.safetensors"], "--prior nowhere.safetensors is neither run, normal, fitted nor a file"),
    (["--prior", "fitted", "--components", "0"], "--components and --prior-images must be positive"),
    (["--prior", "normal", "--save-prior", "p.safetensors"], "--save-prior writes the density the codes come from"),
])
def test_bad_prior_options_are_one_sentence_and_status_2(tiny_run, tmp_path, capsys, flags, message):
    assert main(["sample", str(tiny_run), "--num", "2", "--out", str(tmp_path / "s"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_prior_normal_draws_the_papers_codes_seeded_per_image(tiny_run):
    # --prior normal: code i of seed s is N(0, I) from a generator seeded by (s, 1, i), as before runs stored a density
    model = Model.load(tiny_run)
    assert model.density is not None  # training stored one, so the default sampler is not N(0, I)
    by_hand = torch.stack([torch.randn(model.config.networks.latent_dim, generator=torch.Generator().manual_seed(
        stream_seed(7, 1, i))) for i in range(3, 6)])
    assert torch.equal(model.latents(3, seed=7, start=3, prior="normal"), by_hand)
    torch.testing.assert_close(model.sample(6, seed=7, prior="normal")[3:], model.decode(by_hand, prior=True))
    assert torch.equal(model.latents(3, seed=7, start=3), model.density.sample(3, seed=7, start=3))


def test_the_stored_density_survives_export_and_loading(tiny_run, tmp_path):
    from introvae.export import export_model
    model = Model.load(tiny_run)
    stored = CodeDensity.load(tiny_run / "checkpoints" / f"density-{model.origin[1]:08d}.safetensors")
    exported = Model.load(export_model(tiny_run, tmp_path / "model.safetensors"))
    for density in (model.density, exported.density):
        for name in ("weights", "means", "scale_tril"):
            assert torch.equal(getattr(density, name), getattr(stored, name))
    assert torch.equal(exported.sample(4, seed=1), model.sample(4, seed=1))
    assert torch.equal(exported.sample(4, seed=1, prior="normal"), model.sample(4, seed=1, prior="normal"))


def test_a_run_without_a_stored_density_fits_it_on_first_use_and_says_so(tiny_run_copy, tmp_path, capsys):
    stored = tiny_run_copy / "checkpoints" / f"density-{Model.load(tiny_run_copy).origin[1]:08d}.safetensors"
    expected = CodeDensity.load(stored)
    stored.unlink()  # as a run trained before runs stored their density
    assert main(["sample", str(tiny_run_copy), "--num", "3", "--out", str(tmp_path / "a.npz")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "fitted on first use" in first and str(stored) in first
    refit = CodeDensity.load(stored)  # the same images, the same fit as training's
    torch.testing.assert_close(refit.means, expected.means)
    assert main(["sample", str(tiny_run_copy), "--num", "3", "--out", str(tmp_path / "b.npz")]) == 0
    again = capsys.readouterr().out.splitlines()[0]
    assert "first use" not in again and "the run's code density" in again
    assert np.array_equal(np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"])
    assert main(["sample", str(tiny_run_copy), "--num", "3", "--prior", "normal",
                 "--out", str(tmp_path / "c.npz")]) == 0
    assert "N(0, I) (--prior normal)" in capsys.readouterr().out.splitlines()[0]


def test_temperature_scales_each_components_spread_on_the_same_draws():
    density = fit_mixture(_clusters(), components=3, temperature=1.0)
    cool = CodeDensity(density.weights, density.means, density.scale_tril, temperature=0.5)
    warm_codes, cool_codes = density.sample(50, seed=4), cool.sample(50, seed=4)
    nearest = torch.cdist(warm_codes.double(), density.means).argmin(1)  # the same component is drawn for code i
    torch.testing.assert_close(cool_codes.double() - density.means[nearest],
                               0.5 * (warm_codes.double() - density.means[nearest]), rtol=1e-5, atol=1e-5)
    # 0.8 from SMALL_SET codes on, the mixture's own spread for a small training set
    assert fit_mixture(torch.randn(SMALL_SET, 2), components=3, iterations=1).temperature == DEFAULT_TEMPERATURE
    assert fit_mixture(torch.randn(SMALL_SET - 1, 2), components=3, iterations=1).temperature == 1.0
    # it travels with the density
    assert CodeDensity.from_tensors(cool.to_tensors("x."), "x.").temperature == 0.5


def test_selection_weights_favour_what_is_common_among_real_images_and_stay_bounded():
    from introvae.model import SELECTION_LOG_RATIO_LIMIT, _selection_log_weights
    critic = torch.tensor([20.0, 2.0, 30.0, 4.0])  # real KL 20 +- 2, generated 30 +- 4
    log_weights = _selection_log_weights(torch.tensor([20.0, 23.0, 25.0, 30.0]), critic)
    assert log_weights[0] > log_weights[1] > log_weights[2] > log_weights[3]  # typical of real images first
    by_hand = -0.5 * (3 / 2) ** 2 + 0.5 * (7 / 4) ** 2 + np.log(2)  # log N(23; 20, 2) - log N(23; 30, 4)
    assert float(log_weights[1]) == pytest.approx(by_hand)
    # equal widths make the ratio an exponential in s, unbounded in one tail: clipped
    tails = _selection_log_weights(torch.tensor([-1000.0, 1000.0]), torch.tensor([20.0, 2.0, 30.0, 2.0]))
    assert tails.tolist() == [SELECTION_LOG_RATIO_LIMIT, -SELECTION_LOG_RATIO_LIMIT]


def test_selection_by_the_critic_keeps_each_image_a_function_of_seed_and_index(tiny_run):
    model = Model.load(tiny_run)
    assert model.density.critic is not None  # training stored the critic's statistics with the density
    selected = model.sample(6, seed=2, select=4)
    torch.testing.assert_close(model.sample(3, seed=2, select=4, batch_size=5), selected[:3])
    torch.testing.assert_close(model.sample(1, seed=2, select=1), model.sample(1, seed=2))
    # each kept image is one of its own candidates: the unselected image or a draw of the stream of (seed, i)
    plain = model.sample(6, seed=2)
    for i in range(6):
        others = model.decode(model.density.sample(3, seed=stream_seed(2, 3, i)), prior=True)
        candidates = torch.cat([plain[i:i + 1], others])
        assert (candidates - selected[i]).flatten(1).abs().max(1).values.min() < 1e-5
    with pytest.raises(UserError, match="--select must be at least 1"):
        model.sample(2, select=0)
    with pytest.raises(UserError, match="needs its critic statistics"):
        model.sample(2, select=2, prior="normal")


@pytest.mark.parametrize("flags, message", [
    (["--select", "0"], "--select must be at least 1"),
    (["--temperature", "0"], "--temperature must be positive"),
    (["--prior", "normal", "--temperature", "0.5"], "--prior normal has none"),
])
def test_bad_sampler_options_are_one_sentence_and_status_2(tiny_run, tmp_path, capsys, flags, message):
    assert main(["sample", str(tiny_run), "--num", "2", "--out", str(tmp_path / "s.npz"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.npz").exists()


def test_a_density_fitted_a_chunk_at_a_time_is_the_one_fitted_at_once(tiny_run):
    # training and first use stream the images in chunks (large images never all in memory): the same fit
    from introvae.data import evenly_spaced
    from introvae.latent.sets import training_source
    model = Model.load(tiny_run)
    source = training_source(model.config)
    whole = model.fit_code_density(evenly_spaced(source, 64), components=2)
    chunked = model.fit_code_density(evenly_spaced(source, 64, chunk=7), components=2)
    assert len(list(evenly_spaced(source, 64, chunk=7))) == 10  # 64 images in chunks of 7
    torch.testing.assert_close(chunked.means, whole.means)
    torch.testing.assert_close(chunked.critic, whole.critic)
