"""Hostile folders (broken, truncated, fake, huge, tiny, 16-bit, CMYK, rotated images), the scan report and
`introvae check-data`, and the LMDB and array sources, which must give exactly the images of a folder."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from introvae.cli import main
from introvae.data import FolderSource, TensorSource, check_data, open_data
from introvae.data.arrays import ArraySource
from introvae.data.scan import take_rows_in_place
from introvae.errors import DataError
from introvae.images import load_image

SIZE = 16


def _permissions_bind() -> bool:
    """Whether a chmod 000 file is unreadable here (not as root, or root without CAP_DAC_OVERRIDE)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_bytes(b"x")
        probe.chmod(0)
        try:
            probe.read_bytes()
        except PermissionError:
            return True
        finally:
            probe.chmod(0o600)
    return False


IS_ROOT = not _permissions_bind()  # "root" here: anyone whom file permissions do not stop


def _picture(i: int, w: int = 24, h: int = 20) -> np.ndarray:
    """A deterministic, smooth RGB picture (h, w, 3): gradients plus a bright square that moves with i."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1) + 37 * i) % 256
    g = (y * 255 // max(h - 1, 1) + 91 * i) % 256
    b = ((x + y) * 7 + 53 * i) % 256
    img = np.stack([r, g, b], axis=-1).astype(np.uint8)
    s = 2 + i % 5
    img[s : s + 6, s : s + 6] = (250, 250, 40)
    return img


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of any size; its zeros compress to almost nothing (a decompression bomb)."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed pixels
    compressor = zlib.compressobj(9)
    block = compressor.compress(row * 1000)
    body = b"".join(block if k + 1000 <= height else compressor.compress(row * (height - k))
                    for k in range(0, height, 1000))
    idat = body + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


RED, BLUE = (255, 0, 0), (0, 0, 255)

# The hostile folder: every skipped file with the reason the scan must give.
EXPECTED_SKIPS = {
    "unreadable": ["broken-link.png"],
    "zero-byte": ["empty.png"],
    "not an image": ["bad/noise.png", "bad/notes.jpg"],
    "undecodable": ["bad/damaged.png"],
    "truncated": ["bad/half.jpg", "bad/half.png"],
    "too large": ["bomb.png", "bomb_warning.png"],
    "too small": ["tiny.png"],
}
GOOD = ["cmyk.jpg", "deep16.png", "exif.jpg", "good/g0.png", "good/g1.jpg", "good/g2.png", "good/g3.jpg",
        "good/g4.png", "good/g5.jpg", "small.png"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    (root / "good").mkdir()
    (root / "bad").mkdir()
    for i in range(6):
        img = Image.fromarray(_picture(i))
        img.save(root / "good" / (f"g{i}.png" if i % 2 == 0 else f"g{i}.jpg"), quality=95)
    jpeg = _encode(Image.fromarray(_picture(7, 64, 48)), "JPEG", quality=95)
    png = _encode(Image.fromarray(_picture(8, 64, 48)), "PNG")
    (root / "bad" / "half.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # header fine, pixel data cut short
    (root / "bad" / "half.png").write_bytes(png[: len(png) // 2])
    (root / "bad" / "notes.jpg").write_text("a text file with an image extension\n")
    (root / "bad" / "noise.png").write_bytes(np.random.default_rng(0).integers(1, 256, 700, dtype=np.uint8).tobytes())
    (root / "bad" / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3)
    (root / "empty.png").write_bytes(b"")
    (root / "bomb.png").write_bytes(_bilevel_png(20000, 20000))  # 400 Mpx: over twice Pillow's limit
    (root / "bomb_warning.png").write_bytes(_bilevel_png(10000, 10000))  # 100 Mpx: where Pillow only warns
    (root / "broken-link.png").symlink_to(root / "gone.png")
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(root / "tiny.png")
    Image.fromarray(_picture(9, 12, 10)).save(root / "small.png")  # below the training size: upscaled
    Image.fromarray(np.full((32, 32), 32768, dtype=np.uint16)).save(root / "deep16.png")
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(root / "cmyk.jpg", quality=95)  # red
    # Stored with the left half red; EXIF orientation 6 (rotate 90 degrees clockwise) puts red on top.
    rotated = Image.new("RGB", (32, 32), BLUE)
    rotated.paste(RED, (0, 0, 16, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(root / "exif.jpg", exif=exif, quality=95)
    (root / "README.txt").write_text("ignored: no image extension")
    return root


def _by_name(split) -> dict[str, torch.Tensor]:
    out = {}
    for source in (split.train, split.test):
        if source is not None:
            images = source.get(list(range(len(source))))
            out.update(zip(source.names, images))
    return out


@pytest.fixture(scope="module")
def hostile_split(hostile: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = open_data(str(hostile), SIZE, test_fraction=0.2)
    assert not caught, [str(w.message) for w in caught]  # no DecompressionBombWarning or other noise
    return split


# ----------------------------------------------------------------------------------------- the scan


def test_scan_skips_every_bad_file_with_its_reason(hostile: Path, hostile_split) -> None:
    report = hostile_split.report
    assert report.skipped == EXPECTED_SKIPS
    assert report.examined == len(GOOD) + sum(map(len, EXPECTED_SKIPS.values()))
    assert report.usable == len(GOOD) and report.upscaled == 1 and report.upscaled_examples == ["small.png"]
    assert report.ignored == ["README.txt"] and report.channels == 3
    names = hostile_split.train.names + hostile_split.test.names
    assert sorted(names) == GOOD
    assert isinstance(hostile_split.train, TensorSource)  # small: decoded into memory by the scan itself
    # The description (printed by training) is one line with the reasons; the full report names every file.
    assert "\n" not in hostile_split.description and "skipped 10 of 20 files" in hostile_split.description
    assert "upscaled 1 image smaller than 16 px (small.png)" in hostile_split.description
    text = report.format()
    for reason, files in EXPECTED_SKIPS.items():
        line = next(line for line in text.splitlines() if line.strip().startswith(reason))
        assert all(f in line for f in files), line
    record = hostile_split.split_record()
    assert json.loads(json.dumps(record)) == record and record["source"] == str(hostile)


def test_lazy_scan_agrees_with_the_cached_one(hostile: Path, hostile_split) -> None:
    lazy = open_data(str(hostile), SIZE, test_fraction=0.2, cache_limit_bytes=0)
    assert isinstance(lazy.train, FolderSource)
    assert lazy.report.skipped == EXPECTED_SKIPS and lazy.report.upscaled == 1
    assert lazy.train.names == hostile_split.train.names and lazy.test.names == hostile_split.test.names
    cached, decoded = _by_name(hostile_split), _by_name(lazy)
    for name in GOOD:
        assert torch.equal(cached[name], decoded[name]), name
        assert torch.equal(decoded[name], load_image(hostile / name, SIZE, 3)), name


def test_awkward_images_decode_correctly(hostile_split) -> None:
    images = _by_name(hostile_split)
    mean = {name: images[name].float().mean(dim=(1, 2)).tolist() for name in ("deep16.png", "cmyk.jpg")}
    assert mean["deep16.png"] == pytest.approx([128] * 3, abs=1)  # 16-bit scaled, not clipped to 255
    assert mean["cmyk.jpg"][0] > 220 and max(mean["cmyk.jpg"][1:]) < 40  # CMYK red stays red
    exif = images["exif.jpg"].float()
    top, bottom = exif[:, :5].mean(dim=(1, 2)), exif[:, -5:].mean(dim=(1, 2))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60  # rotated: red on top
    assert images["small.png"].shape == (3, SIZE, SIZE)


def test_check_data_prints_the_report(hostile: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check-data", str(hostile), "--image-size", str(SIZE)]) == 0
    out = capsys.readouterr().out
    assert f"folder {hostile}" in out and "usable    10 images" in out and "upscaled  1" in out
    for reason, files in EXPECTED_SKIPS.items():
        assert reason in out and all(f in out for f in files)
    assert "89,478,485" in out  # the decompression-bomb limit is stated


def test_train_on_a_hostile_folder_prints_the_report_once(hostile: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture, tiny_cli) -> None:
    out = tmp_path / "run"
    flags = tiny_cli(data=None, image_size=SIZE, channels=None, warmup_steps=1)  # channels detected
    assert main(["train", "--data", str(hostile), "--out", str(out), "--steps", "2", *flags]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped 10 of 20 files") == 1, err
    assert "Traceback" not in err
    split = json.loads((out / "split.json").read_text())
    assert sorted(split["train"] + split["test"]) == GOOD


def test_the_bomb_limit_follows_pillow(hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lowering Pillow's limit below the good images' size skips them as "too large" too.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)
    report = check_data(str(hostile), SIZE)
    assert {"deep16.png", "cmyk.jpg", "exif.jpg"} <= set(report.skipped["too large"])
    assert report.usable == 7 and "600 pixels" in report.format()


# ------------------------------------------------------------------------------------- errors


def test_empty_folder_is_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture, tiny_cli) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["check-data", str(empty)]) == 2
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "run"), "--steps", "1",
                 *tiny_cli(data=None)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("introvae: error:") and str(empty) in line for line in err)
    assert not (tmp_path / "run").exists()


def test_too_few_usable_images_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    Image.fromarray(_picture(0)).save(tmp_path / "only.png")
    (tmp_path / "broken.jpg").write_bytes(b"no")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError) as info:
        open_data(str(tmp_path), SIZE)
    message = str(info.value)
    assert str(tmp_path) in message and "1 usable image of 3 files" in message and "\n" not in message
    assert "1 zero-byte (empty.png)" in message and "1 not an image (broken.jpg)" in message
    assert main(["check-data", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def _locked_dir_scandir(monkeypatch: pytest.MonkeyPatch, locked: Path) -> None:
    real = os.scandir

    def scandir(path=".", *args):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args)

    monkeypatch.setattr(os, "scandir", scandir)


def test_unreadable_data_folder_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    Image.fromarray(_picture(0)).save(locked / "a.png")
    if IS_ROOT:  # root reads a chmod 000 folder anyway: make the listing fail the way it would for a user
        _locked_dir_scandir(monkeypatch, locked)
    locked.chmod(0)
    try:
        assert main(["check-data", str(locked)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(locked) in err and "permission denied" in err
    finally:
        locked.chmod(0o755)


@pytest.mark.skipif(IS_ROOT, reason="root can read a chmod 000 file")
def test_unreadable_file_is_skipped(tmp_path: Path) -> None:  # pragma: no cover - not run as root
    for i in range(3):
        Image.fromarray(_picture(i)).save(tmp_path / f"{i}.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(_picture(3)).save(tmp_path / "sub" / "3.png")
    (tmp_path / "0.png").chmod(0)
    (tmp_path / "sub").chmod(0)
    try:
        report = check_data(str(tmp_path), SIZE)
    finally:
        (tmp_path / "0.png").chmod(0o644)
        (tmp_path / "sub").chmod(0o755)
    assert report.skipped == {"unreadable": ["0.png", "sub/"]} and report.usable == 2


def test_unreadable_file_is_skipped_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import introvae.data.scan as scan

    for i in range(3):
        Image.fromarray(_picture(i)).save(tmp_path / f"{i}.png")
    real = scan.open_file

    def open_file(path: Path):
        if path.name == "1.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(scan, "open_file", open_file)
    report = check_data(str(tmp_path), SIZE)
    assert report.skipped == {"unreadable": ["1.png"]} and report.usable == 2


# ------------------------------------------------------------------------ a file that goes bad later


def test_a_file_that_goes_bad_after_the_scan_is_substituted(tmp_path: Path) -> None:
    for i in range(5):
        Image.fromarray(_picture(i)).save(tmp_path / f"{i}.png")
    split = open_data(str(tmp_path), SIZE, test_fraction=0.0, cache_limit_bytes=0)
    source = split.train
    assert isinstance(source, FolderSource) and source.names == [f"{i}.png" for i in range(5)]
    before = source.get([0, 1, 2, 3, 4])
    assert torch.equal(pickle.loads(pickle.dumps(source)).get([4, 0]), before[[4, 0]])
    data = (tmp_path / "2.png").read_bytes()
    (tmp_path / "2.png").write_bytes(data[: len(data) // 3])  # truncated on disk while training runs
    (tmp_path / "3.png").unlink()  # and its neighbour is gone
    with pytest.warns(UserWarning, match="passed the scan") as caught:
        batch = source.get([2, 0, 3])
    assert [str(w.message).split()[0] for w in caught] == ["2.png", "3.png"]
    assert torch.equal(batch[0], before[4]) and torch.equal(batch[2], before[4]) and torch.equal(batch[1], before[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per file: no second warning
        assert torch.equal(source.get([2, 3]), before[[4, 4]])
    # A source that can no longer decode anything says so, in one sentence.
    for i in (0, 1, 4):
        (tmp_path / f"{i}.png").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="None of the 5 images"):
        source.get([0])


# -------------------------------------------------------------------- LMDB and arrays match folders


N_SAME = 9


@pytest.fixture(scope="module")
def same_images(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same images as a folder of PNG files, an LMDB of those files' bytes, a .npz (NHWC) and a .npy (NCHW)."""
    lmdb = pytest.importorskip("lmdb")
    root = tmp_path_factory.mktemp("same")
    pictures = np.stack([_picture(i, 28, 22) for i in range(N_SAME)])
    folder = root / "folder"
    folder.mkdir()
    for i, picture in enumerate(pictures):
        Image.fromarray(picture).save(folder / f"img{i:03d}.png")
    (folder / "sub").mkdir()
    Image.fromarray(_picture(20, 40, 30)).save(folder / "sub" / "photo.jpg", quality=90)  # only in folder + LMDB
    env = lmdb.open(str(root / "db"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for f in sorted(folder.rglob("*.*")):
            txn.put(f.relative_to(folder).as_posix().encode(), f.read_bytes())
    env.close()
    np.savez(root / "images.npz", images=pictures)
    np.save(root / "images.npy", np.ascontiguousarray(pictures.transpose(0, 3, 1, 2)))
    return {"root": root, "folder": folder, "db": root / "db", "pictures": pictures}


@pytest.mark.parametrize("cache", [True, False])
def test_lmdb_gives_the_folder_images_and_split(same_images: dict, cache: bool) -> None:
    limit = 4 * 2**30 if cache else 0
    folder = open_data(str(same_images["folder"]), SIZE, test_fraction=0.3, seed=2, cache_limit_bytes=limit)
    for spec in (str(same_images["db"]), f"lmdb:{same_images['db']}"):
        db = open_data(spec, SIZE, test_fraction=0.3, seed=2, cache_limit_bytes=limit)
        assert db.train.names == folder.train.names and db.test.names == folder.test.names
        assert type(db.train).__name__ == ("TensorSource" if cache else "LMDBSource")
        for a, b in ((db.train, folder.train), (db.test, folder.test)):
            order = list(range(len(a)))[::-1]
            assert torch.equal(a.get(order), b.get(order))
        assert db.channels == 3 and db.report.usable == N_SAME + 1 and db.report.kind == "record"
        record = db.split_record()
        assert json.loads(json.dumps(record)) == record and record["source"] == f"lmdb:{same_images['db']}"
        assert "LMDB" in db.description
        copy = pickle.loads(pickle.dumps(db.train))
        assert torch.equal(copy.get([1, 0]), db.train.get([1, 0]))


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("kind", ["images.npz", "images.npy"])
def test_arrays_give_the_folder_images(same_images: dict, cache: bool, kind: str) -> None:
    limit = 4 * 2**30 if cache else 0
    folder = open_data(str(same_images["folder"]), SIZE, test_fraction=0.3, cache_limit_bytes=limit)
    arrays = open_data(str(same_images["root"] / kind), SIZE, test_fraction=0.3, cache_limit_bytes=limit)
    assert isinstance(arrays.train, TensorSource if cache else ArraySource)
    from_folder, from_array = _by_name(folder), _by_name(arrays)
    assert sorted(from_array) == [f"array/{i:06d}" for i in range(N_SAME)]
    for i in range(N_SAME):
        assert torch.equal(from_array[f"array/{i:06d}"], from_folder[f"img{i:03d}.png"]), i
    assert arrays.report.upscaled == 0 and arrays.channels == 3
    assert arrays.split_record()["source"] == str(same_images["root"] / kind)
    copy = pickle.loads(pickle.dumps(arrays.train))  # what a worker process would get
    assert torch.equal(copy.get([0, 1]), arrays.train.get([0, 1]))


def test_gray_arrays_at_the_training_size(tmp_path: Path) -> None:
    gray = np.stack([_picture(i, SIZE, SIZE)[..., 1] for i in range(4)])  # (N, H, W) at the training size
    np.save(tmp_path / "g.npy", gray[:, None])  # NCHW with one channel
    np.savez(tmp_path / "g.npz", gray)  # the only array, NHW
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, image in enumerate(gray):
        Image.fromarray(image).save(folder / f"{i}.png")
    for channels in (None, 3):
        expected = _by_name(open_data(str(folder), SIZE, channels=channels, test_fraction=0.0))
        for spec in ("g.npy", "g.npz"):
            got = open_data(str(tmp_path / spec), SIZE, channels=channels, test_fraction=0.0, cache_limit_bytes=0)
            assert got.channels == (channels or 1)
            for i in range(4):
                assert torch.equal(got.train.get([i])[0], expected[f"{i}.png"])


def test_detected_gray_folder_cached_equals_lazy(tmp_path: Path) -> None:
    for i in range(4):
        Image.fromarray(_picture(i, 30, 21)[..., 0]).save(tmp_path / f"{i}.png")
    Image.fromarray(np.full((25, 20), 3000 * 7, np.uint16)).save(tmp_path / "deep.png")
    cached = open_data(str(tmp_path), SIZE, test_fraction=0.0)
    lazy = open_data(str(tmp_path), SIZE, test_fraction=0.0, cache_limit_bytes=0)
    assert cached.channels == lazy.channels == 1 and isinstance(cached.train, TensorSource)
    assert torch.equal(cached.train.get(range(5)), lazy.train.get(range(5)))


def test_lmdb_bad_records_are_skipped(tmp_path: Path) -> None:
    lmdb = pytest.importorskip("lmdb")
    good = [_encode(Image.fromarray(_picture(i)), "PNG") for i in range(3)]
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for i, value in enumerate(good):
            txn.put(f"good{i}".encode(), value)
        txn.put(b"empty", b"")
        txn.put(b"half", good[0][: len(good[0]) // 2])
        txn.put(b"text", b"hello")
        txn.put(b"\xff\xfe", good[1])  # not UTF-8: named by its hex digits
    env.close()
    split = open_data(f"lmdb:{tmp_path / 'db'}", SIZE, test_fraction=0.0)
    assert split.report.skipped == {"zero-byte": ["empty"], "not an image": ["text"], "truncated": ["half"]}
    assert split.train.names == ["good0", "good1", "good2", "0xfffe"]
    assert torch.equal(split.train.get([3]), split.train.get([1]))


def test_lmdb_without_the_package_says_pip_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "data.mdb").write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb now raises ImportError
    with pytest.raises(DataError, match="pip install lmdb"):
        open_data(str(tmp_path / "db"), SIZE)


@pytest.mark.parametrize(
    "array, phrase",
    [
        (np.zeros((3, 16, 16, 3), np.float32), "not uint8"),
        (np.zeros((3, 16, 16, 2), np.uint8), "shape"),
        (np.zeros((3, 4, 4, 3), np.uint8), "too small"),
        (np.array([{"a": 1}] * 3, dtype=object), "pickl"),
    ],
)
def test_bad_arrays_are_one_sentence(tmp_path: Path, array: np.ndarray, phrase: str) -> None:
    np.save(tmp_path / "x.npy", array, allow_pickle=True)
    with pytest.raises(DataError, match=phrase) as info:
        open_data(str(tmp_path / "x.npy"), SIZE)
    assert "\n" not in str(info.value)


def test_npz_needs_images_or_a_single_array(tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 16, 16, 3), np.uint8), b=np.zeros(2))
    with pytest.raises(DataError, match="'images'"):
        open_data(str(tmp_path / "two.npz"), SIZE)
    with pytest.raises(DataError, match="does not exist"):
        open_data(str(tmp_path / "missing.npz"), SIZE)


def test_take_rows_in_place_is_a_gather() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 30):
        t = torch.arange(n * 4).reshape(n, 2, 2)
        for m in (0, 1, n // 2, n):
            rows = rng.permutation(n)[:m].tolist()
            expected = t[rows].clone() if m else t[:0]
            assert torch.equal(take_rows_in_place(t.clone(), rows), expected)
