"""The IntroVAE objective: loss terms against hand computations from the codes it drew (whatever order it draws them
in), and the stop-gradient order of Algorithm 1."""

import copy

import pytest
import torch
from torch import nn

from introvae.config import Config
from introvae.engine import step_phases
from introvae.objectives import build_objective, kl_per_sample, reconstruction_per_image


def test_kl_per_sample_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(5, 7), torch.ones(5, 7))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    torch.testing.assert_close(kl_per_sample(mu, logvar), expected)
    # The prior itself has zero KL, and the KL is never negative (Eq. 9 prints the negative).
    assert torch.equal(kl_per_sample(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))
    assert (kl_per_sample(mu, logvar) > 0).all()


def test_kl_by_hand():
    # mu = 1, sigma^2 = e in one dimension: 0.5 * (1 + e - 1 - 1) = 0.5 * (e - 1)
    value = kl_per_sample(torch.tensor([[1.0]]), torch.tensor([[1.0]]))
    assert value.item() == pytest.approx(0.5 * (torch.e - 1))


def test_reconstruction_by_hand():
    x = torch.zeros(2, 1, 2, 2)
    x_rec = torch.tensor([[[[1.0, 2.0], [0.0, 0.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    # image 0: squared errors 1 + 4 = 5; image 1: 4 * 0.25 = 1
    assert reconstruction_per_image(x_rec, x, "half_sse").tolist() == [2.5, 0.5]
    assert reconstruction_per_image(x_rec, x, "sse").tolist() == [5.0, 1.0]
    assert reconstruction_per_image(x_rec, x, "mean").tolist() == [1.25, 0.25]


@pytest.mark.parametrize("hinge, expected", [("per_sample", (3.0 + 0.0 + 0.0) / 3), ("batch_mean", 0.0)])
def test_hinge_below_at_and_above_margin(hinge, expected):
    objective = build_objective(Config(margin=10.0, hinge=hinge))
    kl = torch.tensor([7.0, 10.0, 13.0])  # below, at and above m; batch mean exactly m
    assert objective.hinge_loss(kl).item() == pytest.approx(expected)
    assert objective.hinge_loss(torch.tensor([4.0])).item() == pytest.approx(6.0)
    assert objective.hinge_loss(torch.tensor([12.0])).item() == 0.0


def by_hand_kl(mu, logvar):
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    return torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)


BATCH = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(1))


class Recording(nn.Module):
    """A network that records the input of each call. The hand computations below take the codes the objective drew
    from the generator's record, so they hold whatever order the objective draws its noise in."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.inputs = inner, []

    def forward(self, z):
        self.inputs.append(z.detach().clone())
        return self.inner(z)


def record_generator(nets) -> Recording:
    nets["generator"] = Recording(nets["generator"])
    return nets["generator"]


def half_sse(x_r, x):
    return 0.5 * ((x_r - x) ** 2).sum(dim=(1, 2, 3)).mean()


def reconstruction_code(codes, G, x, logged_ae):
    """Of the codes the generator decoded, the one whose image gives the logged L_AE (Eq. 10), and the others."""
    matches = [bool(torch.allclose(half_sse(G(z), x), logged_ae)) for z in codes]
    assert matches.count(True) == 1
    k = matches.index(True)
    return codes[k], codes[:k] + codes[k + 1:]


@pytest.mark.parametrize("adversarial_reduction, scale", [("sum", 1.0), ("mean", 0.5)])
def test_encoder_and_generator_losses_by_hand(adversarial_reduction, scale, tiny_networks):
    config = Config(margin=4.0, alpha=0.3, alpha_generator=0.7, beta=0.2, adversarial_reduction=adversarial_reduction,
                    warmup_steps=0)
    nets, x = tiny_networks(), BATCH
    generator = record_generator(nets)
    phases = build_objective(config).phases(nets, x, step=0, noise=torch.Generator().manual_seed(5))
    encoder_phase = next(phases)

    # Eq. 10-12 written out with the two codes the step decoded: z_r ~ q(z|x) and z_p ~ N(0, I).
    E, G = nets["encoder"], generator.inner
    mu, logvar = E(x)
    z_r, (z_p,) = reconstruction_code(generator.inputs, G, x, encoder_phase.logs["ae"])
    x_r, x_p = G(z_r), G(z_p)
    l_ae = half_sse(x_r, x)
    kl_r, kl_p = by_hand_kl(*E(x_r)), by_hand_kl(*E(x_p))
    hinge = torch.relu(4.0 - kl_r).mean() + torch.relu(4.0 - kl_p).mean()
    expected_e = by_hand_kl(mu, logvar).mean() + 0.3 * scale * hinge + 0.2 * l_ae
    assert encoder_phase.network == "encoder"
    torch.testing.assert_close(encoder_phase.loss, expected_e)

    generator_phase = next(phases)  # no encoder step taken: the same encoder, and no code drawn again
    expected_g = 0.7 * scale * (kl_r.mean() + kl_p.mean()) + 0.2 * l_ae
    assert generator_phase.network == "generator" and len(generator.inputs) == 2
    torch.testing.assert_close(generator_phase.loss, expected_g)
    assert next(phases, None) is None


def test_negatives_samples_leaves_reconstructions_out_of_the_game(tiny_networks):
    # --negatives samples: the hinge and the generator's adversarial term see only the prior samples x_p.
    config = Config(margin=4.0, alpha=0.3, beta=0.2, negatives="samples", warmup_steps=0)
    nets, x = tiny_networks(), BATCH
    generator = record_generator(nets)
    phases = build_objective(config).phases(nets, x, step=0, noise=torch.Generator().manual_seed(5))
    encoder_phase, generator_phase = next(phases), next(phases)

    E, G = nets["encoder"], generator.inner
    mu, logvar = E(x)
    z_r, (z_p,) = reconstruction_code(generator.inputs, G, x, encoder_phase.logs["ae"])
    l_ae, kl_p = half_sse(G(z_r), x), by_hand_kl(*E(G(z_p)))
    torch.testing.assert_close(encoder_phase.loss, by_hand_kl(mu, logvar).mean()
                               + 0.3 * torch.relu(4.0 - kl_p).mean() + 0.2 * l_ae)
    torch.testing.assert_close(generator_phase.loss, 0.3 * kl_p.mean() + 0.2 * l_ae)
    torch.testing.assert_close(encoder_phase.logs["kl_rec"], by_hand_kl(*E(G(z_r))).mean())  # still logged


def test_sample_codes_between_decodes_points_between_two_real_codes(tiny_networks):
    # --sample-codes between: x_p = G(t mu_i + (1 - t) mu_j) for a random pairing j of the batch, t ~ U(0, 1); the
    # codes are constants (no gradient reaches the encoder through them).
    config = Config(margin=4.0, alpha=0.3, beta=0.2, sample_codes="between", warmup_steps=0)
    nets, x = tiny_networks(), BATCH
    generator = record_generator(nets)
    phases = build_objective(config).phases(nets, x, step=0, noise=torch.Generator().manual_seed(5))
    encoder_phase, generator_phase = next(phases), next(phases)

    E, G = nets["encoder"], generator.inner
    mu, logvar = E(x)
    z_r, (z_p,) = reconstruction_code(generator.inputs, G, x, encoder_phase.logs["ae"])
    mu = mu.detach()
    paired_with_another = False
    for code in z_p:  # each code is t mu_i + (1 - t) mu_j for two rows of the batch, 0 <= t <= 1
        on_segments = [(i, j) for i in range(4) for j in range(4) if _on_segment(code, mu[i], mu[j])]
        assert on_segments
        paired_with_another |= any(i != j for i, j in on_segments)
    assert paired_with_another  # this seed pairs images with others, not only with themselves
    l_ae = half_sse(G(z_r), x)
    kl_r, kl_p = by_hand_kl(*E(G(z_r))), by_hand_kl(*E(G(z_p)))
    torch.testing.assert_close(encoder_phase.loss, by_hand_kl(mu, logvar).mean()
                               + 0.3 * (torch.relu(4.0 - kl_r).mean() + torch.relu(4.0 - kl_p).mean()) + 0.2 * l_ae)
    torch.testing.assert_close(generator_phase.loss, 0.3 * (kl_r.mean() + kl_p.mean()) + 0.2 * l_ae)


def _on_segment(code, a, b) -> bool:
    d = b - a
    t = float((code - a) @ d / (d @ d)) if d.any() else 0.0
    return 0 <= t <= 1 and torch.allclose(a + t * d, code, atol=1e-5)


def test_game_every_takes_vae_steps_between_games(tiny_networks):
    # --game-every 3: steps 3 and 6 play the game (encoder, generator with KL(rec), KL(sample)); steps 4 and 5 are
    # the warm-up's VAE step, with the same beta, and log the margin in force.
    objective = build_objective(Config(margin=4.0, alpha=0.3, beta=0.2, game_every=3, warmup_steps=0))
    nets, x = tiny_networks(), BATCH
    generator = record_generator(nets)
    for step, game in ((3, True), (4, False), (5, False), (6, True)):
        generator.inputs.clear()
        phases = list(objective.phases(nets, x, step=step, noise=torch.Generator().manual_seed(5)))
        assert [p.network for p in phases] == ["encoder", "generator"]
        assert ("kl_sample" in phases[0].logs) is game and len(generator.inputs) == (2 if game else 1)
        assert phases[0].logs["margin"].item() == 4.0
        if not game:
            mu, logvar = nets["encoder"](x)
            l_ae = half_sse(generator.inner(generator.inputs[0]), x)
            torch.testing.assert_close(phases[0].loss, by_hand_kl(mu, logvar).mean() + 0.2 * l_ae)
            torch.testing.assert_close(phases[1].loss, 0.2 * l_ae)


def test_sample_codes_between_lie_on_the_segment():
    objective = build_objective(Config(sample_codes="between", warmup_steps=0))
    mu = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], requires_grad=True)
    codes = objective.game_codes(mu, torch.Generator().manual_seed(0))
    assert not codes.requires_grad
    for code in codes:  # each code is t a + (1 - t) b for two of the rows, 0 <= t <= 1
        on_a_segment = False
        for a in mu.detach():
            for b in mu.detach():
                d = b - a
                t = float((code - a) @ d / (d @ d)) if d.any() else 0.0
                on_a_segment |= 0 <= t <= 1 and torch.allclose(a + t * d, code, atol=1e-5)
        assert on_a_segment


@pytest.mark.parametrize("factor, expected", [(1.5, 90.0), (1.2, 70.0), (1.0, 60.0)])
def test_auto_margin_follows_the_margin_factor(factor, expected):
    objective = build_objective(Config(margin="auto", margin_factor=factor, warmup_steps=4))
    for step in range(4):
        objective.after_step(step, {"kl_real": torch.tensor(56.0 + (step % 2))})  # last quarter: step 3, KL 57
    objective._choose_margin()
    assert objective.margin == expected  # 5 * ceil(factor * 57 / 5)
    assert objective.pop_events()[0]["factor"] == factor


def test_encoder_adversarial_terms_send_no_gradient_to_generator(tiny_networks):
    # With beta = 0 the encoder loss is KL(real) + hinge terms on ng(x_r), ng(x_p): nothing reaches the generator.
    nets = tiny_networks()
    x = torch.rand(4, 1, 2, 2)
    objective = build_objective(Config(margin=1e3, alpha=1.0, beta=0.0, warmup_steps=0))  # large m: hinges active
    phase = next(objective.phases(nets, x, step=0, noise=torch.Generator().manual_seed(0)))
    grads = torch.autograd.grad(phase.loss, list(nets["generator"].parameters()), allow_unused=True, retain_graph=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    # ...while the same terms do move the encoder.
    grads = torch.autograd.grad(phase.loss, list(nets["encoder"].parameters()), allow_unused=True)
    assert any(g is not None and torch.count_nonzero(g) > 0 for g in grads)


def test_generator_loss_uses_the_updated_encoder(tiny_networks):
    config = Config(margin=50.0, alpha=0.5, beta=0.1, warmup_steps=0)
    nets = tiny_networks(seed=3)
    x = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    generator = record_generator(nets)
    before = copy.deepcopy(nets)
    phases = build_objective(config).phases(nets, x, step=0, noise=torch.Generator().manual_seed(9))
    encoder_phase = next(phases)
    optimizer = torch.optim.SGD(nets["encoder"].parameters(), lr=0.5)
    encoder_phase.loss.backward(inputs=list(nets["encoder"].parameters()), retain_graph=True)
    optimizer.step()
    generator_phase = next(phases)
    # L_AE uses the code from before the encoder's step (lines 4-7), drawn once for both phases.
    G = before["generator"].inner
    z_r, (z_p,) = reconstruction_code(generator.inputs, G, x, encoder_phase.logs["ae"])

    def generator_loss(encoder):
        x_r, x_p = G(z_r), G(z_p)
        return 0.5 * (by_hand_kl(*encoder(x_r)).mean() + by_hand_kl(*encoder(x_p)).mean()) + 0.1 * half_sse(x_r, x)

    torch.testing.assert_close(generator_phase.loss, generator_loss(nets["encoder"]))
    assert not torch.allclose(generator_phase.loss, generator_loss(before["encoder"]))


def test_warmup_is_the_plain_vae(tiny_networks):
    nets = tiny_networks()
    x = torch.rand(4, 1, 2, 2)
    objective = build_objective(Config(warmup_steps=5, alpha=0.25, beta=0.3))
    noise = torch.Generator().manual_seed(0)
    encoder_phase, generator_phase = list(objective.warmup_phases(nets, x, step=4, noise=noise))
    logs = encoder_phase.logs
    assert "kl_sample" not in logs and logs["margin"].item() == 0.0
    torch.testing.assert_close(encoder_phase.loss, logs["kl_real"] + 0.3 * logs["ae"])
    torch.testing.assert_close(generator_phase.loss, 0.3 * logs["ae"])
    # The engine runs the warm-up phases before step warmup_steps, and the game from step warmup_steps on.
    optimizers = {name: torch.optim.SGD(nets[name].parameters(), lr=0.0) for name in objective.roles}
    logs, bad = step_phases(objective, nets, optimizers, x, 4, noise)
    assert bad is None and "kl_sample" not in logs and logs["margin"].item() == 0.0
    logs, bad = step_phases(objective, nets, optimizers, x, 5, noise)
    assert bad is None and "kl_sample" in logs and logs["margin"].item() == Config().objective.margin


def _one_step_with_sgd(config, networks, x, seed=5):
    """Logs and the parameters after one engine step with plain SGD (so a parameter moves by -lr x its gradient)."""
    objective = build_objective(config)
    optimizers = {name: torch.optim.SGD(networks[name].parameters(), lr=0.1) for name in objective.roles}
    logs, bad = step_phases(objective, networks, optimizers, x, 0, torch.Generator().manual_seed(seed))
    assert bad is None
    return logs, {name: p.detach().clone() for name, p in networks.named_parameters()}


@pytest.mark.parametrize("model", ["introvae", "soft-introvae"])
def test_joint_encoder_batch_equals_separate_batches_for_per_image_networks(model, tiny_config):
    # An encoder that normalises each image on its own (group-norm) gives every image the same code in one joint
    # batch as in its own: then --encoder-batch joint must give the losses and gradients of separate batches, which
    # checks that the concatenation and the split put every image back where it belongs.
    from introvae.model import Model
    results = {}
    for encoder_batch in ("separate", "joint"):
        config = tiny_config(model=model, encoder_norm="group", margin=60.0, encoder_batch=encoder_batch)
        networks = Model.build(config).networks.train()
        x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
        results[encoder_batch] = _one_step_with_sgd(config, networks, x)
    (logs_s, params_s), (logs_j, params_j) = results["separate"], results["joint"]
    assert logs_s.keys() == logs_j.keys() and "kl_sample" in logs_j
    for key in logs_s:
        torch.testing.assert_close(logs_j[key], logs_s[key], rtol=1e-5, atol=1e-6)
    start = Model.build(config).networks.state_dict()
    for name in params_s:  # each parameter moved by -lr x its gradient: the gradients agree
        step_s, step_j = params_s[name] - start[name], params_j[name] - start[name]
        scale = float(step_s.abs().max())
        torch.testing.assert_close(step_j, step_s, rtol=1e-3, atol=1e-4 * scale + 1e-7)
    moved = sum(not torch.equal(params_s[name], start[name]) for name in params_s)
    assert moved > 0  # the step did move the networks


@pytest.mark.parametrize("model", ["introvae", "soft-introvae"])
def test_joint_encoder_batch_normalises_real_and_generated_images_together(model, tiny_config):
    # With batch-norm in training mode the KLs differ between the two ways, and the joint ones are those of one
    # encoder call on the concatenated batch.
    from introvae.model import Model
    from introvae.objectives.base import encode_batches
    config = tiny_config(model=model, margin=60.0)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    logs = {}
    for encoder_batch in ("separate", "joint"):
        objective = build_objective(tiny_config(model=model, margin=60.0, encoder_batch=encoder_batch))
        networks = Model.build(config).networks.train()
        logs[encoder_batch] = next(objective.phases(networks, x, 0, torch.Generator().manual_seed(5))).logs
    for key in ("kl_real", "kl_sample"):
        assert not torch.allclose(logs["joint"][key], logs["separate"][key])
    encoder = Model.build(config).networks["encoder"].train()
    a, b = torch.rand(3, 3, 16, 16), torch.rand(5, 3, 16, 16)
    (mu_a, logvar_a), (mu_b, logvar_b) = encode_batches(encoder, [a, b], joint=True)
    mu, logvar = encoder(torch.cat([a, b]))
    torch.testing.assert_close(torch.cat([mu_a, mu_b]), mu)
    torch.testing.assert_close(torch.cat([logvar_a, logvar_b]), logvar)
    assert mu_a.shape == (3, 8) and mu_b.shape == (5, 8)
    assert not torch.allclose(encoder(a)[0], mu_a)  # alone, a batch is normalised by its own statistics


# ---- the leads of issue 29 beyond the paper: R1, two time-scale rates, the margin's ramp, translation


def _phases(config, nets, x, step=0, seed=5):
    return list(build_objective(config).phases(nets, x, step=step, noise=torch.Generator().manual_seed(seed)))


def r1_by_hand(encoder, x):
    """E ||d KL(real) / dx||^2 for the tiny linear encoder, from its weights: mu = W_mu x + b, logvar = W_v x + c, so
    d KL / dx = W_mu^T mu + W_v^T (exp(logvar) - 1) / 2 for each image."""
    weight = encoder.fc.weight.detach()
    latent = weight.shape[0] // 2
    mu, logvar = (t.detach() for t in encoder(x))
    gradient = mu @ weight[:latent] + 0.5 * (logvar.exp() - 1) @ weight[latent:]
    return gradient.pow(2).sum(1).mean()


def test_r1_adds_half_gamma_times_the_squared_gradient_of_the_real_kl(tiny_networks):
    nets, x = tiny_networks(), BATCH
    plain = _phases(Config(margin=4.0, alpha=0.3, beta=0.2, warmup_steps=0), nets, x)
    with_r1 = _phases(Config(margin=4.0, alpha=0.3, beta=0.2, r1=0.6, warmup_steps=0), nets, x)
    expected = 0.5 * 0.6 * r1_by_hand(nets["encoder"], x)
    assert expected > 0.01
    torch.testing.assert_close(with_r1[0].loss - plain[0].loss, expected)
    torch.testing.assert_close(with_r1[0].logs["r1"], expected)
    torch.testing.assert_close(with_r1[1].loss, plain[1].loss)  # the generator's loss has no R1
    # The penalty reaches the encoder's weights (through the second derivative).
    params = list(nets["encoder"].parameters())
    grads_plain = torch.autograd.grad(plain[0].loss, params, retain_graph=True)
    grads_r1 = torch.autograd.grad(with_r1[0].loss, params, retain_graph=True)
    assert not all(torch.allclose(a, b) for a, b in zip(grads_plain, grads_r1))


@pytest.mark.parametrize("game_every, r1_steps", [(1, {0, 3, 6}), (2, {0, 4})])
def test_lazy_r1_acts_every_nth_game_at_n_times_the_weight(tiny_networks, game_every, r1_steps):
    # --r1-every 3 with the game on every step: steps 0, 3 and 6; --r1-every 2 with --game-every 2: the games are
    # steps 0, 2, 4, 6 and the penalty comes with the first and the third. Elsewhere the losses are exactly those
    # without R1, and the noise stream is the same.
    nets, x = tiny_networks(), BATCH
    every = 3 if game_every == 1 else 2
    common = dict(margin=4.0, alpha=0.3, beta=0.2, game_every=game_every, warmup_steps=0)
    for step in range(7):
        plain = _phases(Config(**common), nets, x, step)
        lazy = _phases(Config(**common, r1=0.6, r1_every=every), nets, x, step)
        if step in r1_steps:
            expected = every * 0.5 * 0.6 * r1_by_hand(nets["encoder"], x)
            torch.testing.assert_close(lazy[0].loss - plain[0].loss, expected)
        else:
            assert "r1" not in lazy[0].logs
            assert torch.equal(lazy[0].loss, plain[0].loss) and torch.equal(lazy[1].loss, plain[1].loss)


def _ramped(margin, warmup_steps=4, ramp=10):
    """An objective whose warm-up measured KL(real) 57 in its last quarter (step 3), as after training."""
    objective = build_objective(Config(margin=margin, margin_factor=1.5, warmup_steps=warmup_steps, margin_ramp=ramp))
    for step in range(warmup_steps):
        objective.after_step(step, {"kl_real": torch.tensor(56.0 + (step % 2))})
    return objective


@pytest.mark.parametrize("margin, final", [("auto", 90.0), (80.0, 80.0)])
def test_margin_ramp_rises_from_the_warmups_kl_to_m(margin, final, tiny_networks):
    # From KL(real) = 57 at the first game step (4) to m at step 4 + 10, linearly; with --margin auto m is
    # 5 * ceil(1.5 * 57 / 5) = 90, with a fixed --margin it is that margin.
    objective = _ramped(margin)
    nets, x = tiny_networks(), BATCH
    seen = {}
    for step in (4, 9, 14, 40):
        phases = list(objective.phases(nets, x, step=step, noise=torch.Generator().manual_seed(5)))
        seen[step] = phases[0].logs["margin"].item()
    assert seen == pytest.approx({4: 57.0, 9: 57.0 + (final - 57.0) / 2, 14: final, 40: final})
    assert objective.pop_events()[0]["ramp_steps"] == 10
    # The hinge uses the m in force: at step 9 the losses are those of a fixed m of that value.
    fixed = _phases(Config(margin=seen[9], margin_factor=1.5, warmup_steps=4), nets, x, step=9)
    ramped = list(objective.phases(nets, x, step=9, noise=torch.Generator().manual_seed(5)))
    torch.testing.assert_close(ramped[0].loss, fixed[0].loss)
    # A resumed run continues the ramp where it was.
    resumed = build_objective(Config(margin=margin, margin_factor=1.5, warmup_steps=4, margin_ramp=10))
    resumed.load_state_dict(objective.state_dict())
    assert resumed.margin_at(9) == objective.margin_at(9) and resumed.margin_at(30) == final


def test_translate_moves_each_image_by_its_own_offset_and_keeps_its_shape():
    from introvae.objectives.introvae import translate
    x = torch.zeros(16, 2, 16, 16)
    x[:, :, 7, 8] = torch.tensor([1.0, 2.0])  # one pixel per channel, at the same place in every image
    x.requires_grad_(True)
    shifted = translate(x, 0.125, torch.Generator().manual_seed(0))  # up to 2 pixels each way
    assert shifted.shape == x.shape
    moves = set()
    for image in shifted.detach():
        row, col = divmod(int(image[0].argmax()), 16)
        assert abs(row - 7) <= 2 and abs(col - 8) <= 2
        assert image[0, row, col] == 1.0 and image[1, row, col] == 2.0 and image.sum() == 3.0  # channels together
        moves.add((row - 7, col - 8))
    assert len(moves) > 4  # each image its own offset
    (gradient,) = torch.autograd.grad(shifted.sum(), x)  # differentiable: each input pixel lands once (or falls out)
    assert gradient.max() == 1.0
    # The offsets come from the noise: the same seed, the same shifts; no shift at all below half a pixel.
    torch.testing.assert_close(translate(x, 0.125, torch.Generator().manual_seed(0)), shifted)
    assert torch.equal(translate(x, 0.01, torch.Generator().manual_seed(0)), x)


def _shifted(image, dy, dx):
    """One image (C, H, W) with its content moved by (dy, dx) whole pixels, zeros where nothing lands."""
    out, (height, width) = torch.zeros_like(image), image.shape[-2:]
    out[..., max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        image[..., max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return out


def _is_shift_of(y, z, pixels):
    """Whether every image of `y` is the same image of `z` shifted by at most `pixels` in each direction."""
    return y.shape == z.shape and all(
        any(torch.allclose(_shifted(z[n], dy, dx), y[n]) for dy in range(-pixels, pixels + 1)
            for dx in range(-pixels, pixels + 1)) for n in range(len(z)))


def _the_shift_of(inputs, z, pixels=1):
    found = [y for y in inputs if _is_shift_of(y, z, pixels) and not torch.equal(y, z)]
    assert len(found) == 1
    return found[0]


def test_translate_shifts_the_images_the_encoder_judges(tiny_networks):
    # --translate: the encoder's phase judges shifts T(x_r), T(x_p) and T(x) (by up to 1 pixel on these 4 x 4
    # images), its real term is the mean of KL(x) and KL(T(x)); the generator's phase is judged on new shifts of x_r
    # and x_p. The shifted images are taken from what the encoder was given, whatever order they were drawn in.
    nets, x = tiny_networks(shape=(1, 4, 4)), torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    generator, encoder = record_generator(nets), Recording(nets["encoder"])
    nets["encoder"] = encoder
    phases = build_objective(Config(margin=4.0, alpha=0.3, beta=0.2, translate=0.25, warmup_steps=0)).phases(
        nets, x, step=0, noise=torch.Generator().manual_seed(5))
    encoder_phase = next(phases)
    judged_by_encoder_phase = list(encoder.inputs)
    generator_phase = next(phases)
    judged_by_generator_phase = encoder.inputs[len(judged_by_encoder_phase):]

    E, G = encoder.inner, generator.inner
    mu, logvar = E(x)
    z_r, (z_p,) = reconstruction_code(generator.inputs, G, x, encoder_phase.logs["ae"])
    x_r, x_p = G(z_r), G(z_p)
    t_r, t_p, t_x = (_the_shift_of(judged_by_encoder_phase, image.detach()) for image in (x_r, x_p, x))
    hinge = torch.relu(4.0 - by_hand_kl(*E(t_r))).mean() + torch.relu(4.0 - by_hand_kl(*E(t_p))).mean()
    real = 0.5 * (by_hand_kl(mu, logvar).mean() + by_hand_kl(*E(t_x)).mean())
    l_ae = half_sse(x_r, x)
    torch.testing.assert_close(encoder_phase.loss, real + 0.3 * hinge + 0.2 * l_ae)
    torch.testing.assert_close(encoder_phase.logs["kl_real"], by_hand_kl(mu, logvar).mean())  # unshifted, logged
    g_r, g_p = (_the_shift_of(judged_by_generator_phase, image.detach()) for image in (x_r, x_p))
    expected_g = 0.3 * (by_hand_kl(*E(g_r)).mean() + by_hand_kl(*E(g_p)).mean()) + 0.2 * l_ae
    torch.testing.assert_close(generator_phase.loss, expected_g)


def test_learning_rate_factors_act_on_the_game_steps_only(tiny_networks):
    # --generator-lr-factor 0.5: with SGD the generator moves half as far as without it, and the encoder, whose phase
    # comes first, exactly as far; --encoder-lr-factor 2 doubles the encoder's move. The optimizers' rates are put
    # back after the step; the VAE steps between games (--game-every) keep --lr.
    x = BATCH
    start = tiny_networks()

    def moves(step=0, **factors):
        nets = copy.deepcopy(start)
        objective = build_objective(Config(margin=4.0, alpha=0.3, beta=0.2, game_every=2, warmup_steps=0, **factors))
        optimizers = {name: torch.optim.SGD(nets[name].parameters(), lr=0.1) for name in objective.roles}
        _, bad = step_phases(objective, nets, optimizers, x, step, torch.Generator().manual_seed(5))
        assert bad is None and all(o.param_groups[0]["lr"] == 0.1 for o in optimizers.values())
        return {role: [a.detach() - b.detach() for a, b in zip(nets[role].parameters(), start[role].parameters())]
                for role in objective.roles}

    base, slow_generator, fast_encoder = moves(), moves(generator_lr_factor=0.5), moves(encoder_lr_factor=2.0)
    for a, b in zip(base["encoder"], slow_generator["encoder"]):
        torch.testing.assert_close(b, a)
    for a, b in zip(base["generator"], slow_generator["generator"]):
        torch.testing.assert_close(b, 0.5 * a)
    for a, b in zip(base["encoder"], fast_encoder["encoder"]):
        torch.testing.assert_close(b, 2.0 * a)
    between = moves(step=1, encoder_lr_factor=2.0, generator_lr_factor=0.5)  # a VAE step: --lr for both
    for role, deltas in moves(step=1).items():
        for a, b in zip(deltas, between[role]):
            torch.testing.assert_close(b, a)
