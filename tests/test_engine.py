"""The engine that steps every objective's phases: each phase moves only its own network, the EMA update, and the
training state the engine holds."""

import copy

import pytest
import torch
from torch import nn

from introvae import Model
from introvae.data import open_data
from introvae.engine import Engine, update_ema
from introvae.images import to_float
from introvae.objectives import OBJECTIVES, build_objective
from introvae.train import Trainer


@pytest.mark.parametrize("model", sorted(OBJECTIVES))
@pytest.mark.slow
def test_each_phase_moves_only_its_own_network(tmp_path, model, tiny_config):
    config = tiny_config(steps=1, warmup_steps=0, model=model)
    dataset = config.dataset
    data = open_data("builtin", dataset.image_size, dataset.channels, 0.1, 0, builtin_count=dataset.builtin_count)
    trainer = Trainer(config, tmp_path, data, quiet=True)
    roles = OBJECTIVES[model].roles
    order, seen = [], {}

    def params():
        return {n: [p.detach().clone() for p in trainer.networks[n].parameters()] for n in roles}

    def wrap(name):
        original = trainer.engine.optimizers[name].step

        def step(*args, **kwargs):
            order.append(name)
            # backward(inputs=...) gave gradients to this phase's network only, and they are finite.
            seen[name] = {"before": params(),
                          "own_grads_finite": all(torch.isfinite(p.grad).all()
                                                  for p in trainer.networks[name].parameters() if p.grad is not None),
                          "other_grads": [p.grad for n in roles if n != name for p in trainer.networks[n].parameters()]}
            result = original(*args, **kwargs)
            seen[name]["after"] = params()
            return result
        trainer.engine.optimizers[name].step = step

    for name in roles:
        wrap(name)
    start = params()
    logs = trainer.train_step()
    assert logs and all(torch.isfinite(v).all() for v in logs.values())
    assert order == list(roles)  # each network steps once, in the objective's order

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a, b))

    previous = start
    for name in roles:
        before, after = seen[name]["before"], seen[name]["after"]
        assert all(same(before[n], previous[n]) for n in roles)  # a phase sees the networks as the last one left them
        assert not same(after[name], before[name])  # its own network moved...
        assert all(same(after[n], before[n]) for n in roles if n != name)  # ...and no other
        assert all(g is None for g in seen[name]["other_grads"]) and seen[name]["own_grads_finite"]
        previous = after


def test_update_ema_moves_parameters_and_copies_buffers():
    source, ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        source.weight.fill_(1.0), ema.weight.fill_(0.0)
        source.running_mean.fill_(5.0)
    update_ema(ema, source, decay=0.9, step=1000)  # the ramp (1 + t) / (10 + t) is above 0.9 here
    torch.testing.assert_close(ema.weight, torch.full((3,), 0.1))
    torch.testing.assert_close(ema.running_mean, torch.full((3,), 5.0))
    update_ema(ema, source, decay=0.9, step=0)  # early on the ramp wins: rate 1 - 1/10
    torch.testing.assert_close(ema.weight, torch.full((3,), 0.1 + 0.9 * 0.9))




@pytest.mark.parametrize("model", sorted(OBJECTIVES))
def test_the_engines_state_dict_continues_its_steps_exactly_and_reset_starts_again(model, tiny_config):
    config = tiny_config(model=model, warmup_steps=1)
    data = open_data("builtin", config.dataset.image_size, config.dataset.channels, 0.0, 0, builtin_count=8)
    images = to_float(data.train.get(list(range(8))))

    def engine_of(networks):
        return Engine(build_objective(config), networks, lr=1e-3)

    def run(engine, steps):
        for step in steps:
            assert engine.step(images, step, torch.Generator().manual_seed(step)).ran

    first = engine_of(Model.build(config).networks)
    fresh_state = copy.deepcopy(first.state_dict())
    run(first, range(3))
    first.scale_learning_rate(0.5)
    weights, state = copy.deepcopy(first.networks.state_dict()), copy.deepcopy(first.state_dict())
    assert state["lr_scale"] == 0.5 and all(state["optimizers"][role]["state"] for role in first.objective.roles)
    run(first, range(3, 5))

    second = engine_of(Model.build(config).networks)
    second.networks.load_state_dict(weights)
    second.load_state_dict(state)
    assert all(group["lr"] == 5e-4 for opt in second.optimizers.values() for group in opt.param_groups)
    run(second, range(3, 5))
    assert all(torch.equal(a, b) for a, b in zip(first.networks.state_dict().values(),
                                                  second.networks.state_dict().values()))

    second.reset()  # the optimizers and the objective's state as before step 1, at the base learning rate
    reset_state = second.state_dict()
    assert reset_state["lr_scale"] == 1.0 and reset_state["objective"] == fresh_state["objective"]
    assert all(not reset_state["optimizers"][role]["state"] for role in second.objective.roles)
    assert all(group["lr"] == 1e-3 for opt in second.optimizers.values() for group in opt.param_groups)
