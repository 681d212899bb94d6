"""The adversarial VAE of Khan et al. (avae): the PID controller of Eq. 12, every loss term of Eq. 2-15 against a
plain computation, the phase order of Algorithm 1 through the engine's `step_phases`, and the BEGAN-style
auto-encoder discriminator."""

import json
import math

import pytest
import torch
from torch import nn

from introvae.config import Config
from introvae.engine import step_phases
from introvae.nets import ImageBuilders, PointBuilders
from introvae.nets.began import BEGANAutoencoder, began_resolutions
from introvae.nets.mlp import MLPAutoencoder
from introvae.objectives.avae import AVAE, AVAEOptions, PIDController


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- PID controller (Eq. 12)

GAINS = (0.1, 0.05, 0.02)  # l1 on e_t, l2 on e_t - e_{t-1}, l3 on e_t + e_{t-2} - 2 e_{t-1}
ERRORS = [2.0, 3.0, -1.0, -4.0, 5.0, -1.0, 0.5]
# k_t = k_{t-1} + 0.1 e_t + 0.05 (e_t - e_{t-1}) + 0.02 (e_t + e_{t-2} - 2 e_{t-1}), clamped to [0, 1], k_0 = 0:
EXPECTED_K = [
    0.34,   # e=2,  e1=0,  e2=0:  0    + 0.2 + 0.05*2  + 0.02*(2+0-0)    = 0.34
    0.67,   # e=3,  e1=2,  e2=0:  0.34 + 0.3 + 0.05*1  + 0.02*(3+0-4)    = 0.67
    0.27,   # e=-1, e1=3,  e2=2:  0.67 - 0.1 + 0.05*-4 + 0.02*(-1+2-6)   = 0.27
    0.0,    # e=-4, e1=-1, e2=3:  0.27 - 0.4 + 0.05*-3 + 0.02*(-4+3+2)   = -0.26 -> clamped to 0
    1.0,    # e=5,  e1=-4, e2=-1: 0    + 0.5 + 0.05*9  + 0.02*(5-1+8)    = 1.19  -> clamped to 1
    0.3,    # e=-1, e1=5,  e2=-4: 1    - 0.1 + 0.05*-6 + 0.02*(-1-4-10)  = 0.3
    0.575,  # e=.5, e1=-1, e2=5:  0.3  + 0.05 + 0.05*1.5 + 0.02*(0.5+5+2) = 0.575
]


def test_pid_sequence_by_hand_with_clamps():
    controller = PIDController(*GAINS)
    assert controller.k == 0.0 and controller.errors == [0.0, 0.0]
    got = [controller.update(e) for e in ERRORS]
    assert got == pytest.approx(EXPECTED_K, abs=1e-12)
    assert controller.k == pytest.approx(0.575)
    assert controller.errors == [0.5, -1.0]  # e_{t-1}, e_{t-2}: the raw errors, not affected by the clamp


def test_pid_each_gain_alone():
    # only the integral gain: k accumulates l1 * e
    c = PIDController(0.1, 0.0, 0.0, k0=0.5)
    assert [c.update(e) for e in (1.0, 1.0, -3.0)] == pytest.approx([0.6, 0.7, 0.4])
    # only the proportional gain: k moves by l2 * (e_t - e_{t-1})
    c = PIDController(0.0, 0.1, 0.0, k0=0.5)
    assert [c.update(e) for e in (1.0, 1.0, -3.0)] == pytest.approx([0.6, 0.6, 0.2])
    # only the derivative gain: k moves by l3 * (e_t + e_{t-2} - 2 e_{t-1})
    c = PIDController(0.0, 0.0, 0.1, k0=0.5)
    assert [c.update(e) for e in (1.0, 1.0, -3.0)] == pytest.approx([0.6, 0.5, 0.1])
    with pytest.raises(ValueError):
        PIDController(0.1, 0.0, 0.0, k0=1.5)


def test_pid_state_round_trip():
    original = PIDController(*GAINS)
    for e in ERRORS[:3]:
        original.update(e)
    state = original.state_dict()
    assert set(state) == {"k", "errors"}
    assert state["k"] == pytest.approx(0.27) and state["errors"] == [-1.0, 3.0]
    assert json.loads(json.dumps(state)) == state  # plain floats
    restored = PIDController(*GAINS)
    restored.load_state_dict(json.loads(json.dumps(state)))
    for e, expected in zip(ERRORS[3:], EXPECTED_K[3:]):
        assert restored.update(e) == original.update(e) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- the loss terms against a plain computation


class TinyDiscriminator(nn.Module):
    """A linear auto-encoder of 2x2 images with a code of 3, beside the shared tiny encoder and generator
    (conftest.py; latent size 2 here)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(4, 3)
        self.dec = nn.Linear(3, 4)

    def encode(self, x):
        return self.enc(x.flatten(1))

    def decode(self, code):
        return self.dec(code).view(-1, 1, 2, 2)

    def forward(self, x):
        code = self.encode(x)
        return self.decode(code), code



def affine(layer, v):
    """W v + b for one vector given as a list, in plain Python."""
    w, b = layer.weight.tolist(), layer.bias.tolist()
    return [sum(wij * vj for wij, vj in zip(row, v)) + bi for row, bi in zip(w, b)]


def mean_abs(rows_a, rows_b):
    diffs = [abs(a - b) for ra, rb in zip(rows_a, rows_b) for a, b in zip(ra, rb)]
    return sum(diffs) / len(diffs)


def plain_terms(nets, x, eps, z_g, alpha, eta):
    """Eq. 2, 3, 7, 9, 11 for the tiny networks, one image at a time in plain Python."""
    enc, gen, dis = nets["encoder"].fc, nets["generator"].fc, nets["discriminator"]
    images = [row for row in x.flatten(1).tolist()]
    x_v, x_g, kl = [], [], []
    for image, e in zip(images, eps):
        out = affine(enc, image)
        mu, logvar = out[:2], out[2:]
        z_v = [m + math.exp(0.5 * lv) * ei for m, lv, ei in zip(mu, logvar, e)]
        x_v.append(affine(gen, z_v))
        kl.append(0.5 * sum(m * m + math.exp(lv) - 1.0 - lv for m, lv in zip(mu, logvar)))
    x_g = [affine(gen, z) for z in z_g]
    code = lambda image: affine(dis.enc, image)  # noqa: E731
    rec = lambda image: affine(dis.dec, code(image))  # noqa: E731
    terms = {
        "l_e": mean_abs(images, x_v),
        "l_n": sum(kl) / len(kl),
        "l_d": mean_abs(images, [rec(i) for i in images]),
        "l_g": mean_abs(x_g, [rec(i) for i in x_g]),
        "l_v": mean_abs(x_v, [rec(i) for i in x_v]),
        "l_s": mean_abs([code(i) for i in images], [code(i) for i in x_v]),
    }
    terms["e"] = eta * terms["l_d"] - terms["l_g"] - alpha * terms["l_v"]
    return terms


def test_losses_and_k_update_by_hand(tiny_networks):
    config = Config(model="avae", avae_alpha=0.3, avae_beta=0.1, avae_gamma=0.2, avae_eta=0.7,
                    pid_integral=0.1, pid_proportional=0.05, pid_derivative=0.02)
    objective = AVAE(config.objective)
    assert ((objective.name, objective.roles, objective.default_lr)
            == ("avae", ("encoder", "generator", "discriminator"), 5e-5))
    objective.load_state_dict({"k": 0.4, "errors": [0.3, -0.2]})
    nets = tiny_networks(seed=3, latent=2, discriminator=TinyDiscriminator)
    x = torch.tensor([[0.0, 0.2, 0.9, 1.0], [0.5, 0.5, 0.1, 0.3], [1.0, 0.0, 0.4, 0.7]]).view(3, 1, 2, 2)

    phases = list(objective.phases(nets, x, step=0, noise=torch.Generator().manual_seed(11)))
    # The objective draws eps for z_v first, then z_g, both (N, latent_dim) from the noise generator.
    g = torch.Generator().manual_seed(11)
    eps, z_g = torch.randn(3, 2, generator=g).tolist(), torch.randn(3, 2, generator=g).tolist()
    with torch.no_grad():
        t = plain_terms(nets, x, eps, z_g, alpha=0.3, eta=0.7)

    assert [p.network for p in phases] == ["encoder", "generator", "discriminator"]
    logs = {k: v for p in phases for k, v in p.logs.items()}
    for name in ("l_e", "l_n", "l_d", "l_g", "l_v", "l_s"):
        assert logs[name].item() == pytest.approx(t[name], rel=1e-5), name
        assert logs[name].dim() == 0 and not logs[name].requires_grad
    assert logs["kl_real"].item() == pytest.approx(t["l_n"], rel=1e-5)
    assert t["l_s"] > 0 and t["l_n"] > 0  # the terms are not trivially zero

    # Eq. 15, 14, 13 with k_{t-1} = 0.4
    encoder_loss = t["l_n"] + 0.1 * t["l_s"] + 0.2 * t["l_e"]
    generator_loss = t["l_g"] + 0.3 * t["l_v"] + 0.1 * t["l_s"] + 0.2 * t["l_e"]
    discriminator_loss = t["l_d"] - 0.4 * (t["l_g"] + 0.3 * t["l_v"])
    for phase, expected in zip(phases, (encoder_loss, generator_loss, discriminator_loss)):
        assert phase.loss.item() == pytest.approx(expected, rel=1e-5)
        assert phase.loss.requires_grad
        assert logs[f"loss_{phase.network}"].item() == pytest.approx(expected, rel=1e-5)
    assert logs["k"].item() == pytest.approx(0.4)
    assert logs["convergence"].item() == pytest.approx(t["l_d"] + abs(t["e"]), rel=1e-5)

    # Eq. 11 (sign of Eq. 10) and Eq. 12 from k_{t-1} = 0.4, e_{t-1} = 0.3, e_{t-2} = -0.2
    e = t["e"]
    assert objective.error(t["l_d"], t["l_g"], t["l_v"]) == pytest.approx(e)
    expected_k = 0.4 + 0.1 * e + 0.05 * (e - 0.3) + 0.02 * (e - 0.2 - 2 * 0.3)
    assert 0.0 < expected_k < 1.0  # not clamped: the test sees the update itself
    assert objective.controller.k == pytest.approx(expected_k, rel=1e-5)
    assert objective.state_dict()["errors"] == pytest.approx([e, 0.3], rel=1e-5)


def test_k_is_not_updated_when_the_step_stops_early(tiny_networks):
    # The trainer closes the phases after a non-finite loss: the PID update (after the last phase) must not run.
    objective = AVAE(AVAEOptions(pid_integral=0.1))
    objective.load_state_dict({"k": 0.4, "errors": [0.3, -0.2]})
    nets = tiny_networks(seed=3, latent=2, discriminator=TinyDiscriminator)
    phases = objective.phases(nets, torch.rand(2, 1, 2, 2), 0, torch.Generator().manual_seed(0))
    next(phases), next(phases)
    phases.close()
    assert objective.state_dict() == {"k": 0.4, "errors": [0.3, -0.2]}


# ---------------------------------------------------------------- one trainer step on the real networks


def test_avae_builds_its_discriminator_from_its_own_options():
    options = AVAEOptions(disc_channels=3, disc_latent=5)
    config = Config(model="avae", image_size=16, channels=3, latent_dim=4, base_channels=4, max_channels=8,
                    objective=options)
    images = AVAE.build_networks(options, ImageBuilders.of(config))
    assert list(images) == ["encoder", "generator", "discriminator"]
    discriminator = images["discriminator"]
    assert isinstance(discriminator, BEGANAutoencoder)
    x = torch.rand(2, 3, 16, 16)
    reconstruction, code = discriminator(x)
    assert reconstruction.shape == x.shape and code.shape == (2, 5) and discriminator.width == 3
    points = AVAE.build_networks(options, PointBuilders(data_dim=2, latent_dim=2, hidden=8, layers=1))
    assert isinstance(points["discriminator"], MLPAutoencoder)
    reconstruction, code = points["discriminator"](torch.randn(4, 2))
    assert reconstruction.shape == (4, 2) and code.shape == (4, 5)


def test_step_phases_updates_each_network_in_its_own_phase():
    config = Config(model="avae", image_size=8, channels=1, latent_dim=4, base_channels=4, max_channels=8,
                    disc_channels=4, disc_latent=4, pid_integral=0.1, pid_proportional=0.05, pid_derivative=0.02)
    objective = AVAE(config.objective)
    objective.load_state_dict({"k": 0.5, "errors": [0.2, -0.1]})
    torch.manual_seed(0)
    networks = nn.ModuleDict(AVAE.build_networks(config.objective, ImageBuilders.of(config)))
    assert isinstance(networks["discriminator"], BEGANAutoencoder)
    optimizers = {name: torch.optim.Adam(networks[name].parameters(), lr=1e-3) for name in objective.roles}
    initial = {name: [p.detach().clone() for p in networks[name].parameters()] for name in objective.roles}

    def changed(name):
        return any(not torch.equal(p, q) for p, q in zip(networks[name].parameters(), initial[name]))

    def has_gradient(name):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in networks[name].parameters())

    record = []

    def recording(name, step):
        def patched(*args, **kwargs):
            record.append((name, set(filter(has_gradient, objective.roles)), set(filter(changed, objective.roles))))
            return step(*args, **kwargs)
        return patched

    for name, optimizer in optimizers.items():
        optimizer.step = recording(name, optimizer.step)

    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    logs, bad = step_phases(objective, networks, optimizers, x, 0, torch.Generator().manual_seed(2))

    assert bad is None
    assert record == [
        ("encoder", {"encoder"}, set()),  # only the encoder has gradients; nothing has moved yet
        ("generator", {"generator"}, {"encoder"}),  # the encoder has stepped, the others not
        ("discriminator", {"discriminator"}, {"encoder", "generator"}),
    ]
    assert all(changed(name) for name in objective.roles)
    expected_logs = {"l_d", "l_g", "l_v", "l_e", "l_n", "kl_real", "l_s", "k", "convergence", "loss_encoder",
                     "loss_generator", "loss_discriminator"}
    assert set(logs) == expected_logs
    assert all(torch.isfinite(v) and v.dim() == 0 for v in logs.values())
    assert logs["k"].item() == 0.5

    e = 0.5 * logs["l_d"].item() - logs["l_g"].item() - 0.3 * logs["l_v"].item()  # eta 0.5, alpha 0.3 (defaults)
    expected_k = min(1.0, max(0.0, 0.5 + 0.1 * e + 0.05 * (e - 0.2) + 0.02 * (e - 0.1 - 0.4)))
    assert objective.controller.k == pytest.approx(expected_k, rel=1e-5, abs=1e-7)
    assert objective.controller.k != 0.5


# ---------------------------------------------------------------- the BEGAN-style auto-encoder


@pytest.mark.parametrize("size", [8, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_began_autoencoder_shapes_and_layers(size, channels):
    torch.manual_seed(0)
    width, code_dim = 4, 5
    net = BEGANAutoencoder(size, channels, width, code_dim)
    x = torch.rand(2, channels, size, size)
    reconstruction, code = net(x)
    assert reconstruction.shape == x.shape and code.shape == (2, code_dim)
    torch.testing.assert_close(net.encode(x), code)
    torch.testing.assert_close(net.decode(code), reconstruction)

    modules = list(net.modules())
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ConvTranspose2d, nn.Dropout, nn.Dropout2d)) for m in modules)
    levels = len(began_resolutions(size))
    assert levels == int(math.log2(size)) - 2  # 8 -> 1, 32 -> 3 (32, 16, 8), 64 -> 4
    encoder_convs = [m for m in net.encoder_features if isinstance(m, nn.Conv2d)]
    decoder_convs = [m for m in net.decoder_features if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in encoder_convs + decoder_convs)
    # input conv, then a pair per resolution of widths n, 2n, 3n, ...
    assert [c.out_channels for c in encoder_convs] == [width] + [width * (i // 2 + 1) for i in range(2 * levels)]
    assert [c.out_channels for c in decoder_convs] == [width] * (2 * levels) + [channels]
    assert sum(isinstance(m, nn.ELU) for m in net.encoder_features) == 2 * levels + 1
    assert sum(isinstance(m, nn.ELU) for m in net.decoder_features) == 2 * levels
    assert sum(isinstance(m, nn.AvgPool2d) for m in modules) == levels - 1
    upsamples = [m for m in modules if isinstance(m, nn.Upsample)]
    assert len(upsamples) == levels - 1 and all(m.mode == "nearest" for m in upsamples)
    assert isinstance(net.decoder_features[-1], nn.Conv2d)  # linear output, no squashing


def test_began_autoencoder_sizes_up_to_1024():
    for size in (16, 128, 1024):
        net = BEGANAutoencoder(size, 3, 2, 3)
        levels = int(math.log2(size)) - 2
        assert net.to_code.in_features == levels * 2 * 8 * 8  # widest encoder layer, at 8 x 8
    for bad in (4, 12, 2048):
        with pytest.raises(ValueError):
            BEGANAutoencoder(bad, 3, 4, 4)
