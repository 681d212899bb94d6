"""Tests for the FID Inception-v3 (introvae.metrics.inception): that it takes the published weights file's exact
layout (checked against tests/data/pt_inception_keys.json, written independently of the module), the loader's
search order and errors, batch independence, grayscale input, the FID-specific pooling, and the TensorFlow 1.x
bilinear resize. No test needs the real weights or a network: random weights stand in for them."""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from introvae.errors import UserError
from introvae.metrics import inception as inc
from introvae.metrics.inception import (
    WEIGHTS_ENV,
    WEIGHTS_FILENAME,
    WEIGHTS_URL,
    FIDInceptionV3,
    WeightsMissing,
    find_weights,
    inception_features,
    load_inception,
    resize_bilinear_tf1,
)

KEYS_FILE = Path(__file__).parent / "data" / "pt_inception_keys.json"
NBT = "num_batches_tracked"


def published_layout() -> dict[str, tuple[int, ...]]:
    rows = json.loads(KEYS_FILE.read_text())["keys"]
    return {key: tuple(shape) for key, shape in rows}


def random_weights(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, Tensor]:
    """Random tensors in the published layout, scaled so that a forward pass stays finite and O(1):
    He-scaled convolutions, BN close to identity with positive running variances, a small classifier."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout.items():
        if key.endswith("conv.weight"):
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif key.endswith("bn.weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("running_var"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif key == "fc.weight":
            t = 0.02 * torch.randn(shape, generator=g)
        else:  # bn.bias, running_mean, fc.bias
            t = 0.1 * torch.randn(shape, generator=g)
        out[key] = t
    return out


def cheap_weights(layout: dict[str, tuple[int, ...]]) -> dict[str, Tensor]:
    """The layout with every tensor a stride-0 view of one number: torch.save stores just that number per
    tensor, so files for the error tests take a few kB instead of 91 MiB."""
    return {key: torch.full((1,), 0.5).expand(shape) for key, shape in layout.items()}


@pytest.fixture(scope="module")
def layout() -> dict[str, tuple[int, ...]]:
    return published_layout()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory, layout) -> tuple[Path, dict[str, Tensor]]:
    """One full-size file of random weights in the published layout, saved as a plain dict like the real one."""
    state = random_weights(layout)
    path = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def sane_model(layout) -> FIDInceptionV3:
    model = FIDInceptionV3()
    model.load_state_dict(random_weights(layout, seed=1), strict=False)
    return model.requires_grad_(False)


@pytest.fixture
def no_weights_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No environment variable, an empty torch hub, and a network that fails if anything tries to use it."""
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(inc.OFFLINE_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path / "torch_home"


def images(n: int, size: int, channels: int = 3, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


# --------------------------------------------------------------------------------------------- layout


def test_published_layout_file_is_sane(layout) -> None:
    # 94 conv+BN units (5 stem, 3x7 in A, 4 in B, 4x10 in C, 6 in D, 2x9 in E) x 5 tensors, plus fc weight and bias.
    assert len(layout) == 94 * 5 + 2 == 472
    assert layout["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert layout["Conv2d_4a_3x3.bn.running_var"] == (192,)
    assert layout["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert layout["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert layout["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert layout["Mixed_7a.branch7x7x3_4.conv.weight"] == (192, 192, 3, 3)
    assert layout["Mixed_7c.branch3x3dbl_3b.conv.weight"] == (384, 384, 3, 1)
    assert layout["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert layout["fc.weight"] == (1008, 2048) and layout["fc.bias"] == (1008,)
    assert not any("AuxLogits" in k or k.endswith(NBT) for k in layout)
    # 23.9 M numbers = 91.1 MiB of float32, the size of the published file.
    assert sum(math.prod(s) for s in layout.values()) == 23_885_392


def test_module_state_dict_has_exactly_the_published_layout(layout) -> None:
    model = FIDInceptionV3()
    state = model.state_dict()
    ours = {k: tuple(v.shape) for k, v in state.items() if not k.endswith(NBT)}
    assert ours == layout
    assert sum(k.endswith(NBT) for k in state) == 94  # one counter per BN, ignored by the loader
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == len(norms) == 94
    assert all(c.bias is None for c in convs)
    assert all(n.eps == 0.001 for n in norms)


@pytest.mark.slow
def test_load_inception_accepts_the_published_layout(weights_file) -> None:
    path, state = weights_file
    with pytest.warns(UserWarning, match="not comparable"):  # random weights: not the published sha256
        model = load_inception(path)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    loaded = model.state_dict()
    for key in ("Conv2d_1a_3x3.conv.weight", "Mixed_6c.branch7x7dbl_3.bn.running_var",
                "Mixed_7c.branch3x3_2b.bn.bias", "fc.weight", "fc.bias"):
        assert torch.equal(loaded[key], state[key]), key

    shapes = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda mod, inp, out, name=name: shapes.__setitem__(name, (tuple(inp[0].shape), tuple(out.shape))))
        for name in ("Mixed_5b", "Mixed_6a", "Mixed_7a", "Mixed_7c")]
    try:
        out = model(images(2, 32))
    finally:
        for h in hooks:
            h.remove()
    assert out["pool"].shape == (2, 2048) and out["logits_unbiased"].shape == (2, 1008)
    assert out["pool"].dtype == out["logits_unbiased"].dtype == torch.float32
    assert torch.isfinite(out["pool"]).all() and torch.isfinite(out["logits_unbiased"]).all()
    # The grid sizes of the TF graph at 299x299: stem to 35x35, reductions to 17x17 and 8x8.
    assert shapes["Mixed_5b"][0] == (2, 192, 35, 35)
    assert shapes["Mixed_6a"] == ((2, 288, 35, 35), (2, 768, 17, 17))
    assert shapes["Mixed_7a"] == ((2, 768, 17, 17), (2, 1280, 8, 8))
    assert shapes["Mixed_7c"][1] == (2, 2048, 8, 8)
    # logits_unbiased leaves out the classifier's bias.
    torch.testing.assert_close(out["logits_unbiased"], out["pool"] @ state["fc.weight"].T)
    assert not torch.allclose(out["logits_unbiased"], out["pool"] @ state["fc.weight"].T + state["fc.bias"])


def test_load_inception_accepts_num_batches_tracked_entries(tmp_path: Path, layout) -> None:
    state = cheap_weights(layout)
    for key in layout:
        if key.endswith("bn.running_var"):
            state[key.replace("running_var", NBT)] = torch.tensor(7, dtype=torch.long)
    path = tmp_path / "with_counters.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning):
        model = load_inception(path)
    assert torch.all(model.Mixed_7b.branch1x1.conv.weight == 0.5)


@pytest.mark.parametrize("change", ["extra", "missing", "shape"])
def test_load_inception_rejects_a_different_layout(tmp_path: Path, layout, change: str) -> None:
    state = cheap_weights(layout)
    if change == "extra":
        state["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
        offending = "AuxLogits.fc.weight"
    elif change == "missing":
        del state["Mixed_6d.branch_pool.bn.running_mean"]
        offending = "Mixed_6d.branch_pool.bn.running_mean"
    else:
        state["fc.weight"] = torch.zeros(1000, 2048)
        offending = "fc.weight"
    path = tmp_path / f"{change}.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match="is not the FID Inception-v3 weights file") as info:
        load_inception(path)
    assert str(path) in str(info.value) and offending in str(info.value)


def test_load_inception_rejects_files_that_are_not_state_dicts(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserError, match="cannot be read") as info:
        load_inception(garbage)
    assert str(garbage) in str(info.value)

    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(UserError, match="not a state dict") as info:
        load_inception(tensor_only)
    assert str(tensor_only) in str(info.value)

    # weights_only=True refuses to unpickle arbitrary objects.
    pickled = tmp_path / "object.pth"
    torch.save({"fc.weight": Path("x")}, pickled)
    with pytest.raises(UserError, match="cannot be read"):
        load_inception(pickled)


# --------------------------------------------------------------------------------------------- finding the file


def test_find_weights_search_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_weights_anywhere: Path) -> None:
    assert find_weights() is None

    cached = no_weights_anywhere / "hub" / "checkpoints" / WEIGHTS_FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert find_weights() == cached

    from_env = tmp_path / "env.pth"
    from_env.write_bytes(b"")
    monkeypatch.setenv(WEIGHTS_ENV, str(from_env))
    assert find_weights() == from_env

    explicit = tmp_path / "explicit.pth"
    explicit.write_bytes(b"")
    assert find_weights(explicit) == explicit


def test_env_var_is_used_by_load_inception(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, layout,
                                           no_weights_anywhere: Path) -> None:
    path = tmp_path / "from_env.pth"
    torch.save(cheap_weights(layout), path)
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        model = load_inception()
    assert torch.all(model.fc.bias == 0.5)


def test_missing_paths_are_user_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       no_weights_anywhere: Path) -> None:
    missing = tmp_path / "nope" / "weights.pth"
    with pytest.raises(UserError, match="--fid-weights") as info:
        find_weights(missing)
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)

    monkeypatch.setenv(WEIGHTS_ENV, str(missing))
    with pytest.raises(UserError, match=WEIGHTS_ENV) as info:
        load_inception()
    assert str(missing) in str(info.value)


def test_offline_without_weights_raises_weights_missing(monkeypatch: pytest.MonkeyPatch,
                                                        no_weights_anywhere: Path) -> None:
    monkeypatch.setenv(inc.OFFLINE_ENV, "1")
    with pytest.raises(WeightsMissing) as info:
        load_inception()
    message = str(info.value)
    assert isinstance(info.value, UserError)
    for part in (WEIGHTS_FILENAME, "--fid-weights", WEIGHTS_ENV, WEIGHTS_URL, str(no_weights_anywhere)):
        assert part in message, part


def test_failed_download_falls_through_to_weights_missing(no_weights_anywhere: Path) -> None:
    # The fixture's urlopen raises URLError, as it does without a network.
    with pytest.raises(WeightsMissing, match="--fid-weights"):
        load_inception()
    checkpoints = no_weights_anywhere / "hub" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())  # no partial file left behind


# --------------------------------------------------------------------------------------------- behaviour


@pytest.mark.slow
def test_features_do_not_depend_on_the_batch(sane_model: FIDInceptionV3) -> None:
    sane_model.train()  # must not switch BN to batch statistics
    assert not any(m.training for m in sane_model.modules())
    x = images(5, 16, seed=3)
    one = inception_features(sane_model, x, batch_size=1)
    five = inception_features(sane_model, x, batch_size=5)
    assert one["pool"].shape == (5, 2048) and one["logits_unbiased"].shape == (5, 1008)
    assert one["pool"].abs().mean() > 0.05  # activations neither vanished nor exploded, so 1e-5 means something
    for key in ("pool", "logits_unbiased"):
        torch.testing.assert_close(one[key], five[key], atol=1e-5, rtol=1e-5)
    # Different images give different features.
    assert (one["pool"][0] - one["pool"][1]).abs().max() > 1e-3


@pytest.mark.slow
def test_grayscale_equals_repeated_rgb(sane_model: FIDInceptionV3) -> None:
    gray = images(1, 20, channels=1, seed=4)
    out_gray = sane_model(gray)
    out_rgb = sane_model(gray.repeat(1, 3, 1, 1))
    for key in out_gray:
        torch.testing.assert_close(out_gray[key], out_rgb[key], atol=1e-6, rtol=1e-6)


def test_inputs_are_validated(sane_model: FIDInceptionV3) -> None:
    with pytest.raises(ValueError, match="uint8"):
        sane_model(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="C in"):
        sane_model(images(1, 8, channels=4))
    empty = inception_features(sane_model, images(0, 8))
    assert empty["pool"].shape == (0, 2048) and empty["logits_unbiased"].shape == (0, 1008)


@pytest.mark.parametrize("block, pooling", [("Mixed_5b", "avg"), ("Mixed_6c", "avg"),
                                             ("Mixed_7b", "avg"), ("Mixed_7c", "max")])
def test_pool_branches_use_the_fid_pooling(sane_model: FIDInceptionV3, block: str, pooling: str) -> None:
    module = getattr(sane_model, block)
    in_channels = module.branch_pool.conv.in_channels
    x = torch.rand(1, in_channels, 5, 5, generator=torch.Generator().manual_seed(5)) + 0.5
    out = module(x)
    pool_channels = module.branch_pool.conv.out_channels
    got = out[:, -pool_channels:]  # the pool branch comes last in the concatenation
    tf_avg = module.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
    torch_avg = module.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=True))
    max_pool = module.branch_pool(F.max_pool2d(x, 3, 1, 1))
    want, others = (tf_avg, (torch_avg, max_pool)) if pooling == "avg" else (max_pool, (tf_avg, torch_avg))
    torch.testing.assert_close(got, want)
    for other in others:
        assert (got - other).abs().max() > 1e-4


# --------------------------------------------------------------------------------------------- resize


def tf1_resize_by_hand(img: list[list[float]], out_h: int, out_w: int) -> list[list[float]]:
    """TensorFlow 1.x resize_bilinear(align_corners=False), written out: source = dst * in/out, floor and
    floor + 1 neighbours clamped to the last row/column, lerp along x in both rows, then along y."""
    in_h, in_w = len(img), len(img[0])
    result = []
    for i in range(out_h):
        sy = i * in_h / out_h
        y0 = math.floor(sy)
        y1 = min(y0 + 1, in_h - 1)
        dy = sy - y0
        row = []
        for j in range(out_w):
            sx = j * in_w / out_w
            x0 = math.floor(sx)
            x1 = min(x0 + 1, in_w - 1)
            dx = sx - x0
            top = img[y0][x0] + (img[y0][x1] - img[y0][x0]) * dx
            bottom = img[y1][x0] + (img[y1][x1] - img[y1][x0]) * dx
            row.append(top + (bottom - top) * dy)
        result.append(row)
    return result


@pytest.mark.parametrize("in_size, out_size", [((2, 2), (4, 4)), ((3, 3), (5, 5)), ((3, 4), (7, 2)), ((5, 3), (2, 3))])
def test_resize_matches_the_tf1_formula(in_size: tuple[int, int], out_size: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.rand(1, 1, *in_size, generator=g) * 255
    expected = torch.tensor(tf1_resize_by_hand(x[0, 0].tolist(), *out_size)).view(1, 1, *out_size)
    torch.testing.assert_close(resize_bilinear_tf1(x, out_size), expected, atol=1e-4, rtol=1e-6)


def test_resize_is_not_the_half_pixel_convention() -> None:
    x = torch.tensor([[0.0, 10.0], [20.0, 30.0]]).view(1, 1, 2, 2)
    tf = resize_bilinear_tf1(x, (4, 4))
    # Samples at 0, 0.5, 1, 1.5: the last column repeats the border, and the result leans to the top-left.
    assert tf[0, 0, 0].tolist() == [0.0, 5.0, 10.0, 10.0]
    assert tf[0, 0, :, 0].tolist() == [0.0, 10.0, 20.0, 20.0]
    # torch's align_corners=False samples at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    torch_half_pixel = F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)
    assert torch_half_pixel[0, 0, 0].tolist() == [0.0, 2.5, 7.5, 10.0]
    assert not torch.allclose(tf, torch_half_pixel)
    # Halving picks every other pixel where the half-pixel convention averages 2x2 blocks.
    y = torch.rand(2, 3, 8, 6, generator=torch.Generator().manual_seed(7))
    assert torch.equal(resize_bilinear_tf1(y, (4, 3)), y[:, :, ::2, ::2])
    torch.testing.assert_close(F.interpolate(y, size=(4, 3), mode="bilinear", align_corners=False),
                               F.avg_pool2d(y, 2))


def test_resize_keeps_constants_and_shapes() -> None:
    x = torch.full((2, 3, 13, 7), 77.0)
    out = resize_bilinear_tf1(x, (299, 299))
    assert out.shape == (2, 3, 299, 299)
    assert torch.equal(out, torch.full_like(out, 77.0))
    same = torch.rand(1, 2, 6, 9)
    assert torch.equal(resize_bilinear_tf1(same, (6, 9)), same)
