"""The sectioned config and the objectives' declarations: flat names over sections, config.json old and new,
--config, one validation per section, and what each registered objective declares (parametrised over OBJECTIVES)."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from introvae import Config
from introvae.cli import main
from introvae.config import PRESETS, DataConfig, OptimConfig, from_preset, option_table
from introvae.data.toy2d import TOY_DATASETS
from introvae.engine import step_phases
from introvae.errors import UserError
from introvae.nets import ImageBuilders
from introvae.objectives import OBJECTIVES, build_objective
from introvae.objectives.base import option_flag
from introvae.toy2d import BENCHMARK_WEIGHTS, toy_config


def _changed(value, field):
    """A valid value of `field` other than `value`."""
    choices = field.metadata.get("choices")
    if choices:
        return next(c for c in choices if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        maximum = field.metadata.get("maximum")
        return value * 2 + 1 if maximum is None else (value + maximum) / 2
    return value + "x"


# ---- flat names over sections


def test_flat_keywords_reach_their_sections():
    config = Config(data="photos/", image_size=64, latent_dim=16, margin=70.0, steps=5, seed=3, avae_alpha=9.0)
    assert (config.dataset.path, config.dataset.image_size, config.networks.latent_dim) == ("photos/", 64, 16)
    assert (config.objective.margin, config.optim.steps, config.run.seed) == (70.0, 5, 3)
    flat = config.flat()
    assert (flat["data"], flat["image_size"], flat["margin"], flat["steps"]) == ("photos/", 64, 70.0, 5)
    assert config.objective.generator_alpha == config.objective.alpha == 0.25  # a property of IntroVAE's options
    # avae's option does not belong to introvae: ignored as a keyword (presets name several objectives' options).
    assert "alpha" not in config.to_dict()["optim"] and "avae_alpha" not in flat
    # Flat names are keywords, not attributes: options are read from their sections.
    with pytest.raises(AttributeError):
        config.image_size
    with pytest.raises(TypeError, match="image_sise"):
        Config(image_sise=64)


def test_replace_keeps_what_the_new_objective_shares():
    config = Config(beta=16.0, margin=50.0, reconstruction="sse", steps=7)
    vae = config.replace(model="vae")
    assert (vae.objective.beta, vae.objective.reconstruction, vae.optim.steps) == (16.0, "sse", 7)
    avae = config.replace(model="avae", avae_beta=0.5)
    assert avae.objective.beta == 0.5 and avae.objective.alpha == 0.3  # avae's own beta and alpha, not introvae's
    assert config.replace(optim=OptimConfig(steps=3)).optim.steps == 3
    assert from_preset("builtin-32", model="vae").objective.beta == 16.0  # a preset's margin is left out for vae


def test_flat_names_shared_by_objectives_share_their_default():
    by_name = {}
    for model, cls in OBJECTIVES.items():
        for f in dataclasses.fields(cls.Options):
            by_name.setdefault(option_flag(f), set()).add(repr(f.default))
    assert {name: defaults for name, defaults in by_name.items() if len(defaults) > 1} == {}


# ---- config.json


def test_config_json_is_sectioned_and_round_trips(tmp_path):
    config = from_preset("paper-256", data="bedrooms/", ema=0.999)
    config.save(tmp_path / "config.json")
    written = json.loads((tmp_path / "config.json").read_text())
    assert list(written) == ["format_version", "model", "dataset", "networks", "objective", "optim", "run"]
    assert written["dataset"]["path"] == "bedrooms/" and written["objective"]["margin"] == 120.0
    assert written["optim"]["ema"] == 0.999 and written["networks"]["latent_dim"] == 512
    assert Config.load(tmp_path / "config.json") == config


@pytest.mark.parametrize("values, phrase", [
    ({"model": "introvae", "dataset": {"path": "builtin", "colour": 3}}, "dataset.colour"),
    ({"model": "introvae", "objective": {"beta_neg": 3.0}}, "objective.beta_neg"),
    ({"image_size": 32, "wings": 2}, "wings"),
    ({"model": "gan", "optim": {}}, "gan"),
])
def test_unknown_keys_in_a_config_file_are_named(tmp_path, values, phrase):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    with pytest.raises(UserError, match=phrase):
        Config.load(path)


def test_train_config_takes_what_dry_run_prints(tmp_path, capsys):
    assert main(["train", "--preset", "soft-introvae-32", "--ema", "0.99", "--dry-run", "--out", "x"]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "experiment.json").write_text(printed)
    assert main(["train", "--config", str(tmp_path / "experiment.json"), "--dry-run", "--out", "x"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(printed)
    # Flags given beside --config override it.
    assert main(["train", "--config", str(tmp_path / "experiment.json"), "--steps", "9", "--beta-neg", "4",
                 "--dry-run", "--out", "x"]) == 0
    changed = json.loads(capsys.readouterr().out)
    assert changed["optim"]["steps"] == 9 and changed["objective"]["beta_neg"] == 4.0
    assert changed["optim"]["ema"] == 0.99 and changed["model"] == "soft-introvae"
    assert main(["train", "--config", str(tmp_path / "experiment.json"), "--preset", "vae-32", "--out", "x"]) == 2
    assert "--config" in capsys.readouterr().err


def test_a_bad_config_file_is_one_sentence(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{\"model\": ")
    assert main(["train", "--config", str(tmp_path / "bad.json"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "bad.json is not valid JSON" in err and "Traceback" not in err
    # Values of the wrong kind are refused before training, naming the option.
    (tmp_path / "kinds.json").write_text(json.dumps({"optim": {"steps": "many"}, "run": {"tensorboard": "yes"}}))
    assert main(["train", "--config", str(tmp_path / "kinds.json"), "--out", str(tmp_path / "r")]) == 2
    assert "--steps must be a whole number, got 'many'." in capsys.readouterr().err and not (tmp_path / "r").exists()


# ---- one validation per section


@pytest.mark.parametrize("flat, phrase", [
    ({"image_size": 48}, "--image-size"), ({"channels": 2}, "--channels"), ({"builtin_count": 0}, "--builtin-count"),
    ({"latent_dim": 0}, "--latent-dim"), ({"lr": 0.0}, "--lr"), ({"ema": 1.0}, "--ema"),
    ({"warmup_steps": -2}, "--warmup-steps"), ({"precision": "fp8"}, "--precision"),
    ({"keep_checkpoints": 0}, "--keep-checkpoints"), ({"eval_samples": 1}, "--eval-samples"),
    ({"margin": -1.0}, "--margin"), ({"hinge": "both"}, "--hinge"), ({"margin": "auto", "warmup_steps": 0}, "--margin"),
    ({"model": "avae", "avae_alpha": -1.0}, "--avae-alpha"), ({"model": "avae", "disc_latent": 0}, "--disc-latent"),
    ({"model": "soft-introvae", "beta_neg": -1.0}, "--beta-neg"),
    ({"r1": -1.0}, "--r1 must be at least 0"), ({"r1_every": 0}, "--r1-every"),
    ({"encoder_lr_factor": 0.0}, "--encoder-lr-factor"), ({"generator_lr_factor": -1.0}, "--generator-lr-factor"),
    ({"translate": 0.6}, "--translate must be at most 0.5"), ({"margin_ramp": 100, "warmup_steps": 0}, "--margin-ramp"),
    ({"steps": 2.5}, "--steps must be a whole number"), ({"hflip": 1}, "--hflip must be true or false"),
    ({"beta": "2"}, "--beta must be a number"),
])
def test_each_section_rejects_its_bad_values_naming_the_option(flat, phrase):
    with pytest.raises(UserError, match=phrase):
        Config(**flat).validate()


def test_warmup_help_says_which_objectives_use_it():
    help_text = next(spec.help for spec in option_table() if spec.name == "warmup_steps")
    for name, cls in OBJECTIVES.items():
        assert name in help_text
        if cls.default_warmup_steps is None:
            assert f"{name}" in help_text.split("have no warm-up")[0].rsplit(";", 1)[-1]
        else:
            assert f"{name} {cls.default_warmup_steps}" in help_text


# ---- what every objective declares


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_options_round_trip_and_reach_the_command_line(name, tmp_path, capsys):
    cls = OBJECTIVES[name]
    defaults = cls.Options()
    changed = {option_flag(f): _changed(getattr(defaults, f.name), f) for f in dataclasses.fields(cls.Options)}
    config = Config(model=name, **changed)
    assert all(config.flat()[flat] == value for flat, value in changed.items())
    config.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == config
    # Every option is a flag of `introvae train` with its help, and the flags build the same config.
    flags = [f"--{flat.replace('_', '-')}={value}" for flat, value in changed.items()]
    assert main(["train", "--model", name, *flags, "--dry-run", "--out", "x"]) == 0
    assert json.loads(capsys.readouterr().out)["objective"] == config.to_dict()["objective"]
    table = {spec.name: spec for spec in option_table()}
    assert all(table[flat].help for flat in changed)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_declared_progress_and_plot_series_are_what_a_step_logs(name):
    config = Config(model=name, image_size=8, channels=1, latent_dim=4, base_channels=4, max_channels=8,
                    disc_channels=4, disc_latent=4, warmup_steps=0)
    objective = build_objective(config)
    torch.manual_seed(0)
    networks = nn.ModuleDict(objective.build_networks(config.objective, ImageBuilders.of(config)))
    optimizers = {role: torch.optim.Adam(networks[role].parameters(), lr=1e-4) for role in objective.roles}
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    logs, bad = step_phases(objective, networks, optimizers, x, 0, torch.Generator().manual_seed(2))
    assert bad is None
    declared = {s.key for s in objective.progress} | {s.key for panel in objective.dynamics for s in panel.series}
    assert declared and declared <= set(logs), declared - set(logs)
    record = {k: float(v) for k, v in logs.items()}
    fields = objective.progress_fields(record)
    assert list(fields) == [s.label for s in objective.progress]
    assert list(fields.values()) == [record[s.key] for s in objective.progress]


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_warm_up_applies_to_the_objectives_that_declare_one(name, tiny_networks):
    cls = OBJECTIVES[name]
    assert Config(model=name).resolved_warmup_steps() == (cls.default_warmup_steps or 0)
    if cls.default_warmup_steps is None:
        assert Config(model=name, warmup_steps=50).resolved_warmup_steps() == 0  # ignored, as --help says
        return
    objective = build_objective(Config(model=name, warmup_steps=2))
    assert objective.warmup_steps == 2
    nets = tiny_networks()
    optimizers = {role: torch.optim.SGD(nets[role].parameters(), lr=0.0) for role in objective.roles}
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    warm, _ = step_phases(objective, nets, optimizers, x, 1, torch.Generator().manual_seed(1))
    game, _ = step_phases(objective, nets, optimizers, x, 2, torch.Generator().manual_seed(1))
    # The warm-up is the plain VAE: it logs no KL of generated images; from step warmup_steps on the objective does.
    assert "kl_sample" not in warm and "kl_sample" in game
    phases = list(objective.warmup_phases(nets, x, 1, torch.Generator().manual_seed(1)))
    assert [p.network for p in phases] == ["encoder", "generator"]


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("dataset", TOY_DATASETS)
def test_every_objective_has_valid_2d_settings(name, dataset):
    config = toy_config(dataset, name, steps=300)
    settings = OBJECTIVES[name].toy2d_settings(BENCHMARK_WEIGHTS[dataset])
    assert config.model == name and config.networks.latent_dim == 2 and config.optim.batch_size == 512
    if OBJECTIVES[name].default_warmup_steps is not None:
        assert config.resolved_warmup_steps() == 20  # the authors' 1/15 of the steps
    assert {flat: config.flat()[flat] for flat in settings} == settings


def test_every_preset_names_a_registered_objective_and_validates():
    for name in PRESETS:
        config = from_preset(name).validate()
        assert config.model in OBJECTIVES and isinstance(config.dataset, DataConfig)
