"""The latent-space tools: attribute vectors and edits, principal directions and traversals, looping animations,
the built-in shapes' kinds, and the commands attribute, edit, traverse and interpolate --out X.gif|X.webp.

Exact checks use a "pixel model" whose code is the image minus 0.5 and whose generator adds 0.5 back, so every
latent operation is visible pixel for pixel; the commands run on a tiny run trained for a few steps.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from introvae import Config, Model
from introvae.cli import main
from introvae.data import make_shapes, shapes
from introvae.errors import UserError
from introvae.images import save_image, to_float
from introvae.latent import (
    AttributeVector,
    attribute_position,
    attributes_from_labels,
    compute_attribute,
    edit_images,
    interpolation_rows,
    loop_codes,
    loop_frames,
    principal_directions,
    read_animation,
    start_code,
    training_directions,
    training_images,
    traverse,
    write_animation,
    write_attribute,
    write_interpolation,
    write_label_attributes,
)

SIZE = 4  # pixel model: 1 x 4 x 4 images, 16-d codes


class PixelEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.unit = nn.Parameter(torch.ones(()))  # Model finds its device through a parameter

    def forward(self, x):
        mu = (x.flatten(1) - 0.5) * self.unit
        return mu, torch.zeros_like(mu)


class PixelGenerator(nn.Module):
    def forward(self, z):
        return z.reshape(-1, 1, SIZE, SIZE) + 0.5


def _pixel_model() -> Model:
    config = Config(image_size=SIZE, channels=1, latent_dim=SIZE * SIZE)
    return Model(config, nn.ModuleDict({"encoder": PixelEncoder(), "generator": PixelGenerator()}))


def _mid_images(n, seed=0):
    return 0.3 + 0.4 * torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


# ---- attribute vectors


def test_attribute_is_the_difference_of_mean_codes_and_round_trips(tmp_path):
    model = _pixel_model()
    with_images, without_images = _mid_images(5, 1), _mid_images(3, 2)
    vector = compute_attribute(model, with_images, without_images, name="bright")
    expected = (with_images.mean(0) - without_images.mean(0)).flatten()
    torch.testing.assert_close(vector.direction, expected)
    assert (vector.count_with, vector.count_without) == (5, 3)
    assert vector.norm == pytest.approx(float(expected.norm()))
    vector.save(tmp_path / "bright.safetensors")
    loaded = AttributeVector.load(tmp_path / "bright.safetensors")
    assert (loaded.name, loaded.count_with, loaded.count_without, loaded.norm) == ("bright", 5, 3, vector.norm)
    assert torch.equal(loaded.direction, vector.direction) and torch.equal(loaded.mean_without, vector.mean_without)
    # The mean of the "without" images sits at 0 along the vector, that of the "with" images at 1.
    positions = attribute_position(model, torch.stack([without_images.mean(0), with_images.mean(0)]), loaded)
    torch.testing.assert_close(positions, torch.tensor([0.0, 1.0]))


def test_attribute_files_that_are_not_vectors_are_refused(tmp_path):
    (tmp_path / "text.safetensors").write_text("not a tensor file")
    from safetensors.torch import save_file

    save_file({"weights": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    for name, words in (("text", "is not a safetensors file"), ("other", "not an attribute vector"),
                        ("missing", "cannot be read")):
        with pytest.raises(UserError, match=words):
            AttributeVector.load(tmp_path / f"{name}.safetensors")


def test_attributes_from_labels_give_one_vector_per_label_against_the_rest():
    model = _pixel_model()
    images = _mid_images(6, 3)
    labels = ["a", "b", "a", "c", "b", "a"]
    vectors = attributes_from_labels(model, images, labels)
    assert sorted(vectors) == ["a", "b", "c"]
    mask = torch.tensor([label == "a" for label in labels])
    torch.testing.assert_close(vectors["a"].direction, (images[mask].mean(0) - images[~mask].mean(0)).flatten())
    assert (vectors["c"].count_with, vectors["c"].count_without) == (1, 5)
    with pytest.raises(UserError, match="at least two label values"):
        attributes_from_labels(model, images, ["a"] * 6)


def test_edit_moves_each_code_by_strength_times_direction():
    model = _pixel_model()
    images = _mid_images(3, 4)
    direction = torch.linspace(-0.1, 0.1, SIZE * SIZE)
    edited = edit_images(model, images, direction, [-1.0, 0.0, 0.5])
    assert edited.shape == (3, 3, 1, SIZE, SIZE)
    torch.testing.assert_close(edited[:, 1], model.reconstruct(images))  # strength 0: the reconstruction
    for j, s in enumerate([-1.0, 0.0, 0.5]):
        torch.testing.assert_close(edited[:, j], images + s * direction.reshape(1, 1, SIZE, SIZE))
    with pytest.raises(UserError, match="dimensions"):
        edit_images(model, images, torch.zeros(5), [1.0])


# ---- principal directions, traversals, loops


def test_principal_directions_match_the_covariance_eigenvectors():
    model = _pixel_model()
    rng = np.random.default_rng(0)
    u = np.linalg.qr(rng.normal(size=(SIZE * SIZE, 2)))[0].T  # two orthonormal directions
    codes = 0.15 * rng.normal(size=(200, 1)) * u[0] + 0.04 * rng.normal(size=(200, 1)) * u[1]
    images = torch.from_numpy(codes + 0.5).float().reshape(-1, 1, SIZE, SIZE)
    pca = principal_directions(model, images, 2)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(images.flatten(1).double().numpy(), rowvar=False))
    np.testing.assert_allclose(pca.stddev.numpy(), np.sqrt(eigenvalues[::-1][:2]), rtol=1e-4)
    for i in range(2):
        assert abs(float(pca.components[i].double() @ torch.from_numpy(eigenvectors[:, -1 - i]))) == pytest.approx(
            1.0, abs=1e-4)
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(pca.mean, images.flatten(1).mean(0) - 0.5)  # the mean code
    with pytest.raises(UserError, match="more components"):
        principal_directions(model, images[:3], 3)


def test_traverse_decodes_the_start_code_moved_along_each_direction():
    model = _pixel_model()
    z0 = (_mid_images(1, 5) - 0.5).flatten()
    directions = torch.eye(SIZE * SIZE)[[0, 7]] * 0.2
    grid = traverse(model, z0, directions, [-1.0, 0.0, 1.0])
    assert grid.shape == (2, 3, 1, SIZE, SIZE)
    for row in range(2):
        for col, v in enumerate([-1.0, 0.0, 1.0]):
            torch.testing.assert_close(grid[row, col], (z0 + v * directions[row]).reshape(1, SIZE, SIZE) + 0.5)


def test_loop_visits_every_code_and_returns_to_the_first():
    model = _pixel_model()
    codes = torch.randn(3, SIZE * SIZE, generator=torch.Generator().manual_seed(0))
    path = loop_codes(model, codes, steps=5)
    assert len(path) == 3 * 4 + 1
    for i in range(3):
        torch.testing.assert_close(path[4 * i], codes[i])
    torch.testing.assert_close(path[-1], codes[0])
    torch.testing.assert_close(path[2], (codes[0] + codes[1]) / 2)


@pytest.mark.parametrize("suffix, tolerance", [(".webp", 0.5 / 255), (".gif", 0.5 / 255)])
def test_animations_keep_their_frames(tmp_path, suffix, tolerance):
    frames = torch.rand(5, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    frames = (frames * 255).round() / 255
    write_animation(frames, tmp_path / f"a{suffix}", zoom=2)
    back = read_animation(tmp_path / f"a{suffix}")
    assert back.shape == (5, 3, 12, 12)
    # Each pixel became a 2 x 2 block; 36 colours per frame fit a GIF palette, so both formats are exact.
    assert (back[:, :, ::2, 1::2] - frames).abs().max() <= tolerance
    with pytest.raises(UserError, match=".gif or .webp"):
        write_animation(frames, tmp_path / "a.png")


# ---- the built-in shapes' kinds


@pytest.mark.parametrize("one_shape", [False, True])
def test_shape_kinds_are_the_kinds_make_shapes_draws(monkeypatch, one_shape):
    drawn = []
    original = shapes._draw_shape

    def recording(draw, rng, kind, side, fill):
        drawn.append(kind)
        return original(draw, rng, kind, side, fill)

    expected = shapes.shape_kinds(40, seed=3, one_shape=one_shape)
    monkeypatch.setattr(shapes, "_draw_shape", recording)
    make_shapes(40, 16, seed=3, one_shape=one_shape)  # fewer than 64 images: drawn in order in one thread
    assert drawn == [kind for kinds in expected for kind in kinds]
    assert {len(kinds) for kinds in expected} == ({1} if one_shape else {1, 2})



def _pixel_files(folder, images):
    """Write 1 x SIZE x SIZE float images as 8-bit gray PNGs; return the files and the images as the files hold them."""
    files = []
    for i, image in enumerate(images):
        files.append(folder / f"{i:02d}.png")
        save_image(image, files[-1])
    return files, torch.round(images * 255) / 255


def test_write_attribute_saves_the_vector_of_two_folders(tmp_path):
    model = _pixel_model()
    _, with_images = _pixel_files(tmp_path / "bright", _mid_images(4, 1) + 0.2)
    _, without_images = _pixel_files(tmp_path / "dark", _mid_images(3, 2))
    run = tmp_path / "run"
    run.mkdir()
    vector, path = write_attribute(model, run, tmp_path / "bright", tmp_path / "dark")
    assert vector.name == "bright" and path == run / "attributes" / "bright.safetensors"  # the run's own folder
    expected = (with_images.mean(0) - without_images.mean(0)).flatten()
    torch.testing.assert_close(AttributeVector.load(path).direction, expected)
    # --out as a file, or as a folder that receives NAME.safetensors.
    assert write_attribute(model, run, tmp_path / "bright", tmp_path / "dark", "b", tmp_path / "v.safetensors")[1] \
        == tmp_path / "v.safetensors"
    assert write_attribute(model, run, tmp_path / "bright", tmp_path / "dark", "b", tmp_path)[1] \
        == tmp_path / "b.safetensors"


def test_write_label_attributes_saves_one_vector_per_label(tmp_path):
    model = _pixel_model()
    files, images = _pixel_files(tmp_path / "images", _mid_images(5, 3))
    labels = ["x", "y", "x", "y", "y"]
    (tmp_path / "labels.csv").write_text("file,label\n" + "".join(
        f"images/{f.name},{label}\n" for f, label in zip(files, labels)))
    written = write_label_attributes(model, tmp_path / "run", tmp_path / "labels.csv", out=tmp_path / "vectors")
    assert [(v.name, p) for v, p in written] == [("x", tmp_path / "vectors" / "x.safetensors"),
                                                  ("y", tmp_path / "vectors" / "y.safetensors")]
    x = torch.tensor([label == "x" for label in labels])
    expected = (images[x].mean(0) - images[~x].mean(0)).flatten()
    torch.testing.assert_close(AttributeVector.load(written[0][1]).direction, expected)
    torch.testing.assert_close(AttributeVector.load(written[1][1]).direction, -expected)
    (tmp_path / "clash.csv").write_text(f"images/{files[0].name},a b\nimages/{files[1].name},a_b\n")
    with pytest.raises(UserError, match="differ only in characters"):
        write_label_attributes(model, tmp_path / "run", tmp_path / "clash.csv", out=tmp_path / "clash")


def test_start_code_is_a_seed_s_prior_code_or_an_image_s_posterior_mean(tmp_path):
    model = _pixel_model()
    files, images = _pixel_files(tmp_path / "images", _mid_images(2, 4))
    code, prior = start_code(model, image=files[1])
    torch.testing.assert_close(code, images[1].flatten() - 0.5)
    assert not prior
    code, prior = start_code(model, seed=7)
    assert prior and torch.equal(code, model.latents(1, 7)[0])
    with pytest.raises(UserError, match="holds 2 images"):
        start_code(model, image=tmp_path / "images")


def test_write_interpolation_writes_the_strip_and_the_loop(tmp_path):
    model = _pixel_model()
    files, images = _pixel_files(tmp_path / "images", _mid_images(3, 5))
    strip, frames = write_interpolation(model, tmp_path / "i.png", images=files[:2], steps=3)
    assert (strip, frames) == (tmp_path / "i.png", 0)
    cells = _cells(strip, 1, 5, size=SIZE)[0, :, :1]  # gray images saved as RGB
    for cell, expected in zip(cells, [images[0], images[0], (images[0] + images[1]) / 2, images[1], images[1]]):
        _close(cell, expected)  # the pixel model's path between two images is the path between their pixels
    strip, frames = write_interpolation(model, tmp_path / "loop.webp", images=files, steps=3, zoom=1)
    assert strip == tmp_path / "loop.png" and frames == 3 * 2 + 1
    loop = read_animation(tmp_path / "loop.webp")[:, :1]
    assert len(loop) == frames
    _close(loop[2], images[1])
    _close(loop[-1], images[0])
    write_interpolation(model, tmp_path / "seeds.gif", seeds=[1, 2], steps=2)
    assert read_animation(tmp_path / "seeds.gif").shape[-1] == 128  # by default zoomed to frames of 128 px or more


# ---- the commands, on a tiny trained run


@pytest.fixture(scope="module")
def latent_run(tiny_run, tmp_path_factory):
    """The shared tiny run, with ten shapes to encode: six in a/ and four in b/ (outside the run directory)."""
    root = tmp_path_factory.mktemp("latent")
    images = to_float(make_shapes(10, 16, 3, seed=11))
    for i, image in enumerate(images):
        save_image(image, root / ("a" if i < 6 else "b") / f"{i:02d}.png")
    return tiny_run, root, images


def test_interpolation_rows_and_loop_frames_from_python(latent_run):
    run, _, images = latent_run
    model = Model.load(run, device="cpu")
    codes = model.encode(images[:3])[0]
    rows = interpolation_rows(model, codes, steps=4, originals=images[:3])
    assert len(rows) == 2 and all(row.shape == (6, 3, 16, 16) for row in rows)  # original, 4 decoded, original
    torch.testing.assert_close(rows[0][0], images[0])
    torch.testing.assert_close(rows[1][-1], images[2])
    torch.testing.assert_close(rows[0][1:5], model.decode(model.interpolate_latents(codes[0], codes[1], 4)))
    frames = loop_frames(model, codes, steps=4)
    assert frames.shape == (3 * 3 + 1, 3, 16, 16)
    torch.testing.assert_close(frames[0], frames[-1])  # a loop: it ends where it began
    with pytest.raises(UserError, match="at least two"):
        interpolation_rows(model, codes[:1], steps=4)


def test_training_directions_are_the_principal_directions_one_stddev_long(latent_run):
    model = Model.load(latent_run[0], device="cpu")
    directions, pca = training_directions(model, 3, count=40)
    expected = principal_directions(model, training_images(model.config, 40), 3)
    torch.testing.assert_close(pca.components, expected.components)
    torch.testing.assert_close(directions.norm(dim=1), expected.stddev)
    torch.testing.assert_close(directions / directions.norm(dim=1, keepdim=True), expected.components)
    with pytest.raises(UserError, match="--pca-images must be at least 2"):
        training_directions(model, 1, count=1)


def _cells(path, rows, cols, size=16, padding=2):
    """The images of a grid written by save_image, as float (rows, cols, C, size, size)."""
    grid = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    assert grid.shape[1:] == (padding + rows * (size + padding), padding + cols * (size + padding))
    cells = [[grid[:, padding + r * (size + padding):][:, :size, padding + c * (size + padding):][:, :, :size]
              for c in range(cols)] for r in range(rows)]
    return to_float(torch.stack([torch.stack(row) for row in cells]))


def _close(a, b):
    assert (a - b).abs().max() <= 1 / 255 + 1e-6  # PNG holds 8 bits


def test_attribute_and_edit_commands(latent_run, tiny_run_copy, tmp_path, capsys):
    _, root, images = latent_run
    run = tiny_run_copy  # the default --out writes into the run's attributes/
    vector_file = tmp_path / "a.safetensors"
    assert main(["attribute", str(run), "--with", str(root / "a"), "--without", str(root / "b"), "--out",
                 str(vector_file), "--device", "cpu"]) == 0
    assert "6 images with, 4 without" in capsys.readouterr().out
    model = Model.load(run, device="cpu")
    vector = AttributeVector.load(vector_file)
    expected = compute_attribute(model, images[:6], images[6:])
    torch.testing.assert_close(vector.direction, expected.direction, atol=2e-3, rtol=0)  # PNG-rounded inputs
    assert vector.name == "a"
    # The default place: RUN_DIR/attributes/NAME.safetensors.
    assert main(["attribute", str(run), "--with", str(root / "a"), "--without", str(root / "b"), "--name",
                 "my attr", "--device", "cpu"]) == 0
    assert AttributeVector.load(run / "attributes" / "my_attr.safetensors").name == "my attr"
    assert main(["attribute", str(run), "--with", str(root / "a"), "--without", str(root / "b"), "--out",
                 str(tmp_path), "--device", "cpu"]) == 0  # an existing folder receives NAME.safetensors
    assert AttributeVector.load(tmp_path / "a.safetensors").count_with == 6

    grid = tmp_path / "edit.png"
    assert main(["edit", str(run), "--input", str(root / "b"), "--attribute", str(vector_file), "--strength", "-2",
                 "0", "3", "--out", str(grid), "--device", "cpu"]) == 0
    cells = _cells(grid, rows=4, cols=4)
    originals = to_float(torch.stack([torch.from_numpy(np.array(Image.open(root / "b" / f"{i:02d}.png")))
                                      .permute(2, 0, 1) for i in range(6, 10)]))
    _close(cells[:, 0], originals)
    _close(cells[:, 2], model.reconstruct(originals))  # strength 0
    _close(cells[:, 3], edit_images(model, originals, vector, [3.0])[:, 0])
    assert (cells[:, 3] - cells[:, 2]).abs().max() > 2 / 255  # the edit changes the image


def test_attribute_from_a_labels_csv(latent_run, tmp_path, capsys):
    run, root, images = latent_run
    rows = ["file,label"] + [f"{'a' if i < 6 else 'b'}/{i:02d}.png,{'round' if i % 2 else 'flat'}" for i in range(10)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "vectors"
    assert main(["attribute", str(run), "--labels", str(root / "labels.csv"), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["flat.safetensors", "round.safetensors"]
    model = Model.load(run, device="cpu")
    odd = torch.arange(10) % 2 == 1
    expected = compute_attribute(model, images[odd], images[~odd])
    torch.testing.assert_close(AttributeVector.load(out / "round.safetensors").direction, expected.direction,
                               atol=2e-3, rtol=0)
    (root / "bad.csv").write_text("a/00.png,x\nmissing.png,y\n")
    assert main(["attribute", str(run), "--labels", str(root / "bad.csv"), "--device", "cpu"]) == 2
    assert "row 2" in capsys.readouterr().err


def test_traverse_command_along_axes_and_principal_components(latent_run, tmp_path):
    run, root, _ = latent_run
    model = Model.load(run, device="cpu")
    out = tmp_path / "axes.png"
    assert main(["traverse", str(run), "--seed", "4", "--dims", "0", "5", "--range", "-2", "2", "--steps", "3",
                 "--out", str(out), "--device", "cpu"]) == 0
    cells = _cells(out, rows=2, cols=3)
    z0 = model.latents(1, 4)[0]
    for row, dim in enumerate([0, 5]):
        for col, v in enumerate([-2.0, 0.0, 2.0]):
            code = z0.clone()
            code[dim] += v
            _close(cells[row, col], model.decode(code[None], prior=True)[0])
    out = tmp_path / "pca.png"
    assert main(["traverse", str(run), "--input", str(root / "a" / "00.png"), "--pca", "3", "--steps", "5",
                 "--pca-images", "40", "--out", str(out), "--device", "cpu"]) == 0
    cells = _cells(out, rows=3, cols=5)
    image = cells.new_tensor(np.array(Image.open(root / "a" / "00.png"))).permute(2, 0, 1) / 255
    for row in range(3):  # the middle column is the image's own code: its reconstruction
        _close(cells[row, 2], model.reconstruct(image[None])[0])
    assert (cells[:, 0] - cells[:, 4]).abs().amax(dim=(1, 2, 3)).min() > 2 / 255


def test_interpolate_writes_a_looping_animation_and_the_strip(latent_run, tmp_path):
    run, root, images = latent_run
    model = Model.load(run, device="cpu")
    out = tmp_path / "loop.gif"
    assert main(["interpolate", str(run), "--seeds", "0", "1", "2", "--steps", "4", "--out", str(out), "--zoom",
                 "1", "--device", "cpu"]) == 0
    frames = read_animation(out)
    assert len(frames) == 3 * 3 + 1
    seeds = torch.cat([model.latents(1, s) for s in (0, 1, 2)])
    ends = model.decode(seeds, prior=True)
    for index, seed_index in ((0, 0), (3, 1), (6, 2), (9, 0)):  # first and last frames are seed 0
        assert (frames[index] - ends[seed_index]).abs().mean() < 4 / 255  # GIF palette: close, not exact
    strip = _cells(tmp_path / "loop.png", rows=2, cols=4)  # one row per leg: 0 -> 1, 1 -> 2
    _close(strip[0, 0], ends[0])
    _close(strip[1, 3], ends[2])

    out = tmp_path / "images.webp"
    a, b = root / "a" / "00.png", root / "b" / "07.png"
    assert main(["interpolate", str(run), "--a", str(a), "--b", str(b), "--steps", "5", "--out", str(out),
                 "--device", "cpu"]) == 0
    frames = read_animation(out)
    assert frames.shape == (2 * 4 + 1, 3, 128, 128)  # zoom chosen for frames of at least 128 px
    originals = torch.stack([images[0], images[7]])
    recs = model.reconstruct(to_float((originals * 255).round().to(torch.uint8)))
    _close(frames[0, :, ::8, ::8], recs[0])  # lossless WebP: exact up to 8-bit rounding
    _close(frames[4, :, ::8, ::8], recs[1])
    _close(frames[-1, :, ::8, ::8], recs[0])
    strip = _cells(tmp_path / "images.png", rows=1, cols=7)  # the originals frame the path, as in the PNG strip
    _close(strip[0, 1], recs[0])


@pytest.mark.parametrize("command", [
    ["attribute", "--with", "A", "--labels", "A"],
    ["attribute", "--with", "A"],
    ["edit", "--input", "A", "--attribute", "NOTAVECTOR", "--out", "X.png"],
    ["traverse", "--dims", "0", "--out", "X.png"],
    ["traverse", "--seed", "0", "--dims", "99", "--out", "X.png"],
    ["traverse", "--seed", "0", "--pca", "50", "--pca-images", "20", "--out", "X.png"],
    ["interpolate", "--seeds", "1", "--out", "X.gif"],
    ["interpolate", "--seeds", "1", "2", "--a", "A", "--out", "X.gif"],
    ["interpolate", "--seeds", "1", "2", "--out", "X.mp4"],
    ["traverse", "--seed", "0", "--dims", "0", "--out", "DIR"],
])
def test_latent_commands_refuse_bad_input(latent_run, tmp_path, capsys, command):
    run, root, _ = latent_run
    (tmp_path / "NOTAVECTOR").write_text("no")
    paths = {"A": str(root / "a"), "X.png": str(tmp_path / "X.png"), "X.gif": str(tmp_path / "X.gif"),
             "X.mp4": str(tmp_path / "X.mp4"), "NOTAVECTOR": str(tmp_path / "NOTAVECTOR"), "DIR": str(tmp_path)}
    args = [command[0], str(run), *[paths.get(a, a) for a in command[1:]], "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("introvae: error:") and "Traceback" not in err
    assert not any(tmp_path.glob("X.*"))


def test_a_vector_of_another_latent_size_is_refused(latent_run, tmp_path, capsys):
    run, root, _ = latent_run
    AttributeVector("wide", torch.ones(32), 1, 1, 1.0).save(tmp_path / "wide.safetensors")
    assert main(["edit", str(run), "--input", str(root / "a"), "--attribute", str(tmp_path / "wide.safetensors"),
                 "--out", str(tmp_path / "e.png"), "--device", "cpu"]) == 2
    assert "32 dimensions" in capsys.readouterr().err
