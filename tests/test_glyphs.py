"""The glyph data set (introvae.data.glyphs) and its judge (benchmarks/glyphs.py): image i depends only on i, the
labels name what is drawn, every size and channel count opens through open_data, the shapes stay reachable, and the
judge's figures behave on real, blurred and speckled glyphs."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from introvae.cli import main
from introvae.data import glyph_labels, load_image_set, make_glyphs, make_shapes, open_data, write_glyphs
from introvae.data.glyphs import DIGITS, GLYPHS, GLYPHS_SEED, LETTERS, glyph_classes
from introvae.data.shapes import SHAPES, SHAPES_SEED
from introvae.data.source import data_source_for
from introvae.errors import DataError
from introvae.latent import read_labels_csv

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- the images


def test_image_i_depends_only_on_i() -> None:
    short = make_glyphs(8, 16)
    assert short.dtype == torch.uint8 and short.shape == (8, 1, 16, 16)
    assert torch.equal(short, make_glyphs(8, 16))
    # 130 images take the threaded path; a longer set starts with the shorter one.
    long = make_glyphs(130, 16)
    assert torch.equal(long[:8], short)
    assert torch.equal(make_glyphs(4, 16, start=126), long[126:])
    assert not torch.equal(make_glyphs(8, 16, seed=GLYPHS_SEED + 1), short)
    assert glyph_labels(130)[:8] == glyph_labels(8) and glyph_labels(4, start=126) == glyph_labels(130)[126:]


def _ink_box(image: torch.Tensor, threshold: int = 96) -> tuple[int, int]:
    """Height and width of the pixels brighter than `threshold` in a (1, S, S) image."""
    rows = torch.nonzero((image[0] > threshold).any(dim=1)).flatten()
    cols = torch.nonzero((image[0] > threshold).any(dim=0)).flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def test_glyphs_are_white_on_black_and_fill_the_frame() -> None:
    images = make_glyphs(64, 32)
    corners = images[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners.float().mean(dim=1) < 32).all(), "the background is black"
    assert (images.amax(dim=(1, 2, 3)) > 200).all(), "every glyph has white ink"
    longer_sides = torch.tensor([max(_ink_box(image)) for image in images]) / 32
    # The ink's longer side is drawn at 60-85 % of the frame (before shear and rotation, and a stroke's blur).
    assert longer_sides.min() >= 0.5 and longer_sides.max() <= 1.0
    assert longer_sides.std() > 0.03, "the sizes vary"
    assert len({tuple(image.flatten().tolist()) for image in images}) == 64


def test_labels_name_what_is_drawn() -> None:
    # A nearest-neighbour guess from other glyphs of the set is right far more often than chance (0.1) only if the
    # labels are those of the images.
    train, test = make_glyphs(600, 16).flatten(1).float(), make_glyphs(100, 16, start=600).flatten(1).float()
    train_labels, test_labels = glyph_labels(600), glyph_labels(100, start=600)
    nearest = torch.cdist(test, train).argmin(dim=1).tolist()
    accuracy = np.mean([train_labels[j] == label for j, label in zip(nearest, test_labels)])
    assert accuracy > 0.5
    assert set(glyph_labels(200)) == set(DIGITS) and glyph_classes() == tuple(DIGITS)


def test_letters_are_other_classes_with_the_same_strokes() -> None:
    letters = glyph_labels(300, mode="letters")
    assert set(letters) == set(LETTERS) and not set(letters) & set(DIGITS) and not {"I", "O"} & set(letters)
    both = glyph_labels(400, mode="all")
    assert set(both) == set(DIGITS + LETTERS) and glyph_classes("all") == tuple(DIGITS + LETTERS)
    digit_images, letter_images = make_glyphs(64, 16), make_glyphs(64, 16, mode="letters")
    assert not torch.equal(digit_images, letter_images)
    # Same strokes: the ink covers a similar share of the frame.
    assert abs(digit_images.float().mean() - letter_images.float().mean()) < 0.25 * digit_images.float().mean()
    with pytest.raises(ValueError, match="mode"):
        make_glyphs(2, 16, mode="runes")


# ------------------------------------------------------------------------------------ the data source


@pytest.mark.parametrize("size", [16, 32, 64])
def test_open_data_glyphs_at_any_size_gray_by_default(size: int) -> None:
    split = open_data("glyphs", size, test_fraction=0.25, builtin_count=12)
    assert data_source_for("glyphs") is GLYPHS and split.channels == 1 and split.size == size
    assert (len(split.train), len(split.test)) == (9, 3)
    assert split.train.names[0] == "glyphs/000000" and split.test.names[0] == "glyphs/000009"
    full = make_glyphs(12, size)
    assert torch.equal(split.train.get([0, 8]), full[[0, 8]]) and torch.equal(split.test.get([2]), full[[11]])
    assert "glyphs (digits): 12 images (9 train, 3 test)" in split.description
    # Not the run's seed: the same images for every --seed.
    assert torch.equal(open_data("glyphs", size, seed=7, test_fraction=0.25, builtin_count=12).train.get([3]),
                       full[[3]])


def test_open_data_glyphs_in_three_channels_repeats_the_gray() -> None:
    rgb = open_data("glyphs", 16, channels=3, test_fraction=0.0, builtin_count=6).train.get(list(range(6)))
    assert rgb.shape == (6, 3, 16, 16)
    assert torch.equal(rgb, make_glyphs(6, 16).expand(-1, 3, -1, -1))


def test_open_data_glyph_modes() -> None:
    letters = open_data("glyphs:letters", 16, test_fraction=0.0, builtin_count=6)
    assert torch.equal(letters.train.get([0, 5]), make_glyphs(6, 16, mode="letters")[[0, 5]])
    assert letters.split_record()["source"] == "glyphs:letters"
    assert torch.equal(open_data("glyphs:digits", 16, test_fraction=0.0, builtin_count=4).train.get([1]),
                       make_glyphs(4, 16)[[1]])
    assert "digits and capital letters" in open_data("glyphs:all", 16, builtin_count=4).description


def test_unknown_glyph_mode_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(DataError, match=r"--data glyphs:runes names no glyph set: use glyphs"):
        open_data("glyphs:runes", 16, builtin_count=4)
    assert main(["train", "--data", "glyphs:runes", "--out", str(tmp_path / "run"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "glyphs:letters" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_shapes_alias_and_builtin_still_open_the_shapes() -> None:
    shapes = open_data("shapes", 16, test_fraction=0.25, builtin_count=8)
    builtin = open_data("builtin", 16, test_fraction=0.25, builtin_count=8)
    assert data_source_for("shapes") is SHAPES and data_source_for("builtin") is SHAPES
    expected = make_shapes(8, 16, 3, seed=SHAPES_SEED)
    for split in (shapes, builtin):
        assert split.channels == 3 and torch.equal(split.train.get(list(range(6))), expected[:6])
        # The names runs recorded in split.json when the shapes were "builtin", so those runs still resume.
        assert split.train.names[0] == "builtin/000000" and split.split_record()["source"] == "builtin"


# ------------------------------------------------------------------------------------ labels to files


@pytest.mark.slow  # trains the shared tiny run when no other test has
def test_write_glyphs_folder_feeds_attribute_labels(tmp_path: Path, tiny_run: Path) -> None:
    csv_path = write_glyphs(tmp_path / "glyphs", 12, size=16)
    files, labels = read_labels_csv(csv_path)
    assert labels == glyph_labels(12) and [f.name for f in files] == [f"{i:06d}.png" for i in range(12)]
    assert torch.equal(load_image_set(tmp_path / "glyphs", 16, 1), make_glyphs(12, 16))
    with csv_path.open(newline="") as f:
        assert next(csv.reader(f)) == ["file", "label"]
    # The tiny run is in colour at 16 px: the gray glyphs are loaded as RGB, one vector per digit present.
    out = tmp_path / "vectors"
    assert main(["attribute", str(tiny_run), "--labels", str(csv_path), "--out", str(out), "--device", "cpu"]) == 0
    assert sorted(p.stem for p in out.iterdir()) == sorted(set(labels))


def test_write_glyphs_npz_keeps_the_labels(tmp_path: Path) -> None:
    path = write_glyphs(tmp_path / "letters.npz", 6, size=16, mode="letters", start=3)
    with np.load(path, allow_pickle=False) as archive:
        assert archive["images"].shape == (6, 16, 16, 1)
        assert archive["labels"].tolist() == glyph_labels(6, mode="letters", start=3)
    assert torch.equal(load_image_set(path), make_glyphs(6, 16, mode="letters", start=3))


# ----------------------------------------------------------------------------------------------- the judge


@pytest.fixture(scope="module")
def judge():
    """benchmarks/glyphs.py as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("glyph_judge", ROOT / "benchmarks" / "glyphs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_high_frequency_ratio_tells_blur_from_speckle(judge) -> None:
    real, other = make_glyphs(200, 32), make_glyphs(200, 32, start=200)
    reference = judge.high_frequency_share(judge.as_gray_nchw(other)).mean()

    def ratio(images: torch.Tensor) -> float:
        return float(judge.high_frequency_share(judge.as_gray_nchw(images)).mean() / reference)

    assert 0.9 < ratio(real) < 1.1
    assert ratio(judge.blurred(real, 1.0)) < 0.5
    assert ratio(judge.speckled(real, 0.02)) > 1.5
    # A flat image has no power, so no share of it above the cutoff.
    assert judge.high_frequency_share(torch.zeros(1, 1, 8, 8)).item() == 0.0


def test_class_cover(judge) -> None:
    assert judge.class_cover(torch.full((50,), 3), 10) == 0.0
    assert judge.class_cover(torch.arange(100) % 10, 10) == pytest.approx(1.0)
    assert 0.25 < judge.class_cover(torch.tensor([0, 1] * 20), 10) < 0.35  # two of ten classes: log 2 / log 10


def test_judge_images_against_themselves(judge) -> None:
    torch.manual_seed(0)
    classifier = judge.GlyphClassifier(10).eval()  # untrained: the figures' arithmetic, not its judgement
    images = make_glyphs(64, 16)
    figures = judge.judge_images(images, classifier=classifier, reference=images)
    assert figures["fd"] == pytest.approx(0.0, abs=1e-6) and figures["hf_ratio"] == pytest.approx(1.0)
    assert 0.0 <= figures["legible"] <= 1.0 and 0.0 <= figures["class_cover"] <= 1.0
    # NHWC, as `introvae sample` writes arrays, and three channels judge the same as gray NCHW.
    nhwc_rgb = images.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous()
    again = judge.judge_images(nhwc_rgb, classifier=classifier, reference=images)
    assert again["fd"] == pytest.approx(0.0, abs=1e-3) and again["hf_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert judge.judge_images(judge.speckled(images, 0.05), classifier=classifier, reference=images)["fd"] > 0.0
