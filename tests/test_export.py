"""Self-describing weights: checkpoints carry their config, `introvae export` writes one inference file with a model
card, and the file loads and samples on its own wherever it is copied."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from introvae import Config, Model, train
from introvae.checkpoint import network_names, read_metadata, save_networks
from introvae.cli import main
from introvae.errors import UserError
from introvae.export import export_model
from introvae.rundir import RunDir

pytestmark = pytest.mark.slow  # every test trains a run (the ema_run fixture)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, tiny_config):
    """A 4-step IntroVAE run that keeps an EMA generator, with checkpoints at steps 2 and 4."""
    return train(tiny_config(steps=4, ema=0.9, checkpoint_every=2), out=tmp_path_factory.mktemp("runs") / "ema",
                 quiet=True)


def _same_outputs(a: Model, b: Model, prior: str | None = None) -> None:
    assert torch.equal(a.sample(6, seed=3, prior=prior), b.sample(6, seed=3, prior=prior))
    images = a.sample(4, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.encode(images), b.encode(images)))
    assert torch.equal(a.reconstruct(images), b.reconstruct(images))


def test_checkpoints_carry_the_config_and_load_alone_anywhere(ema_run, tmp_path):
    metadata = read_metadata(RunDir(ema_run).model_weights(4))
    assert metadata["step"] == "4"
    assert Config.from_dict(json.loads(metadata["config"])).to_dict() == Config.load(ema_run / "config.json").to_dict()
    alone = tmp_path / "elsewhere" / "model.safetensors"
    alone.parent.mkdir()
    shutil.copy(RunDir(ema_run).model_weights(4), alone)
    model = Model.load(alone, device="cpu")
    assert "generator_ema" in model.networks  # a whole checkpoint: the EMA copy decodes, as in the run
    # The run's code density sits beside the checkpoint in the run (what `export` embeds), so a checkpoint copied
    # alone samples N(0, I), as the run does with --prior normal.
    assert model.density is None and Model.load(ema_run, device="cpu").density is not None
    _same_outputs(model, Model.load(ema_run, device="cpu"), prior="normal")


def test_export_round_trip_gives_the_runs_samples_from_the_file_alone(ema_run, tmp_path):
    out = export_model(ema_run, tmp_path / "export" / "model.safetensors")
    assert network_names(out) == {"encoder", "generator"}  # inference only: no optimizer, no second generator
    assert read_metadata(out)["generator"] == "ema"
    run_model = Model.load(ema_run, device="cpu")
    # The exported generator is the run's EMA generator, batch-norm buffers (prior statistics too) included.
    exported = Model.load(out, device="cpu")
    for name, value in run_model.networks["generator_ema"].state_dict().items():
        assert torch.equal(exported.networks["generator"].state_dict()[name], value), name
    # Copy the file alone to another folder: it loads and gives identical samples, codes and reconstructions.
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(out, lonely / "m.safetensors")
    model = Model.load(lonely / "m.safetensors", device="cpu")
    assert set(model.networks) == {"encoder", "generator"}
    _same_outputs(model, run_model)  # the run's code density travels inside the file
    _same_outputs(model, run_model, prior="normal")
    assert model.config.dataset.image_size == 16 and model.config.optim.ema == 0.9  # the run's config, as trained

    card = (tmp_path / "export" / "README.md").read_text()
    for fact in ("introvae", "16 x 16", "4 steps", f"latent size {model.config.networks.latent_dim}", "margin",
                 "exponential moving average", 'Model.load("model.safetensors"', "introvae sample model.safetensors",
                 __import__("hashlib").sha256(out.read_bytes()).hexdigest()):
        assert fact in card, fact


def test_cli_export_then_sample_from_the_file(ema_run, tmp_path, capsys):
    out = tmp_path / "m" / "model.safetensors"
    assert main(["export", str(ema_run), "--step", "2", "--out", str(out)]) == 0
    assert read_metadata(out)["step"] == "2"
    assert main(["sample", str(out), "--num", "5", "--seed", "7", "--out", str(tmp_path / "from_file.npz"),
                 "--device", "cpu"]) == 0
    assert main(["sample", str(ema_run), "--step", "2", "--num", "5", "--seed", "7",
                 "--out", str(tmp_path / "from_run.npz"), "--device", "cpu"]) == 0
    from_file = np.load(tmp_path / "from_file.npz")["images"]
    from_run = np.load(tmp_path / "from_run.npz")["images"]
    assert from_file.shape == (5, 16, 16, 3) and np.array_equal(from_file, from_run)
    capsys.readouterr()
    # --step names a checkpoint of a run directory, not of a file.
    assert main(["sample", str(out), "--step", "2", "--num", "1", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--step applies to a run directory" in capsys.readouterr().err


def test_export_of_avae_leaves_the_discriminator_in_the_run(tmp_path, tiny_config):
    run = train(tiny_config(model="avae", steps=2, checkpoint_every=2, disc_channels=8, disc_latent=8),
                out=tmp_path / "avae", quiet=True)
    assert "discriminator" in network_names(RunDir(run).model_weights(2))
    out = export_model(run, tmp_path / "out" / "avae.safetensors")
    assert network_names(out) == {"encoder", "generator"}
    assert read_metadata(out)["generator"] == "trained"
    _same_outputs(Model.load(out, device="cpu"), Model.load(run, device="cpu"))


def test_weights_without_a_config_load_only_through_their_run_directory(ema_run, tmp_path):
    old_run = tmp_path / "old"
    shutil.copytree(ema_run, old_run)
    # The newest checkpoint's weights rewritten without the config and the step in their metadata.
    networks = Model.load(ema_run, device="cpu").networks
    weights = RunDir(old_run).model_weights(4)
    save_networks(weights, networks)
    assert set(read_metadata(weights)) == {"format", "format_version"}
    _same_outputs(Model.load(old_run, device="cpu"), Model.load(ema_run, device="cpu"))  # config.json describes it
    # The file alone, where it lies or copied out: nothing says which networks it holds (issue 30 dropped reading
    # such a file through the run directory around it), and the error says what to do.
    alone = tmp_path / "alone.safetensors"
    shutil.copy(weights, alone)
    for path in (weights, alone):
        with pytest.raises(UserError, match="carries no config.* load the run directory it came from"):
            Model.load(path)


def test_export_refuses_bad_input_in_one_sentence(ema_run, tmp_path, capsys):
    with pytest.raises(UserError, match=r"must end in \.safetensors"):
        export_model(ema_run, tmp_path / "model.pt")
    with pytest.raises(UserError, match=r"--step 3: .* no checkpoint at that step \(it has: 2, 4\)"):
        export_model(ema_run, tmp_path / "model.safetensors", step=3)
    assert RunDir(ema_run).checkpoint_steps() == [2, 4]
    # A README.md of the user's own is never replaced by the model card.
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text("# my project\n")
    assert main(["export", str(ema_run), "--out", str(folder / "model.safetensors")]) == 2
    assert "README.md exists and was not written by `introvae export`" in capsys.readouterr().err
    assert (folder / "README.md").read_text() == "# my project\n" and not (folder / "model.safetensors").exists()
    # ... while the card of an earlier export is rewritten.
    export_model(ema_run, tmp_path / "again" / "model.safetensors", step=2)
    export_model(ema_run, tmp_path / "again" / "model.safetensors", step=4)
    assert "step 4" in (tmp_path / "again" / "README.md").read_text()
    (tmp_path / "a-file").write_text("")
    assert main(["export", str(ema_run), "--out", str(tmp_path / "a-file" / "model.safetensors")]) == 2
    assert "cannot write --out" in capsys.readouterr().err
    with pytest.raises(UserError, match="not a readable safetensors file"):
        (tmp_path / "junk.safetensors").write_bytes(b"not weights")
        Model.load(tmp_path / "junk.safetensors")
    with pytest.raises(UserError, match="neither a run directory .* nor a weights file"):
        Model.load(tmp_path / "missing")
