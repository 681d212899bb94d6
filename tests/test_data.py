"""Tests for the image convention (introvae.images) and the data layer (introvae.data): the built-in
shapes, image decoding of awkward formats, folder scanning and splitting, and open_data's sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from introvae.data import FolderSource, TensorSource, cache_in_memory, list_image_files, make_shapes, open_data
from introvae.data.folder_files import IMAGE_EXTENSIONS, detect_channels, split_files
from introvae.data.shapes import SHAPE_KINDS
from introvae.errors import DataError
from introvae.images import load_image, make_grid, save_image, to_float, to_uint8

RED, BLUE, GREEN, GRAY = (255, 0, 0), (0, 0, 255), (0, 200, 0), (128, 128, 128)


# --------------------------------------------------------------------------------------------- builtin


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_make_shapes_dtype_and_shape(size: int, channels: int) -> None:
    x = make_shapes(6, size, channels)
    assert x.dtype == torch.uint8
    assert x.shape == (6, channels, size, size)
    assert x.is_contiguous()


def test_make_shapes_deterministic_with_prefix_property() -> None:
    a = make_shapes(80, 16, seed=3)  # > 64 images, so the threaded path is exercised too
    assert torch.equal(a, make_shapes(80, 16, seed=3))
    assert torch.equal(a[:5], make_shapes(5, 16, seed=3))
    assert not torch.equal(a[:5], make_shapes(5, 16, seed=4))


def test_make_shapes_gray_matches_colour_luma() -> None:
    # The gray set is the luma of the colour set, so both show the same shapes.
    rgb = make_shapes(4, 16, 3).float()
    gray = make_shapes(4, 16, 1).float()
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert (luma - gray[:, 0]).abs().max() <= 1.0


def _foreground_fraction(img: torch.Tensor) -> float:
    """Fraction of pixels that differ clearly from the background (the corner pixels' most common colour)."""
    c, h, w = img.shape
    flat = img.reshape(c, -1).T.int()
    corners = torch.stack([img[:, 0, 0], img[:, 0, -1], img[:, -1, 0], img[:, -1, -1]]).int()
    bg = torch.mode(corners, dim=0).values
    return float(((flat - bg).abs().max(dim=1).values > 30).float().mean())


def test_make_shapes_images_vary_and_have_contrast() -> None:
    x = make_shapes(64, 32)
    for img in x:
        colours = torch.unique(img.reshape(3, -1).T, dim=0)
        assert len(colours) >= 2, "an image is a single flat colour"
    fractions = np.array([_foreground_fraction(img) for img in x])
    # Every image shows a visible shape, and sizes/kinds vary a lot between images.
    assert fractions.min() > 0.01
    assert fractions.max() < 0.8
    assert fractions.std() > 0.03
    assert fractions.max() / fractions.min() > 4
    # Backgrounds differ between images too.
    assert len({tuple(img[:, 0, 0].tolist()) for img in x}) > 50
    assert len(SHAPE_KINDS) >= 5


@pytest.mark.parametrize("size", [8, 256])
def test_make_shapes_extreme_sizes(size: int) -> None:
    x = make_shapes(2, size, 1)
    assert x.shape == (2, 1, size, size)
    assert all(len(torch.unique(img)) >= 2 for img in x)


# ------------------------------------------------------------------------------------------ images.py


def test_float_uint8_roundtrip_and_clamp() -> None:
    u8 = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    f = to_float(u8)
    assert f.dtype == torch.float32 and float(f.min()) == 0.0 and float(f.max()) == 1.0
    assert torch.equal(to_uint8(f), u8)
    assert to_uint8(torch.tensor([-0.5, 0.5, 1.5])).tolist() == [0, 128, 255]


def test_make_grid_layout() -> None:
    x = torch.zeros(5, 3, 4, 6)
    for i in range(5):
        x[i] = i / 10
    g = make_grid(x, nrow=3, padding=2, pad_value=1.0)
    assert g.shape == (3, 2 + 2 * (4 + 2), 2 + 3 * (6 + 2))
    # Row-major: image 4 is the second of the second row; the sixth cell is padding.
    assert torch.allclose(g[:, 8:12, 10:16], torch.full((3, 4, 6), 0.4))
    assert torch.all(g[:, 8:12, 18:24] == 1.0)
    assert torch.all(g[:, :2] == 1.0) and torch.all(g[:, :, :2] == 1.0)


def test_save_image_png_and_jpeg(tmp_path: Path) -> None:
    x = torch.rand(3, 3, 8, 8)
    save_image(x, tmp_path / "sub" / "grid.png", nrow=2)
    with Image.open(tmp_path / "sub" / "grid.png") as saved:
        assert saved.mode == "RGB" and saved.size == (2 + 2 * 10, 2 + 2 * 10)
        assert np.array_equal(np.asarray(saved)[2:10, 2:10], to_uint8(x[0]).permute(1, 2, 0).numpy())
    save_image(torch.full((1, 8, 8), 0.5), tmp_path / "gray.jpg")
    with Image.open(tmp_path / "gray.jpg") as saved:
        assert saved.mode == "L"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------- the test folder


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one image of each awkward kind, in nested subfolders, plus files to be skipped."""
    root = tmp_path_factory.mktemp("images")
    # 40x24 RGB: left half red, right half blue.
    rgb = Image.new("RGB", (40, 24), RED)
    rgb.paste(BLUE, (20, 0, 40, 24))
    _save(rgb, root / "a" / "rgb.png")
    _save(Image.new("L", (32, 32), 90), root / "a" / "b" / "gray.jpg", quality=95)
    # RGBA: left half opaque red, right half fully transparent (with black, i.e. invisible, colour values).
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 16, 32))
    _save(rgba, root / "a" / "b" / "c" / "rgba.png")
    pal = Image.new("P", (32, 32), 1)
    pal.putpalette([0, 0, 0, 0, 200, 0] + [0] * (254 * 3))  # index 1 is green
    _save(pal, root / "pal.png")
    _save(Image.fromarray(np.full((32, 32), 32768, dtype=np.uint16)), root / "deep16.png")
    _save(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), root / "cmyk.jpg", quality=95)  # red in CMYK
    # Stored with the left half red; EXIF orientation 6 says "rotate 90 degrees clockwise to view",
    # which puts the red half on top.
    exif_img = Image.new("RGB", (32, 32), BLUE)
    exif_img.paste(RED, (0, 0, 16, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(exif_img, root / "z" / "exif.jpg", exif=exif, quality=95)
    if features.check("webp"):
        _save(Image.new("RGB", (32, 32), GREEN), root / "z" / "w.webp", lossless=True)
    _save(Image.new("RGB", (32, 32), BLUE), root / "z" / "b.BMP")
    # A 40x20 image whose outer 5 columns on each side are green: a centre crop must remove them.
    band = Image.new("RGB", (40, 20), GRAY)
    band.paste(GREEN, (0, 0, 5, 20))
    band.paste(GREEN, (35, 0, 40, 20))
    _save(band, root / "band.png")
    # Things list_image_files must skip.
    _save(Image.new("RGB", (8, 8)), root / ".hidden.png")
    _save(Image.new("RGB", (8, 8)), root / ".cache" / "skip.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _mean_rgb(x: torch.Tensor) -> list[float]:
    return x.float().mean(dim=(1, 2)).tolist()


@pytest.mark.parametrize("channels", [1, 3])
def test_load_image_shapes_for_every_file(folder: Path, channels: int) -> None:
    for path in list_image_files(folder):
        x = load_image(path, 16, channels)
        assert x.dtype == torch.uint8 and x.shape == (channels, 16, 16), path


def test_load_image_non_square_rgb(folder: Path) -> None:
    x = load_image(folder / "a" / "rgb.png", 16, 3)
    # 40x24 -> 27x16 -> centre 16 columns: left part red, right part blue.
    assert _mean_rgb(x[:, :, :4]) == pytest.approx([255, 0, 0], abs=3)
    assert _mean_rgb(x[:, :, -4:]) == pytest.approx([0, 0, 255], abs=3)


def test_load_image_centre_crop_removes_outer_band(folder: Path) -> None:
    x = load_image(folder / "band.png", 16, 3)
    assert _mean_rgb(x) == pytest.approx([128, 128, 128], abs=2)
    uncropped = load_image(folder / "band.png", 20, 3)  # 40x20 at 20: still cropped to the middle 20 columns
    assert _mean_rgb(uncropped) == pytest.approx([128, 128, 128], abs=2)


def test_load_image_gray_and_colour_conversions(folder: Path) -> None:
    assert _mean_rgb(load_image(folder / "a" / "b" / "gray.jpg", 16, 3)) == pytest.approx([90] * 3, abs=3)
    assert _mean_rgb(load_image(folder / "pal.png", 16, 3)) == pytest.approx([0, 200, 0], abs=1)
    # Gray of red is its luma, 0.299 * 255.
    assert _mean_rgb(load_image(folder / "cmyk.jpg", 16, 1)) == pytest.approx([76], abs=6)
    cmyk = _mean_rgb(load_image(folder / "cmyk.jpg", 16, 3))
    assert cmyk[0] > 220 and cmyk[1] < 40 and cmyk[2] < 40
    assert _mean_rgb(load_image(folder / "z" / "b.BMP", 16, 3)) == pytest.approx([0, 0, 255], abs=1)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_load_image_webp(folder: Path) -> None:
    assert _mean_rgb(load_image(folder / "z" / "w.webp", 16, 3)) == pytest.approx(list(GREEN), abs=1)


def test_load_image_transparency_becomes_white(folder: Path) -> None:
    x = load_image(folder / "a" / "b" / "c" / "rgba.png", 16, 3)
    assert _mean_rgb(x[:, :, :6]) == pytest.approx([255, 0, 0], abs=2)
    assert _mean_rgb(x[:, :, -6:]) == pytest.approx([255, 255, 255], abs=2)
    assert float(load_image(folder / "a" / "b" / "c" / "rgba.png", 16, 1)[:, :, -6:].float().mean()) > 250


def test_load_image_palette_with_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 0] + [255, 0, 0] + [0] * (254 * 3))
    pal.paste(1, (0, 0, 8, 16))
    _save(pal, tmp_path / "t.png", transparency=0)
    x = load_image(tmp_path / "t.png", 16, 3)
    assert _mean_rgb(x[:, :, :6]) == pytest.approx([255, 0, 0], abs=2)
    assert _mean_rgb(x[:, :, -6:]) == pytest.approx([255, 255, 255], abs=2)


def test_load_image_16_bit_is_scaled_not_clipped(folder: Path) -> None:
    x = load_image(folder / "deep16.png", 16, 1)
    assert int(x.min()) >= 127 and int(x.max()) <= 129
    assert _mean_rgb(load_image(folder / "deep16.png", 16, 3)) == pytest.approx([128] * 3, abs=1)


def test_load_image_applies_exif_orientation(folder: Path) -> None:
    x = load_image(folder / "z" / "exif.jpg", 16, 3)
    top, bottom = _mean_rgb(x[:, :5]), _mean_rgb(x[:, -5:])
    assert top[0] > 200 and top[2] < 60, top  # red on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom  # blue at the bottom


def test_load_image_upscales(folder: Path) -> None:
    x = load_image(folder / "a" / "rgb.png", 64, 3)
    assert x.shape == (3, 64, 64)
    assert _mean_rgb(x[:, :, :8]) == pytest.approx([255, 0, 0], abs=3)


def test_load_image_undecodable_raises_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_image(bad, 16, 3)


# --------------------------------------------------------------------------------------- list_image_files


def test_list_image_files_recursive_sorted_skipping_hidden_and_non_images(folder: Path) -> None:
    rel = [p.relative_to(folder).as_posix() for p in list_image_files(folder)]
    expected = ["a/b/c/rgba.png", "a/b/gray.jpg", "a/rgb.png", "band.png", "cmyk.jpg", "deep16.png", "pal.png"]
    expected += ["z/b.BMP", "z/exif.jpg"] + (["z/w.webp"] if features.check("webp") else [])
    assert rel == sorted(expected)
    assert rel == sorted(rel)
    assert not any(".hidden" in r or ".cache" in r or r.endswith(".txt") for r in rel)


def test_list_image_files_missing_and_empty(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=str(missing).replace("\\", "\\\\")):
        list_image_files(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataError) as info:
        list_image_files(empty)
    assert str(empty) in str(info.value) and ".png" in str(info.value)
    with pytest.raises(DataError, match="not a folder"):
        list_image_files(empty / "readme.txt")


# --------------------------------------------------------------------------------------- split_files


def _fake_files(root: Path, n: int, prefix: str = "img") -> list[Path]:
    return [root / f"d{i % 7}" / f"{prefix}{i:05d}.png" for i in range(n)]


def test_split_files_deterministic_disjoint_and_complete() -> None:
    root = Path("/data")
    files = _fake_files(root, 1000)
    train, test = split_files(files, root, 0.2, seed=5)
    assert (train, test) == split_files(files, root, 0.2, seed=5)
    assert set(train).isdisjoint(test)
    assert sorted(train + test) == sorted(files)
    assert 150 <= len(test) <= 250
    assert train == [f for f in files if f in set(train)]  # input order kept
    other_train, _ = split_files(files, root, 0.2, seed=6)
    assert other_train != train


def test_split_files_stable_when_files_are_added() -> None:
    root = Path("/data")
    old = _fake_files(root, 500)
    new = old + _fake_files(root, 300, prefix="new")
    train_old, test_old = split_files(old, root, 0.1, seed=0)
    train_new, test_new = split_files(new, root, 0.1, seed=0)
    assert set(train_old) <= set(train_new)
    assert set(test_old) <= set(test_new)


def test_split_files_small_sets_keep_both_sides() -> None:
    root = Path("/d")
    for n in (2, 3, 5):
        train, test = split_files(_fake_files(root, n), root, 0.01, seed=0)
        assert len(test) >= 1 and len(train) >= 1
    train, test = split_files(_fake_files(root, 1), root, 0.5, seed=0)
    assert len(train) == 1 and test == []
    assert split_files(_fake_files(root, 10), root, 0.0, seed=0)[1] == []
    with pytest.raises(DataError):
        split_files(_fake_files(root, 10), root, 1.0, seed=0)


# ----------------------------------------------------------------------------------- detect_channels


def test_detect_channels(tmp_path: Path) -> None:
    gray_dir = tmp_path / "gray"
    _save(Image.new("L", (8, 8), 10), gray_dir / "a.png")
    _save(Image.new("LA", (8, 8), (10, 255)), gray_dir / "b.png")
    _save(Image.fromarray(np.full((8, 8), 1000, dtype=np.uint16)), gray_dir / "c.png")
    gray_pal = Image.new("P", (8, 8), 3)
    gray_pal.putpalette([v for i in range(256) for v in (i, i, i)])
    _save(gray_pal, gray_dir / "d.png")
    _save(Image.new("L", (8, 8), 10), gray_dir / "e.jpg")
    assert detect_channels(list_image_files(gray_dir)) == 1

    _save(Image.new("RGB", (8, 8), (128, 128, 128)), tmp_path / "mixed" / "rgb.png")
    _save(Image.new("L", (8, 8), 10), tmp_path / "mixed" / "l.png")
    assert detect_channels(list_image_files(tmp_path / "mixed")) == 3
    colour_pal = Image.new("P", (8, 8), 1)
    colour_pal.putpalette([0, 0, 0, 255, 0, 0])
    _save(colour_pal, tmp_path / "pal" / "p.png")
    assert detect_channels(list_image_files(tmp_path / "pal")) == 3
    # Only the first max_check files are looked at.
    assert detect_channels(list_image_files(tmp_path / "mixed"), max_check=1) == 1


# ---------------------------------------------------------------------------------------- open_data


def test_open_data_builtin() -> None:
    split = open_data("builtin", 16, test_fraction=0.25, builtin_count=40)
    assert isinstance(split.train, TensorSource) and isinstance(split.test, TensorSource)
    assert (len(split.train), len(split.test)) == (30, 10)
    assert split.channels == 3 and split.size == 16
    assert split.train.names[0] == "builtin/000000" and split.test.names[0] == "builtin/000030"
    full = make_shapes(40, 16, 3, seed=1234)
    assert torch.equal(split.train.get([5, 2, 5]), full[[5, 2, 5]])
    assert torch.equal(split.test.get(torch.tensor([1, 0])), full[[31, 30]])
    # The split seed does not change the built-in images.
    assert torch.equal(open_data("builtin", 16, seed=9, test_fraction=0.25, builtin_count=40).train.get([0]), full[:1])
    gray = open_data("builtin", 16, channels=1, test_fraction=0.0, builtin_count=8)
    assert gray.test is None and gray.train.get([0]).shape == (1, 1, 16, 16)
    record = split.split_record()
    assert json.loads(json.dumps(record)) == record
    assert record["source"] == "builtin" and len(record["train"]) == 30 and len(record["test"]) == 10
    assert "40 images" in split.description and "\n" not in split.description


def test_open_data_folder_cached_and_lazy_agree(folder: Path) -> None:
    cached = open_data(str(folder), 16, test_fraction=0.3, seed=1)
    assert isinstance(cached.train, TensorSource) and cached.test is not None
    assert cached.channels == 3  # the folder holds colour images
    files = list_image_files(folder)
    assert len(cached.train) + len(cached.test) == len(files)
    names = cached.train.names + cached.test.names
    assert sorted(names) == sorted(f.relative_to(folder).as_posix() for f in files)

    lazy = open_data(str(folder), 16, test_fraction=0.3, seed=1, cache_limit_bytes=0)
    assert isinstance(lazy.train, FolderSource) and isinstance(lazy.test, FolderSource)
    assert lazy.train.names == cached.train.names
    order = [3, 0, 2]
    assert torch.equal(lazy.train.get(order), cached.train.get(order))
    assert torch.equal(lazy.test.get(torch.tensor([0])), cached.test.get([0]))
    # get returns the images of the named files, in the order asked for.
    for k, i in enumerate(order):
        expected = load_image(folder / lazy.train.names[i], 16, 3)
        assert torch.equal(lazy.train.get(order)[k], expected)
    assert torch.equal(cache_in_memory(lazy.train, num_threads=2).images, cached.train.images)

    record = cached.split_record()
    assert json.loads(json.dumps(record)) == record
    assert record["train"] == cached.train.names and record["source"] == str(folder)
    assert str(folder) in cached.description and "\n" not in cached.description


def test_open_data_folder_detects_gray(tmp_path: Path) -> None:
    for i in range(4):
        _save(Image.new("L", (20, 20), 40 * i), tmp_path / f"g{i}.png")
    split = open_data(str(tmp_path), 8, test_fraction=0.25)
    assert split.channels == 1 and split.train.get([0]).shape == (1, 1, 8, 8)
    assert open_data(str(tmp_path), 8, channels=3).train.get([0]).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("size", [0, 7, 12, 48, 2048])
def test_open_data_bad_size(size: int) -> None:
    with pytest.raises(DataError, match="--image-size"):
        open_data("builtin", size, builtin_count=4)


@pytest.mark.parametrize("channels", [0, 2, 4])
def test_open_data_bad_channels(channels: int) -> None:
    with pytest.raises(DataError, match="--channels"):
        open_data("builtin", 16, channels=channels, builtin_count=4)


def test_open_data_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere"):
        open_data(str(tmp_path / "nowhere"), 16)


def test_image_extensions_are_lowercase_with_dots() -> None:
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
