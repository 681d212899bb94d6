"""`introvae evaluate` and the evaluation API end to end: two image sets, a trained run, and --eval-every.

The Inception network gets random weights with the published layout, saved to a file and loaded through the real
loading path; He-scaled convolutions keep its features lively enough for the distances to mean something. (The
published weights cannot be downloaded here; their layout is tested in test_inception.py.)
"""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from introvae.cli import main
from introvae.data import TensorSource, make_shapes, open_data
from introvae.errors import DataError
from introvae.evaluate import (
    EvalSettings,
    FeatureSpace,
    evaluate_run,
    evaluate_sets,
    generate_samples,
    load_image_set,
    nearest_by_pixels,
    reconstruction_errors,
)
from introvae.metrics.fid import fid
from introvae.metrics.inception import FIDInceptionV3, inception_features, load_inception
from introvae.model import Model
from introvae.runlog import read_log
from introvae.train import train

pytestmark = pytest.mark.filterwarnings("ignore:.*is not the published")

SMALL = dict(msssim_pairs=60, kid_subsets=4, kid_subset_size=10)
SMALL_CLI = ["--msssim-pairs", "60", "--kid-subsets", "4", "--kid-subset-size", "10", "--quiet"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, value in FIDInceptionV3().state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("conv.weight"):
            value = torch.randn(value.shape, generator=g) * math.sqrt(2.0 / value[0].numel())
        state[key] = value
    path = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    torch.save(state, path)
    return path


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No network, no user cache, no weights found by accident."""
    monkeypatch.setenv("INTROVAE_OFFLINE", "1")
    monkeypatch.setenv("INTROVAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("INTROVAE_FID_WEIGHTS", raising=False)


def _write_pngs(images_u8, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images_u8):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    # 12 images: enough for every metric (the Inception Score's 10 splits, KID's subsets of 10), few enough that
    # the Inception network's passes stay short.
    samples = _write_pngs(make_shapes(12, 32, 3, seed=1), root / "samples")
    reference = _write_pngs(make_shapes(12, 32, 3, seed=2), root / "reference")
    return samples, reference


# ---- two image sets


@pytest.mark.slow
def test_two_folder_mode_end_to_end(two_folders, weights, tmp_path, capsys):
    samples, reference = two_folders
    out = tmp_path / "report.json"
    code = main(["evaluate", "--samples", str(samples), "--reference", str(reference), "--fid-weights", str(weights),
                 "--out", str(out), *SMALL_CLI])
    assert code == 0
    table = capsys.readouterr().out
    for row in ("FID", "KID", "Inception Score", "precision / recall", "MS-SSIM", "SWD"):
        assert row in table
    report = json.loads(out.read_text())
    m = report["metrics"]
    assert m["num_samples"] == 12 and m["num_reference"] == 12
    assert m["fid"] > 0 and 0 <= m["precision_recall"]["precision"] <= 1
    assert m["swd"]["mean"] > 0 and set(m["swd"]["levels"]) == {"32", "16"}
    assert 0 < m["ms_ssim"]["samples"] < 1
    assert report["skipped"] == {}


@pytest.mark.slow
def test_a_set_against_itself(two_folders, weights):
    images = load_image_set(two_folders[0])
    report = evaluate_sets(images, images.clone(), EvalSettings(fid_weights=str(weights), **SMALL))
    m = report["metrics"]
    assert 0.0 <= m["fid"] < 1e-4
    assert m["precision_recall"]["precision"] == 1.0 and m["precision_recall"]["recall"] == 1.0
    assert m["swd"]["mean"] == 0.0
    assert m["ms_ssim"]["samples"] == m["ms_ssim"]["reference"]


@pytest.mark.slow
def test_fid_does_not_depend_on_the_batch_size(weights):
    model = load_inception(weights)
    real, fake = make_shapes(6, 32, 3, seed=3), make_shapes(6, 32, 3, seed=4)
    values = []
    for batch_size in (1, 4, 64):  # one image at a time, uneven chunks (4 + 2), all at once
        a, b = (inception_features(model, x, batch_size)["pool"] for x in (real, fake))
        values.append(fid(a, b))
    assert values[0] > 0
    assert values[1] == pytest.approx(values[0], rel=1e-4) and values[2] == pytest.approx(values[0], rel=1e-4)


@pytest.mark.slow
def test_missing_weights_give_one_sentence_and_the_other_metrics(two_folders, tmp_path, capsys):
    samples, reference = two_folders
    out = tmp_path / "report.json"
    code = main(["evaluate", "--samples", str(samples), "--reference", str(reference), "--out", str(out),
                 "--msssim-pairs", "60"])
    captured = capsys.readouterr()
    assert code == 0
    assert "Traceback" not in captured.err
    message = [line for line in captured.err.splitlines() if "pt_inception-2015-12-05-6726825d.pth" in line]
    assert len(message) == 1 and "--fid-weights" in message[0] and "INTROVAE_FID_WEIGHTS" in message[0]
    report = json.loads(out.read_text())
    assert set(report["skipped"]) == {"fid", "kid", "inception_score", "precision_recall"}
    assert "ms_ssim" in report["metrics"] and "swd" in report["metrics"]
    assert "MS-SSIM" in captured.out and "skipped" in captured.out


def test_a_weights_path_that_does_not_exist_is_an_error(two_folders, tmp_path, capsys):
    samples, reference = two_folders
    code = main(["evaluate", "--samples", str(samples), "--reference", str(reference),
                 "--fid-weights", str(tmp_path / "nope.pth")])
    err = capsys.readouterr().err
    assert code == 2 and "nope.pth" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, words", [
    ([], "either RUN_DIR"),
    (["--samples", "x"], "--samples and --reference go together"),
    (["--samples", "x", "--reference", "y", "--step", "3"], "--data and --step"),
])
def test_bad_combinations_of_options(args, words, capsys):
    assert main(["evaluate", *args]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.slow
def test_reference_features_are_cached(weights, tmp_path):
    images = make_shapes(6, 32, 3, seed=5)
    space = FeatureSpace(EvalSettings(fid_weights=str(weights)))
    first = space.of_cached(images, "reference")
    files = list((tmp_path / "cache" / "inception-features").glob("*.npz"))
    assert len(files) == 1
    # The cached file is what a second call returns (made recognisable by overwriting it).
    np.savez(files[0], pool=np.full((6, 2048), 7.0, np.float32), logits=np.zeros((6, 1008), np.float32))
    assert float(space.of_cached(images, "reference")["pool"][0, 0]) == 7.0
    # Different images, different key.
    assert not torch.equal(space.of_cached(images.flip(-1), "reference")["pool"], first["pool"])
    # A damaged file is recomputed.
    files[0].write_bytes(b"garbage")
    torch.testing.assert_close(space.of_cached(images, "reference")["pool"], first["pool"])


def test_image_sets_from_npz_and_folders_with_a_grid(tmp_path):
    images = make_shapes(6, 16, 3, seed=0)
    np.savez(tmp_path / "s.npz", images=images.permute(0, 2, 3, 1).numpy(), seed=np.int64(0))
    assert torch.equal(load_image_set(tmp_path / "s.npz"), images)
    folder = _write_pngs(images, tmp_path / "pngs")
    Image.new("RGB", (100, 60)).save(folder / "grid.png")  # written by `introvae sample`; not a sample
    assert torch.equal(load_image_set(folder), images)
    np.save(tmp_path / "nchw.npy", images.numpy())
    assert torch.equal(load_image_set(tmp_path / "nchw.npy"), images)
    # Asked for one channel, an RGB array turns gray as an RGB file does (PIL's luma), within rounding.
    gray_array = load_image_set(tmp_path / "s.npz", channels=1).int()
    gray_files = load_image_set(folder, channels=1).int()
    assert gray_array.shape == (6, 1, 16, 16) and (gray_array - gray_files).abs().max() <= 1
    assert load_image_set(tmp_path / "s.npz", channels=3).shape == (6, 3, 16, 16)
    assert torch.equal(load_image_set(tmp_path / "nchw.npy", channels=1, size=16), gray_array.to(torch.uint8))
    np.save(tmp_path / "bad.npy", np.zeros((2, 5, 5), np.float32))
    with pytest.raises(DataError, match="uint8 images"):
        load_image_set(tmp_path / "bad.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="objects.npy"):
        load_image_set(tmp_path / "objects.npy")


# ---- parts of a run's evaluation


def test_reconstruction_errors_on_known_differences():
    originals = torch.full((3, 3, 16, 16), 100, dtype=torch.uint8)
    perfect = reconstruction_errors(originals, originals.float() / 255)
    assert perfect["rmse"] == 0 and perfect["ssim"] == pytest.approx(1.0) and perfect["psnr"] == pytest.approx(100.0)
    off_by_10 = reconstruction_errors(originals, torch.full((3, 3, 16, 16), 110 / 255))
    assert off_by_10["rmse"] == pytest.approx(10.0)
    assert off_by_10["psnr"] == pytest.approx(20 * math.log10(255 / 10))
    # RMSE is per image, then averaged (App. D reports it on the 0-255 scale).
    mixed = torch.cat([torch.full((1, 3, 16, 16), 100 / 255), torch.full((1, 3, 16, 16), 120 / 255)])
    assert reconstruction_errors(originals[:2], mixed)["rmse"] == pytest.approx(10.0)


def test_nearest_neighbours_in_pixel_space_find_the_image_itself():
    train_images = make_shapes(700, 16, 3, seed=0)  # more than one chunk of candidates
    queries = train_images[[5, 650, 123]]
    index = nearest_by_pixels(queries, TensorSource(train_images, [str(i) for i in range(700)]), k=3)
    assert index[:, 0].tolist() == [5, 650, 123]
    # The others are the next closest by L1.
    l1 = (train_images.float() - queries[1].float()).abs().flatten(1).sum(1)
    assert l1[index[1, 1]] == l1.sort().values[1]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, tiny_config):
    out = tmp_path_factory.mktemp("run") / "run"
    config = tiny_config(batch_size=8, steps=4, warmup_steps=2, builtin_count=48, test_fraction=0.25)
    return train(config, out=out, quiet=True)


@pytest.mark.slow
def test_evaluate_an_exported_weights_file_like_its_run(small_run, tmp_path):
    weights_file = tmp_path / "exported" / "model.safetensors"
    assert main(["export", str(small_run), "--out", str(weights_file)]) == 0
    assert main(["evaluate", str(weights_file), "--num-samples", "12", "--no-download", *SMALL_CLI]) == 0
    of_file = json.loads((tmp_path / "exported" / "eval" / "eval-model.json").read_text())
    assert of_file["step"] == 4 and (tmp_path / "exported" / "eval" / "nearest_pixels.png").is_file()
    assert main(["evaluate", str(small_run), "--num-samples", "12", "--no-download", *SMALL_CLI, "--out",
                 str(tmp_path / "of-run.json")]) == 0
    of_run = json.loads((tmp_path / "of-run.json").read_text())
    # The file holds the run's inference networks: the same samples, reconstructions and numbers.
    assert of_file["metrics"] == of_run["metrics"] and of_file["reconstruction"] == of_run["reconstruction"]


@pytest.mark.slow
def test_evaluate_a_run(small_run, weights, capsys, read_grid):
    code = main(["evaluate", str(small_run), "--num-samples", "12", "--fid-weights", str(weights), *SMALL_CLI])
    assert code == 0
    assert "RMSE (0-255)" in capsys.readouterr().out
    report = json.loads((small_run / "eval" / "eval-00000004.json").read_text())
    assert report["step"] == 4 and report["metrics"]["num_samples"] == 12
    assert report["metrics"]["num_reference"] == 12  # the held-out quarter of 48 images
    rec = report["reconstruction"]
    assert rec["count"] == 12 and 0 < rec["rmse"] < 255 and rec["ssim"] < 1
    assert "fid" in report["metrics"] and report["skipped"] == {}
    # Nearest neighbours: row r is sample r, then 5 training images, in pixel space nearest first by L1.
    samples = generate_samples(Model.load(small_run), 12, seed=0, batch_size=64)[:8].permute(0, 2, 3, 1).numpy()
    train_split = open_data("builtin", 16, 3, 0.25, 0, builtin_count=48).train
    training_images = {image.tobytes() for image in
                       train_split.get(list(range(len(train_split)))).permute(0, 2, 3, 1).numpy()}
    for name in ("nearest_pixels.png", "nearest_features.png"):
        tiles = read_grid(small_run / "eval" / name, 16, 6)
        assert tiles.shape[0] == 8 and np.array_equal(tiles[:, 0], samples)
        assert all(tile.tobytes() in training_images for tile in tiles[:, 1:].reshape(-1, 16, 16, 3))
    tiles = read_grid(small_run / "eval" / "nearest_pixels.png", 16, 6).astype(int)
    l1 = np.abs(tiles[:, 1:] - tiles[:, :1]).sum(axis=(2, 3, 4))
    assert (np.diff(l1, axis=1) >= 0).all()


@pytest.mark.slow
def test_evaluation_samples_are_the_seeded_samples(small_run):
    from introvae.images import to_uint8

    model = Model.load(small_run)
    # The same images: the codes are the same, and the decoded values differ only in the last float bits (matrix
    # products pick kernels by batch size), which can move a pixel across a rounding boundary of uint8.
    difference = generate_samples(model, 5, seed=3, batch_size=2).int() - to_uint8(model.sample(5, seed=3)).int()
    assert difference.abs().max() <= 1 and (difference == 0).float().mean() > 0.99


@pytest.mark.slow
def test_a_run_without_held_out_images_needs_data(tmp_path, capsys, tiny_config):
    run = train(tiny_config(steps=1, builtin_count=16, test_fraction=0.0), out=tmp_path / "r", quiet=True)
    assert main(["evaluate", str(run), "--num-samples", "4"]) == 2
    assert "--data" in capsys.readouterr().err
    folder = _write_pngs(make_shapes(12, 16, 3, seed=9), tmp_path / "ref")
    report = evaluate_run(run, data=folder, settings=EvalSettings(num_samples=12, neighbour_rows=2, **SMALL))
    assert report["metrics"]["num_reference"] == 12 and report["reconstruction"]["count"] == 12


# ---- during training


@pytest.mark.slow
def test_eval_every_logs_metrics_without_changing_training(tmp_path, weights, tiny_config):
    base = tiny_config(batch_size=8, steps=4, warmup_steps=1, builtin_count=64, test_fraction=0.25, log_every=2)
    plain = train(base, out=tmp_path / "plain", quiet=True)
    evaluated = train(base.replace(eval_every=2, eval_samples=12, fid_weights=str(weights)), out=tmp_path / "eval",
                      quiet=True)
    records = [r for r in read_log(evaluated / "log.jsonl") if "eval_rmse" in r]
    assert [r["step"] for r in records] == [2, 4]
    for key in ("eval_fid", "eval_kid", "eval_ms_ssim", "eval_swd", "eval_psnr", "eval_ssim"):
        assert all(math.isfinite(r[key]) for r in records), key
    from safetensors.torch import load_file

    a = load_file(plain / "checkpoints" / "model-00000004.safetensors")
    b = load_file(evaluated / "checkpoints" / "model-00000004.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # evaluating uses its own randomness and eval-mode networks


def test_eval_every_needs_held_out_images(tmp_path, tiny_config):
    from introvae.errors import UserError

    with pytest.raises(UserError, match="--test-fraction"):
        train(tiny_config(steps=2, builtin_count=16, test_fraction=0.0, eval_every=1), out=tmp_path / "r", quiet=True)
