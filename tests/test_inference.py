"""What a trained model is at inference: batch-norm statistics of real data, the precision it trained in, and the
margin chosen by --margin auto."""

import copy
import json

import pytest
import torch

from introvae import Config, Model, train
from introvae import precision as precision_module
from introvae.data import open_data
from introvae.errors import UserError
from introvae.images import to_float
from introvae.nets import ARCHITECTURES
from introvae.objectives import OBJECTIVES
from introvae.objectives.introvae import propose_margin
from introvae.precision import resolve_precision
from introvae.runlog import read_log
from introvae.seeds_devices import resolve_device

# The tiny run (conftest.py) made larger, so that batch-norm statistics and the KL have something to say.
SMALL = dict(latent_dim=16, base_channels=8, max_channels=32, batch_size=16, builtin_count=256, log_every=5)


def _held_out(config: Config, count: int = 48) -> torch.Tensor:
    dataset = config.dataset
    data = open_data("builtin", dataset.image_size, 3, dataset.test_fraction, config.run.seed, dataset.builtin_count)
    return to_float(data.test.get(range(min(count, len(data.test)))))


def _rmse_eval_mode(model: Model, images: torch.Tensor) -> float:
    return (model.reconstruct(images) - images).pow(2).mean().sqrt().item()


def _rmse_batch_statistics(model: Model, images: torch.Tensor) -> float:
    """Each batch normalised with its own statistics (train mode), decoding the posterior means as eval mode does."""
    networks = copy.deepcopy(model.networks).train()
    generator = networks["generator_ema"] if "generator_ema" in networks else networks["generator"]
    with torch.no_grad():
        recs = [generator(networks["encoder"](chunk)[0]).clamp(0, 1)
                for chunk in images.split(model.config.optim.batch_size)]
    return (torch.cat(recs) - images).pow(2).mean().sqrt().item()


@pytest.mark.parametrize("model, arch", [(model, "appb") for model in sorted(OBJECTIVES)]
                         + [("introvae", arch) for arch in sorted(ARCHITECTURES) if arch != "appb"])
@pytest.mark.slow
def test_eval_mode_reconstructions_match_batch_statistics(tmp_path, model, arch, tiny_config):
    # 150 steps at lr 1e-3: long enough for IntroVAE's running averages to drift from real data (with the averages
    # kept during training its eval-mode RMSE is 13 % above the batch-statistics one here).
    # A narrow discriminator for avae (its default width would take most of the time): only the encoder and the
    # generator, whose batch-norm statistics are compared here, decode.
    narrow = dict(disc_channels=8, disc_latent=8) if model == "avae" else {}
    config = tiny_config(**SMALL, **narrow, model=model, arch=arch, steps=150, warmup_steps=20, lr=1e-3)
    run = train(config, out=tmp_path / "run", quiet=True)
    trained = Model.load(run, device="cpu")
    images = _held_out(config)
    eval_mode, batch_stats = _rmse_eval_mode(trained, images), _rmse_batch_statistics(trained, images)
    # At most 5 % worse (it may be better: the re-estimated averages see 512 images, a batch only 16).
    assert eval_mode <= 1.05 * batch_stats, (eval_mode, batch_stats)


@pytest.mark.slow
def test_reestimating_repairs_statistics_of_generated_images(tmp_path, tiny_config):
    # A model whose averages describe other inputs (as those kept while training on generated images do).
    config = tiny_config(**SMALL, steps=40, warmup_steps=10)
    run = train(config, out=tmp_path / "run", quiet=True)
    model = Model.load(run, device="cpu")
    images = _held_out(config)
    with torch.no_grad():
        for module in model.networks.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.add_(0.5)
                module.running_var.mul_(4.0)
    batch_stats = _rmse_batch_statistics(model, images)
    assert _rmse_eval_mode(model, images) > 1.2 * batch_stats  # the broken averages cost visibly
    dataset = config.dataset
    training_images = open_data("builtin", 16, 3, dataset.test_fraction, 0, dataset.builtin_count).train.get(range(224))
    model.reestimate_batchnorm(training_images)
    assert _rmse_eval_mode(model, images) <= 1.05 * batch_stats
    # A function of the weights and images alone: doing it again changes nothing.
    before = {k: v.clone() for k, v in model.networks.state_dict().items()}
    model.reestimate_batchnorm(training_images)
    assert all(torch.equal(before[k], v) for k, v in model.networks.state_dict().items())


# ---------------------------------------------------------------------------------------------------- precision


def test_auto_precision_is_fp32_without_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: False)
    assert resolve_precision("auto", cpu)[0] == "fp32"
    precision, why = resolve_precision("bf16", cpu)
    assert precision == "bf16" and "slower" in why  # allowed, with a warning
    assert resolve_precision("fp32", cpu)[0] == "fp32"


@pytest.mark.parametrize("decided", [False, True])
def test_auto_precision_with_native_bf16_follows_the_quality_decision(monkeypatch, decided):
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: True)
    monkeypatch.setattr(precision_module, "AUTO_CHOOSES_BF16", decided)
    assert resolve_precision("auto", torch.device("cpu"))[0] == ("bf16" if decided else "fp32")


def test_bf16_keeps_the_output_layers_and_losses_in_fp32(tiny_config):
    model = Model.build(tiny_config(**SMALL))
    x = torch.rand(4, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mu, logvar = model.networks["encoder"](x)
        image = model.networks["generator"](mu)
        hidden = model.networks["encoder"].features(x)
    assert hidden.dtype == torch.bfloat16  # the convolutions do run in bf16...
    assert mu.dtype == logvar.dtype == image.dtype == torch.float32  # ...but what the losses see is fp32


@pytest.mark.slow
def test_bf16_run_trains_and_records_its_precision(tmp_path, capsys, tiny_config):
    run = train(tiny_config(**SMALL, steps=6, warmup_steps=2, precision="bf16"), out=tmp_path / "run")
    assert json.loads((run / "config.json").read_text())["optim"]["precision"] == "bf16"
    assert "precision bf16" in capsys.readouterr().err.splitlines()[0]
    records = [r for r in read_log(run / "log.jsonl") if "ae" in r]
    assert records and all(torch.isfinite(torch.tensor(r["ae"])) for r in records)


@pytest.mark.slow
def test_auto_precision_is_resolved_in_config_json(tmp_path, tiny_config):
    config = tiny_config(**SMALL, steps=1)
    assert config.optim.precision == "auto"
    run = train(config, out=tmp_path / "run", quiet=True)
    expected, _ = resolve_precision("auto", resolve_device(config.run.device))
    assert json.loads((run / "config.json").read_text())["optim"]["precision"] == expected


# ---------------------------------------------------------------------------------------------------- margin auto


AUTO = dict(SMALL, margin="auto", warmup_steps=8, log_every=1)


@pytest.mark.slow
def test_margin_auto_is_chosen_from_the_last_quarter_of_the_warm_up(tmp_path, tiny_config):
    run = train(tiny_config(**AUTO, steps=12), out=tmp_path / "run", quiet=True)
    records = read_log(run / "log.jsonl")
    events = [r for r in records if r.get("event") == "margin"]
    assert len(events) == 1 and events[0]["step"] == 9  # set when the game starts, in the first step after warm-up
    # The last quarter of 8 warm-up steps: steps 7 and 8 (log_every=1, so one record per step).
    last_quarter = [r["kl_real"] for r in records if r.get("step") in (7, 8) and "kl_real" in r]
    assert events[0]["kl_real"] == pytest.approx(sum(last_quarter) / 2, rel=1e-5)
    assert events[0]["margin"] == propose_margin(events[0]["kl_real"]) > 0
    game = [r for r in records if "margin" in r and "event" not in r and r["step"] > 8]
    assert game and all(r["margin"] == events[0]["margin"] for r in game)


@pytest.mark.slow
def test_margin_auto_resumes_exactly(tmp_path, tiny_config):
    config = tiny_config(**AUTO, steps=12)
    straight = train(config, out=tmp_path / "straight", quiet=True)
    stopped = train(config.replace(steps=7), out=tmp_path / "stopped", quiet=True)  # inside the measured quarter
    train(resume=stopped, steps=12, quiet=True)
    a = Model.load(straight, device="cpu").networks.state_dict()
    b = Model.load(stopped, device="cpu").networks.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    def strip(run):
        return [{k: v for k, v in r.items() if k != "time"} for r in read_log(run / "log.jsonl")]

    assert strip(stopped) == strip(straight)


def test_margin_auto_needs_a_warm_up(tiny_config):
    with pytest.raises(UserError, match="--warmup-steps"):
        tiny_config(**{**AUTO, "warmup_steps": 0}).validate()
    with pytest.raises(UserError, match="--margin"):
        tiny_config(**{**AUTO, "margin": "big"}).validate()


def test_sampling_decodes_with_the_statistics_of_prior_codes(tiny_config):
    model = Model.build(tiny_config(**SMALL))
    with torch.no_grad():
        for layer in model.generator.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.prior_mean.fill_(0.3)
                layer.prior_var.fill_(2.0)
    z = model.latents(4, seed=0)
    sampled = model.sample(4, seed=0)
    assert torch.equal(sampled, model.decode(z, prior=True))
    assert not torch.allclose(sampled, model.decode(z))  # reconstructions keep the posterior statistics
    running = [m.running_mean for m in model.generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.all(r == 0) for r in running)  # swapped back after decoding
