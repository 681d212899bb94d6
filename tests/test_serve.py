"""The explorer page's server (`introvae serve`) through its HTTP API, with Flask's test client, on a tiny run trained
a few steps: every decoded image is compared pixel by pixel with what the Python API gives for the same code."""

import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("flask", reason="the explorer page needs Flask: pip install 'introvae[serve]'")

from introvae import Model  # noqa: E402
from introvae.cli import main  # noqa: E402
from introvae.errors import UserError  # noqa: E402
from introvae.evaluate import EvalSettings, evaluate_run, format_table  # noqa: E402
from introvae.images import load_image, to_float, to_uint8  # noqa: E402
from introvae.latent import (  # noqa: E402
    DEFAULT_SCORE,
    attribute_position,
    compute_attribute,
    edit_images,
    principal_directions,
    score_images,
    training_images,
)
from introvae.serve import Explorer, create_app, serve  # noqa: E402
from introvae.serve.app import allowed_host_names, png_data_url  # noqa: E402
from introvae.serve.explorer import MAX_UPLOAD_BYTES  # noqa: E402

OPEN = dict(device="cpu", components=4, reference_count=64, score_reference=16, score_samples=4)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_run):
    """A copy of the shared tiny run (its 115 training images feed the PCA) with an evaluation report, one attribute
    vector in RUN/attributes/ and one in a separate file."""
    run_dir = Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("serve") / "run"))
    evaluate_run(run_dir, settings=EvalSettings(num_samples=32, msssim_pairs=10, kid_subsets=2, kid_subset_size=8,
                                                download=False, neighbour_rows=0).validate())
    model = Model.load(run_dir, device="cpu")
    images = training_images(model.config, 64)
    bright = images.float().mean(dim=(1, 2, 3)) > images.float().mean()
    compute_attribute(model, images[bright], images[~bright], name="bright").save(
        run_dir / "attributes" / "bright.safetensors")
    extra = run_dir.parent / "halves.safetensors"
    half = len(images) // 2
    compute_attribute(model, images[:half], images[half:], name="halves").save(extra)
    return run_dir, extra


@pytest.fixture(scope="module")
def explorer(run):
    run_dir, extra = run
    return Explorer.open(run_dir, attribute_files=[extra], **OPEN)


@pytest.fixture()
def client(explorer):
    return create_app(explorer).test_client()


def pixels(data_url: str) -> np.ndarray:
    """A data: URL of a PNG as uint8 (H, W, C)."""
    assert data_url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as img:
        return np.asarray(img.convert("RGB"))


def expected(image: torch.Tensor) -> np.ndarray:
    return to_uint8(image).permute(1, 2, 0).numpy()


def assert_same_image(data_url: str, image: torch.Tensor) -> None:
    # One code decoded alone or within a batch may differ in the last float bits, so by one level at most.
    difference = np.abs(pixels(data_url).astype(int) - expected(image).astype(int))
    assert difference.max() <= 1, difference.max()


def png_bytes(width: int, height: int, colour=(200, 40, 40), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def post_image(client, data: bytes, name: str = "image.png", **kwargs):
    return client.post("/api/upload", data={"image": (io.BytesIO(data), name)}, **kwargs)


# ---- what the page shows


def test_info_lists_the_run_its_sliders_and_its_evaluation(client, run):
    run_dir, _ = run
    info = client.get("/api/info").get_json()
    assert (info["image_size"], info["channels"], info["latent_dim"]) == (16, 3, 8)
    keys = [d["key"] for d in info["directions"]]
    assert keys == ["pc1", "pc2", "pc3", "pc4", "attribute:bright", "attribute:halves"]
    assert {a["name"] for a in info["attributes"]} == {"bright", "halves"}
    report_file = sorted((run_dir / "eval").glob("eval-*.json"))[-1]
    assert info["evaluation"]["table"] == format_table(json.loads(report_file.read_text()))
    assert info["has_dynamics"] and info["reference_scored"] == 16
    assert info["default_score"] == DEFAULT_SCORE


def test_index_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and b'id="explore-image"' in page.data
    script = client.get("/static/app.js")
    assert script.status_code == 200 and b"/api/decode" in script.data


def test_dynamics_is_the_runs_picture(client, run):
    run_dir, _ = run
    response = client.get("/api/dynamics.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.data == (run_dir / "dynamics.png").read_bytes()


@pytest.mark.slow
def test_a_weights_file_finds_the_vectors_attribute_wrote_beside_it(tiny_run, tmp_path):
    weights = tmp_path / "model.safetensors"
    assert main(["export", str(tiny_run), "--out", str(weights)]) == 0
    for folder, seed in (("a", "1"), ("b", "2")):
        assert main(["sample", str(weights), "--num", "4", "--seed", seed, "--out", str(tmp_path / folder)]) == 0
    assert main(["attribute", str(weights), "--with", str(tmp_path / "a"), "--without", str(tmp_path / "b"),
                 "--name", "seeds"]) == 0
    assert (tmp_path / "attributes" / "seeds.safetensors").is_file()
    report = evaluate_run(weights, settings=EvalSettings(num_samples=8, msssim_pairs=10, kid_subsets=2,
                                                         kid_subset_size=4, download=False, neighbour_rows=0))
    explorer = Explorer.open(weights, **OPEN)
    info = explorer.info()
    assert [d["key"] for d in info["directions"]][-1] == "attribute:seeds"
    assert info["evaluation"]["table"] == format_table(report)  # the report evaluate wrote beside the file


def test_dynamics_redrawn_from_the_log_has_the_objectives_panels(tiny_run_copy, tmp_path):
    from introvae.plot import plot_dynamics
    from introvae.runlog import read_log

    (tiny_run_copy / "dynamics.png").unlink()  # as for a run still training: the page draws it from log.jsonl
    explorer = Explorer.open(tiny_run_copy, **OPEN)
    assert main(["plot", str(tiny_run_copy), "--out", str(tmp_path / "plotted.png")]) == 0
    records = read_log(tiny_run_copy / "log.jsonl")
    plot_dynamics(records, tmp_path / "from-keys.png", title=f"introvae: {tiny_run_copy.name}")
    picture = explorer.dynamics_png()
    assert picture == (tmp_path / "plotted.png").read_bytes()  # what `introvae plot` (and the trainer) draw
    assert picture != (tmp_path / "from-keys.png").read_bytes()
    assert not (tiny_run_copy / "dynamics.png").exists()  # the run directory is not written to


def test_samples_are_the_models_samples(client, explorer):
    response = client.get("/api/samples?seed=7&count=5")
    assert response.status_code == 200
    images = response.get_json()["images"]
    reference = explorer.model.sample(5, seed=7)
    assert [(s["seed"], s["index"]) for s in images] == [(7, i) for i in range(5)]
    for sample, image in zip(images, reference):
        assert_same_image(sample["image"], image)
    other = client.get("/api/samples?seed=8&count=5").get_json()["images"]
    assert not np.array_equal(pixels(other[0]["image"]), pixels(images[0]["image"]))


# ---- sliders


def test_principal_direction_slider_moves_the_code_by_standard_deviations(client, explorer):
    model = explorer.model
    pca = principal_directions(model, training_images(model.config, 64), 4)
    z = model.latents(1, 3, start=2)[0]
    still = client.post("/api/decode", json={"endpoint": {"seed": 3, "index": 2}}).get_json()["image"]
    assert_same_image(still, model.sample(3, seed=3)[2])
    moved = client.post("/api/decode", json={"endpoint": {"seed": 3, "index": 2},
                                             "offsets": {"pc1": 2.5, "pc3": -1}}).get_json()["image"]
    code = z + 2.5 * pca.stddev[0] * pca.components[0] - pca.stddev[2] * pca.components[2]
    assert_same_image(moved, model.decode(code[None], prior=True)[0])
    assert not np.array_equal(pixels(moved), pixels(still))


def test_attribute_slider_is_the_attribute_edit_of_an_upload(client, explorer):
    model = explorer.model
    data = png_bytes(16, 16, (30, 160, 220))
    upload = post_image(client, data).get_json()
    image = to_float(load_image(data, 16, 3))[None]
    response = client.post("/api/decode", json={"endpoint": {"upload": upload["id"]},
                                                "offsets": {"attribute:bright": 1.5}})
    assert response.status_code == 200
    edited = edit_images(model, image, explorer.attributes["bright"], [1.5])[0, 0]
    assert_same_image(response.get_json()["image"], edited)


# ---- uploads


def test_upload_shows_reconstruction_scores_and_attribute_positions(client, explorer):
    model = explorer.model
    data = png_bytes(40, 24, (240, 200, 20))
    response = post_image(client, data, "yellow.png")
    assert response.status_code == 200
    result = response.get_json()
    image = to_float(load_image(data, 16, 3))
    assert_same_image(result["image"], image)
    assert_same_image(result["reconstruction"], model.reconstruct(image[None])[0])
    assert result["resized"] == "resized from 40 x 24 to 16 x 16 (shorter side, then centre-cropped)"
    scores = score_images(model, image[None], samples=4, seed=0, reference=explorer.ood_reference)
    assert set(result["scores"]) == set(scores)
    for key, values in scores.items():
        assert result["scores"][key] == pytest.approx(float(values[0]), rel=1e-5)
        share = (explorer.reference_scores[key] < values[0]).mean() * 100
        assert result["percentiles"][key] == pytest.approx(share)
    for name, vector in explorer.attributes.items():
        position = float(attribute_position(model, image[None], vector)[0])
        assert result["attributes"][name] == pytest.approx(position, rel=1e-4, abs=1e-5)


def test_gray_and_transparent_uploads_are_converted(client):
    assert post_image(client, png_bytes(16, 16, 128, mode="L")).status_code == 200
    rgba = post_image(client, png_bytes(20, 20, (0, 0, 0, 0), mode="RGBA")).get_json()
    assert (pixels(rgba["image"]) == 255).all()  # transparency is composited onto white, as everywhere


@pytest.mark.parametrize("data, name, status, message", [
    (b"hello, this is text", "notes.txt", 400, "notes.txt is not an image"),
    (b"", "empty.png", 400, "empty.png is empty"),
    (png_bytes(64, 64)[:60], "cut.png", 400, "cut.png looks like an image but cannot be decoded"),
    (b"\0" * (MAX_UPLOAD_BYTES + 2**17), "huge.png", 413, "larger than 16 MiB"),
])
def test_bad_uploads_get_a_clear_message(client, data, name, status, message):
    response = post_image(client, data, name)
    assert response.status_code == status
    assert message in response.get_json()["error"]


@pytest.mark.parametrize("size, message", [
    ((10_000, 6_000), "bomb.png is 10000 x 6000 pixels"),  # above the page's limit
    ((20_000, 10_000), "bomb.png claims more than"),  # above what Pillow itself opens
])
def test_an_image_claiming_too_many_pixels_is_refused_before_decoding(client, size, message):
    buffer = io.BytesIO()
    Image.new("1", size).save(buffer, format="PNG")  # tens of megapixels in a few kB
    response = post_image(client, buffer.getvalue(), "bomb.png")
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_upload_without_a_file_is_a_clear_error(client):
    response = client.post("/api/upload", data={})
    assert response.status_code == 400 and "no file" in response.get_json()["error"]


# ---- interpolation


def test_interpolation_between_seeds_and_between_uploads(client, explorer):
    model = explorer.model
    seeds = client.post("/api/interpolate", json={"a": {"seed": 1}, "b": {"seed": 2}, "steps": 5}).get_json()
    for frame, image in zip(seeds["frames"], model.interpolate_seeds(1, 2, 5), strict=True):
        assert_same_image(frame, image)
    a, b = png_bytes(16, 16, (250, 0, 0)), png_bytes(16, 16, (0, 0, 250))
    id_a, id_b = (post_image(client, data).get_json()["id"] for data in (a, b))
    body = {"a": {"upload": id_a}, "b": {"upload": id_b}, "steps": 4, "method": "slerp"}
    frames = client.post("/api/interpolate", json=body).get_json()["frames"]
    images = torch.stack([to_float(load_image(data, 16, 3)) for data in (a, b)])
    for frame, image in zip(frames, model.interpolate(images[0], images[1], 4, "slerp"), strict=True):
        assert_same_image(frame, image)


@pytest.mark.parametrize("path, body, message", [
    ("/api/decode", {"endpoint": {"seed": 0}, "offsets": {"pc9": 1}}, "there is no slider 'pc9'"),
    ("/api/decode", {"endpoint": {"seed": 0}, "offsets": {"pc1": 7}}, "slider pc1 must be a number from -3 to 3"),
    ("/api/decode", {"endpoint": {"upload": "0123"}}, "upload it again"),
    ("/api/decode", {"endpoint": {"seed": -1}}, "seed must be a whole number"),
    ("/api/decode", {"endpoint": "seed 0"}, "an image is named by"),
    ("/api/interpolate", {"a": {"seed": 0}, "b": {"seed": 1}, "steps": 1000}, "steps must be a whole number from 2"),
    ("/api/interpolate", {"a": {"seed": 0}, "b": {"seed": 1}, "method": "cubic"}, "method 'cubic' is not lerp"),
])
def test_bad_requests_get_a_clear_message(client, path, body, message):
    response = client.post(path, json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_non_json_body_and_bad_sample_count(client):
    response = client.post("/api/decode", data="seed=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and "JSON object" in response.get_json()["error"]
    response = client.get("/api/samples?seed=0&count=500")
    assert response.status_code == 400 and "count must be a whole number from 1 to 64" in response.get_json()["error"]


# ---- other origins


def test_requests_from_other_origins_are_refused(client, explorer):
    kept = explorer.upload_count
    foreign = post_image(client, png_bytes(16, 16), headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "origin" in foreign.get_json()["error"]
    other_port = client.post("/api/decode", json={"endpoint": {"seed": 0}},
                             headers={"Origin": "http://localhost:9999"})
    assert other_port.status_code == 403
    cross_site = post_image(client, png_bytes(16, 16), headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403
    assert explorer.upload_count == kept  # none of them reached the model
    rebinding = client.get("/api/info", headers={"Host": "evil.example:8000"})
    assert rebinding.status_code == 403 and "answers only to" in rebinding.get_json()["error"]
    same = client.post("/api/decode", json={"endpoint": {"seed": 0}},
                       headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200


def test_a_port_in_use_is_a_clear_error(explorer):
    import socket

    from introvae.serve import make_explorer_server

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port} .*pass another --port"):
            make_explorer_server(explorer, "127.0.0.1", port)


def test_host_names_follow_the_bind_address():
    assert allowed_host_names("127.0.0.1") == {"127.0.0.1", "localhost", "[::1]"}
    assert "[fe80::1]" in allowed_host_names("fe80::1")
    assert allowed_host_names("0.0.0.0") is None  # serving everyone was asked for


def test_png_data_url_round_trip():
    image = torch.rand(3, 5, 7)
    assert np.array_equal(pixels(png_data_url(image)), expected(image))
    gray = torch.rand(1, 4, 4)
    assert np.array_equal(pixels(png_data_url(gray))[..., 0], to_uint8(gray)[0].numpy())


# ---- command line and import weight


def test_cli_errors_exit_with_status_2(tmp_path, run, capsys):
    missing = tmp_path / "missing"
    assert main(["serve", str(missing)]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("introvae: error: ") and str(missing) in error
    assert main(["serve", str(run[0]), "--port", "70000"]) == 2
    assert "--port must be from 0 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [({"port": -1}, "--port must be from 0 to 65535"),
                                              ({"components": -1}, "--components must be 0 or more"),
                                              ({"threads": -2}, "--threads must be 0")])
def test_serve_refuses_bad_options_before_opening_the_run(tmp_path, options, message):
    with pytest.raises(UserError, match=message):
        serve(tmp_path / "not-opened", **options)  # a missing run would be a different error


def test_importing_introvae_does_not_import_the_server_library():
    code = "import sys, introvae, introvae.serve; print('flask' in sys.modules, 'werkzeug' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_cli_serves_on_a_free_port_and_stops_on_ctrl_c(run):
    import os
    import re
    import signal
    import urllib.error
    import urllib.request

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Ctrl-C reaches the server as it does in a terminal, even when pytest was started in the background, where the
    # shell hands it (and so its children) SIGINT ignored; Python then leaves it ignored and nothing would stop.
    server = subprocess.Popen([sys.executable, "-m", "introvae", "serve", str(run[0]), "--port", "0",
                               "--device", "cpu"], stderr=subprocess.PIPE, text=True, env=env,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        for line in server.stderr:  # the address is printed once the server listens
            lines.append(line)
            found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            if found:
                break
        assert found, "".join(lines)
        with urllib.request.urlopen(found.group(1) + "api/info", timeout=30) as response:
            assert json.load(response)["latent_dim"] == 8
        foreign = urllib.request.Request(found.group(1) + "api/info", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(foreign, timeout=30)
        assert refused.value.code == 403
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
