"""A short real training on the built-in shapes: the model learns, and the introspective game is played."""

import statistics

import pytest
import torch

from introvae import Config, Model, train
from introvae.data import open_data
from introvae.images import to_float
from introvae.runlog import read_log

# m = 30: about what `introvae calibrate` proposes for this configuration (1.5 x the VAE's KL(real)).
CONFIG = Config(image_size=16, channels=3, latent_dim=32, base_channels=16, max_channels=64, batch_size=32,
                builtin_count=1024, beta=2.0, margin=30.0, warmup_steps=100, steps=300, log_every=10, grid_every=0,
                checkpoint_every=0)


@pytest.mark.slow
def test_short_training_learns_and_plays_the_game(tmp_path):
    run = train(CONFIG, out=tmp_path / "run", quiet=True)
    records = read_log(run / "log.jsonl")

    def mean(key, rows):
        return statistics.fmean(r[key] for r in rows)

    # Reconstruction: the training L_AE falls far below its start, and so does the held-out error.
    assert mean("ae", records[-5:]) < 0.2 * records[0]["ae"]
    dataset = CONFIG.dataset
    held_out = open_data("builtin", 16, 3, dataset.test_fraction, 0, dataset.builtin_count).test
    test_images = to_float(held_out.get(range(64)))
    untrained, trained = Model.build(CONFIG), Model.load(run, device="cpu")

    def error(model):
        return (model.reconstruct(test_images) - test_images).pow(2).mean().item()

    assert error(trained) < 0.5 * error(untrained)

    # The game: after the warm-up, KL(real) stays under m while the encoder pushes KL(sample) up towards m.
    game = [r for r in records if r["step"] > CONFIG.optim.warmup_steps]
    assert all(r["margin"] == CONFIG.objective.margin for r in game)
    late = game[len(game) // 2:]
    assert all(r["kl_real"] < CONFIG.objective.margin for r in late)
    assert mean("kl_sample", late) > mean("kl_real", late) + 2.0
    start = game[:3]
    assert mean("kl_sample", late) > mean("kl_sample", start) + 1.0  # pushed up, towards m
    assert all(torch.isfinite(torch.tensor([r["loss_encoder"], r["loss_generator"]])).all() for r in records)
