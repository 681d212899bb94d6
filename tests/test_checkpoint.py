"""Checkpoints and weight files: save then load, clear errors for weights that do not fit, and files that are not
what they claim to be (a pickle, a half-written checkpoint)."""

import ast
import json
import pickle
from pathlib import Path

import pytest
import torch

import introvae
from introvae import Model, train
from introvae.checkpoint import load_networks, save_networks
from introvae.errors import UserError
from introvae.rundir import RunDir

SRC = Path(introvae.__file__).resolve().parent


@pytest.mark.slow
def test_save_then_load_gives_identical_outputs(tmp_path, tiny_config):
    config = tiny_config()
    model = Model.build(config)
    with torch.no_grad():  # move the batch-norm buffers away from their initial values too
        model.networks.train()
        model.generator(torch.randn(8, config.networks.latent_dim))
        model.encoder(torch.rand(8, 3, 16, 16))
    save_networks(tmp_path / "m.safetensors", model.networks)
    other = Model.build(config.replace(seed=1))
    x = torch.rand(4, 3, 16, 16)
    assert not torch.equal(other.reconstruct(x), model.reconstruct(x))
    load_networks(tmp_path / "m.safetensors", other.networks)
    assert torch.equal(other.reconstruct(x), model.reconstruct(x))
    assert torch.equal(other.sample(5, seed=2), model.sample(5, seed=2))


def test_loading_weights_of_another_shape_is_a_clear_error(tmp_path, tiny_config):
    save_networks(tmp_path / "m.safetensors", Model.build(tiny_config()).networks)
    other = Model.build(tiny_config(latent_dim=2 * tiny_config().networks.latent_dim))
    with pytest.raises(UserError, match="does not fit"):
        load_networks(tmp_path / "m.safetensors", other.networks)


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling this creates the marker file


def test_a_pickle_in_place_of_a_checkpoint_is_refused_and_runs_nothing(tmp_path, tiny_config):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state": _RunsCode(marker)})
    pickle.loads(payload).pop("state").close()  # the payload is live: unpickling it runs code...
    assert marker.exists()
    marker.unlink()
    run = train(tiny_config(steps=2, checkpoint_every=2), out=tmp_path / "r", quiet=True)
    RunDir(run).model_weights(3).write_bytes(payload)
    torch.save({"state": _RunsCode(marker)}, RunDir(run).train_state(3))

    with pytest.raises(UserError, match=r"model-00000003\.safetensors is not a readable safetensors file"):
        Model.load(run, step=3)
    with pytest.warns(UserWarning, match=r"checkpoint at step 3 cannot be used: .*train-00000003\.safetensors is not a "
                                         r"readable safetensors file.*Using the one at step 2"):
        Model.load(run, device="cpu")
    for name in ("model", "train"):
        (run / "checkpoints" / f"{name}-00000002.safetensors").unlink()
    with pytest.raises(UserError, match=r"no readable checkpoint: .*train-00000003\.safetensors is not a readable"):
        Model.load(run)
    with pytest.raises(UserError, match=r"no readable checkpoint: .*(model|train)-00000003\.safetensors is not a "
                                        r"readable"):
        train(resume=run, quiet=True)
    assert not marker.exists()  # ...but nothing here unpickled it


def test_no_code_path_unpickles():
    """torch.load only with weights_only=True, numpy only without pickles, no pickle module at all."""
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib") for n in names):
                    offenders.append(f"{path.name}:{node.lineno} imports pickle")
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            keywords = {k.arg: k.value for k in node.keywords}
            if owner == "torch" and node.func.attr == "load":
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    offenders.append(f"{path.name}:{node.lineno} torch.load without weights_only=True")
            if owner in ("np", "numpy") and node.func.attr == "load":
                flag = keywords.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    offenders.append(f"{path.name}:{node.lineno} np.load with allow_pickle")
    assert offenders == []


@pytest.mark.parametrize("section, edit", [("networks", {"latent_dim": 16}), ("dataset", {"image_size": 32}),
                                           ("networks", {"max_channels": 8})])
def test_a_config_that_does_not_fit_the_checkpoint_is_a_clear_error(tmp_path, section, edit, tiny_config):
    run = train(tiny_config(steps=1), out=tmp_path / "r", quiet=True)
    config = json.loads((run / "config.json").read_text())
    config[section].update(edit)
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"model-00000001\.safetensors does not fit the networks of this run's "
                                        r"config\.json \(first mismatch: .*\)"):
        Model.load(run, device="cpu")


def test_a_checkpoint_write_killed_between_its_files_does_not_count(tmp_path, tiny_config):
    """What a SIGKILL between train-N and model-N leaves: an orphaned training state, ignored, then cleaned up."""
    model = Model.build(tiny_config())
    RunDir(tmp_path).save_checkpoint(1, model.networks, {"step": 1}, keep=2)
    (tmp_path / "checkpoints" / "train-00000002.safetensors").write_bytes(
        (tmp_path / "checkpoints" / "train-00000001.safetensors").read_bytes())
    assert RunDir(tmp_path).checkpoint_steps() == [1]
    RunDir(tmp_path).save_checkpoint(3, model.networks, {"step": 3}, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "model-00000001.safetensors", "model-00000003.safetensors", "train-00000001.safetensors",
        "train-00000003.safetensors"]
