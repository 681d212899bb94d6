"""The command line end to end, on a folder that mixes RGB, grayscale, RGBA and palette images of different sizes."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from introvae.cli import main
from introvae.data import list_image_files
from introvae.images import load_image, to_float, to_uint8
from introvae.model import Model
from introvae.rundir import RunDir


@pytest.fixture(scope="module")
def train_flags(tiny_cli):
    """The tiny run's flags for a folder of images: channels detected, warm-up and checkpoints at their defaults."""
    return [*tiny_cli(data=None, channels=None, warmup_steps=None, checkpoint_every=None), "--quiet"]


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (root / "sub" / "deeper").mkdir(parents=True)
    for i in range(12):
        w, h = int(rng.integers(12, 40)), int(rng.integers(12, 40))
        pixels = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        kind = i % 4
        if kind == 0:
            Image.fromarray(pixels[..., :3], "RGB").save(root / f"rgb{i}.png")
        elif kind == 1:
            Image.fromarray(pixels[..., 0], "L").save(root / "sub" / f"gray{i}.jpg")
        elif kind == 2:
            Image.fromarray(pixels, "RGBA").save(root / "sub" / "deeper" / f"rgba{i}.png")
        else:
            paletted = Image.fromarray(pixels[..., :3], "RGB").convert("P", palette=Image.Palette.ADAPTIVE)
            paletted.save(root / f"pal{i}.bmp")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def run_dir(mixed_folder, tmp_path_factory, train_flags):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--data", str(mixed_folder), "--out", str(out), "--steps", "3", "--warmup-steps", "1",
                 "--checkpoint-every", "2", *train_flags]) == 0
    return out


def test_train_writes_a_run(run_dir, mixed_folder, read_grid, read_chart):
    config = json.loads((run_dir / "config.json").read_text())
    # RGB present: 3 channels detected
    assert config["dataset"]["channels"] == 3 and config["dataset"]["image_size"] == 16
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["train"]) + len(split["test"]) == 12  # notes.txt skipped, subfolders searched
    assert RunDir(run_dir).checkpoint_steps() == [2, 3]
    read_chart(run_dir / "dynamics.png")
    # Row 1 of the interpolation runs from the first held-out image to the second (row 2: between two seeds).
    first, second = (_image(mixed_folder / name) for name in split["test"][:2])
    interpolation = read_grid(run_dir / "interpolation.png", 16, 10)
    assert interpolation.shape[0] == 2
    assert np.array_equal(interpolation[0, 0], first) and np.array_equal(interpolation[0, 9], second)


def _image(path):
    """A file of the mixed folder as the run sees it: 16 px, RGB, (H, W, 3) uint8."""
    return load_image(path, 16, 3).permute(1, 2, 0).numpy()


@pytest.mark.slow
def test_resume_from_the_command_line(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["train", "--resume", str(copy), "--steps", "5", "--quiet"]) == 0
    assert RunDir(copy).checkpoint_steps()[-1] == 5
    steps = [json.loads(line)["step"] for line in (copy / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_sample_to_folder_grid_and_npz(run_dir, tmp_path):
    assert main(["sample", str(run_dir), "--num", "5", "--out", str(tmp_path / "png"), "--seed", "3",
                 "--batch-size", "2"]) == 0
    files = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert files == ["000000.png", "000001.png", "000002.png", "000003.png", "000004.png", "grid.png"]
    assert main(["sample", str(run_dir), "--num", "5", "--out", str(tmp_path / "s.npz"), "--seed", "3"]) == 0
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8
    # The same seed gives the same images whatever the batch size (up to rounding of one 8-bit level).
    first = np.asarray(Image.open(tmp_path / "png" / "000000.png"))
    assert np.abs(first.astype(int) - images[0].astype(int)).max() <= 1
    # --out FILE.png: one grid of all the images, the folder's grid.png for these five
    assert main(["sample", str(run_dir), "--num", "5", "--out", str(tmp_path / "one" / "grid.png"), "--seed", "3",
                 "--batch-size", "2"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one" / "grid.png")),
                          np.asarray(Image.open(tmp_path / "png" / "grid.png")))


def test_reconstruct_a_folder(run_dir, mixed_folder, tmp_path, read_grid):
    assert main(["reconstruct", str(run_dir), "--input", str(mixed_folder), "--out", str(tmp_path / "rec")]) == 0
    assert Image.open(tmp_path / "rec" / "sub" / "gray1.png").size == (16, 16)
    # Each file's reconstruction is the model's (up to one 8-bit level: batched kernels round differently).
    model = Model.load(run_dir)
    original = _image(mixed_folder / "sub" / "deeper" / "rgba2.png")
    expected = to_uint8(model.reconstruct(to_float(torch.from_numpy(original).permute(2, 0, 1)[None])))[0]
    saved = np.asarray(Image.open(tmp_path / "rec" / "sub" / "deeper" / "rgba2.png").convert("RGB"))
    assert np.abs(saved.astype(int) - expected.permute(1, 2, 0).numpy().astype(int)).max() <= 1
    # The grid, 8 to a row: 8 originals, their 8 reconstructions, then the other 4 originals and theirs.
    files = list_image_files(mixed_folder)
    originals = [_image(f) for f in files]
    reconstructions = [np.asarray(Image.open(tmp_path / "rec" / f.relative_to(mixed_folder).with_suffix(".png"))
                                  .convert("RGB")) for f in files]
    expected = originals[:8] + reconstructions[:8] + originals[8:] + reconstructions[8:]
    tiles = read_grid(tmp_path / "rec" / "grid.png", 16, 8).reshape(-1, 16, 16, 3)
    assert len(tiles) == len(expected) and all(np.array_equal(t, e) for t, e in zip(tiles, expected))
    # A folder that `sample` wrote: its grid.png is not one of the images; one image file works too.
    assert main(["sample", str(run_dir), "--num", "3", "--out", str(tmp_path / "samples")]) == 0
    assert main(["reconstruct", str(run_dir), "--input", str(tmp_path / "samples"), "--out",
                 str(tmp_path / "rec-samples")]) == 0
    assert sorted(p.name for p in (tmp_path / "rec-samples").iterdir()) == [
        "000000.png", "000001.png", "000002.png", "grid.png"]
    assert read_grid(tmp_path / "rec-samples" / "grid.png", 16, 3).shape[:2] == (2, 3)  # 3 originals over 3 recs
    assert main(["reconstruct", str(run_dir), "--input", str(tmp_path / "samples" / "000001.png"), "--out",
                 str(tmp_path / "rec-one")]) == 0
    one = np.asarray(Image.open(tmp_path / "rec-one" / "000001.png").convert("RGB")).astype(int)
    of_three = np.asarray(Image.open(tmp_path / "rec-samples" / "000001.png").convert("RGB")).astype(int)
    assert np.abs(one - of_three).max() <= 1  # the same reconstruction, batched kernels aside


def test_interpolate_images_and_seeds(run_dir, mixed_folder, tmp_path):
    out = tmp_path / "i.png"
    assert main(["interpolate", str(run_dir), "--a", str(mixed_folder / "rgb0.png"), "--b",
                 str(mixed_folder / "pal3.bmp"), "--steps", "5", "--out", str(out)]) == 0
    width, height = Image.open(out).size
    assert width > 6 * 16 and height < 2 * 16 + 8  # one row: a, 5 steps, b
    assert main(["interpolate", str(run_dir), "--seed-a", "0", "--seed-b", "1", "--steps", "4", "--method", "slerp",
                 "--out", str(tmp_path / "s.png")]) == 0


@pytest.mark.slow
def test_plot_and_calibrate(run_dir, mixed_folder, tmp_path, capsys, train_flags):
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "d.png")]) == 0
    assert Image.open(tmp_path / "d.png").size[0] > 500
    # `plot` redraws the figure training drew: the objective's panels, the same title.
    assert (tmp_path / "d.png").read_bytes() == (run_dir / "dynamics.png").read_bytes()
    assert main(["calibrate", "--data", str(mixed_folder), "--steps", "4", *train_flags]) == 0
    out = capsys.readouterr().out
    assert "KL(real)" in out and "proposed margin: --margin" in out
    # Only IntroVAE has a margin: another model is refused before anything is trained.
    assert main(["calibrate", "--data", str(mixed_folder), "--steps", "4", *train_flags, "--model", "avae",
                 "--out", str(tmp_path / "avae")]) == 2
    assert "--model avae does not have" in capsys.readouterr().err and not (tmp_path / "avae").exists()


def test_dry_run_prints_the_preset(capsys, tmp_path):
    # With --resume it trains nothing: the resumed run's config is its config.json.
    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "9", "--dry-run"]) == 2
    assert "a resumed run keeps its own" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(["train", "--preset", "paper-1024", "--dry-run", "--out", "x"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["dataset"]["image_size"], config["networks"]["latent_dim"], config["objective"]["margin"],
            config["objective"]["beta"]) == (1024, 512, 90.0, 0.0025)


@pytest.mark.parametrize("args, phrase", [
    (["train", "--data", "/no/such/folder", "--out", "OUT", "--steps", "1"], "/no/such/folder"),
    (["train", "--data", "builtin", "--out", "OUT", "--image-size", "48"], "--image-size"),
    (["sample", "/no/such/run", "--num", "2", "--out", "x"], "/no/such/run"),
    (["interpolate", "RUN", "--a", "x.png", "--steps", "3", "--out", "o.png"], "--seed-a"),
])
def test_bad_input_is_one_sentence_and_status_2(args, phrase, tmp_path, run_dir):
    args = [a.replace("OUT", str(tmp_path / "o")).replace("RUN", str(run_dir)) for a in args]
    result = subprocess.run([sys.executable, "-m", "introvae", *args], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and phrase in lines[0], result.stderr


def test_an_existing_run_is_never_overwritten(run_dir, capsys, train_flags):
    before = (run_dir / "config.json").read_text()
    assert main(["train", "--data", "builtin", "--out", str(run_dir), "--steps", "1", *train_flags]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (run_dir / "config.json").read_text() == before


def test_an_output_path_that_cannot_be_written_is_one_sentence_and_exit_2(tiny_run, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    status = main(["sample", str(tiny_run), "--num", "2", "--out", str(blocker / "samples")])
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(blocker) in err and err.startswith("introvae: error: cannot use")
    assert blocker.read_text() == "not a folder"  # nothing already there is touched
