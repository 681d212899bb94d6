"""The fitted code density (introvae.density): EM finds known clusters, its log-density is the mixture's, its codes are
seeded per image, it survives a save and load, and `introvae sample --prior` uses it."""

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from introvae import Model
from introvae.cli import main
from introvae.density import CodeDensity, fit_mixture
from introvae.errors import UserError
from introvae.images import load_image, to_float
from introvae.latent import training_images

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
    assert density.latent_dim == model.config.latent_dim
    samples = model.sample(5, seed=3, density=density)
    assert torch.equal(samples, model.decode(density.sample(5, seed=3), prior=True))
    assert not torch.equal(samples, model.sample(5, seed=3))


def test_sample_prior_fitted_saves_a_mixture_that_prior_file_reuses(tiny_run, tmp_path, capsys):
    options = ["--num", "4", "--seed", "2"]
    assert main(["sample", str(tiny_run), *options, "--prior", "fitted", "--components", "2", "--prior-images", "64",
                 "--save-prior", str(tmp_path / "prior.safetensors"), "--out", str(tmp_path / "fitted")]) == 0
    assert main(["sample", str(tiny_run), *options, "--prior", str(tmp_path / "prior.safetensors"),
                 "--out", str(tmp_path / "again")]) == 0
    assert main(["sample", str(tiny_run), *options, "--out", str(tmp_path / "normal")]) == 0
    size, channels = Model.load(tiny_run).config.image_size, Model.load(tiny_run).config.channels

    def read(folder: str) -> np.ndarray:
        return np.stack([load_image(tmp_path / folder / f"{i:06d}.png", size, channels).numpy() for i in range(4)])

    assert np.array_equal(read("fitted"), read("again"))
    assert not np.array_equal(read("fitted"), read("normal"))


@pytest.mark.parametrize("flags, message", [
    (["--prior", "nowhere.safetensors"], "--prior nowhere.safetensors is neither normal, fitted nor a file"),
    (["--prior", "fitted", "--components", "0"], "--components and --prior-images must be positive"),
    (["--save-prior", "p.safetensors"], "--save-prior writes a fitted mixture"),
])
def test_bad_prior_options_are_one_sentence_and_status_2(tiny_run, tmp_path, capsys, flags, message):
    assert main(["sample", str(tiny_run), "--num", "2", "--out", str(tmp_path / "s"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()
