"""The explorer page in a real headless browser: Chromium from the system's packages, driven by Playwright, against
`introvae serve`'s server on a free loopback port, on the shared tiny run.

Playwright's Python package cannot download a browser on machines without internet access, so the system's Chromium
(`apt-get install chromium`; .ci/run installs it) is launched through `executable_path`. The test skips, saying
why, only where no such browser (or no Playwright) can be found.
"""

import io
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask", reason="the explorer page needs Flask: pip install 'introvae[serve]'")
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="the browser test needs Playwright: pip install playwright")

from introvae.serve import Explorer, make_explorer_server  # noqa: E402

pytestmark = pytest.mark.slow  # headless Chromium

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no Chromium found (looked for {', '.join(BROWSERS)} on PATH): install it with "
                f"`apt-get install chromium`, as .ci/run does")


@pytest.fixture(scope="module")
def server(request):
    find_browser()  # skip before training when there is no browser to test with
    run_dir = request.getfixturevalue("tiny_run")  # only read: the explorer writes nothing into the run
    explorer = Explorer.open(run_dir, device="cpu", components=4, reference_count=64, score_reference=16,
                             score_samples=4)
    httpd = make_explorer_server(explorer, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.port}/"
    httpd.shutdown()
    thread.join(timeout=10)


@pytest.fixture()
def page(server):
    executable = find_browser()
    with playwright_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except playwright_api.Error as error:
            pytest.skip(f"{executable} cannot be started by Playwright: {str(error).splitlines()[0]}")
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def src_of(page, selector: str) -> str:
    return page.get_attribute(selector, "src") or ""


def wait_for_new_src(page, selector: str, old: str) -> str:
    page.wait_for_function("([sel, old]) => { const s = document.querySelector(sel).getAttribute('src') || ''; "
                           "return s.startsWith('data:image/png') && s !== old; }", arg=[selector, old])
    return src_of(page, selector)


def test_page_slider_upload_and_bad_upload(page, server, tmp_path):
    page.goto(server)
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#samples img").count() == 16
    start = wait_for_new_src(page, "#explore-image", "")

    # Drag the first principal direction's slider towards its right end, as a person would.
    slider = page.locator('#sliders input[data-key="pc1"]')
    box = slider.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.95, box["y"] + box["height"] / 2)
    moved = wait_for_new_src(page, "#explore-image", start)
    assert float(slider.input_value()) > 2
    assert page.locator('#sliders input[data-key="pc1"] + output').inner_text() == f"{float(slider.input_value()):.2f}"
    assert moved != start

    # Upload an image: its reconstruction and scores appear, and the explorer moves to it.
    page.set_input_files("#file", files=[{"name": "orange.png", "mimeType": "image/png", "buffer": png((250, 140, 0))}])
    page.wait_for_selector("#upload-result:not([hidden])")
    assert src_of(page, "#upload-reconstruction").startswith("data:image/png")
    uploaded = wait_for_new_src(page, "#explore-image", moved)
    assert page.locator("#scores tr").count() >= 4
    # The default OOD score comes first and is marked as the default.
    assert "(default)" in page.locator("#scores tr").first.inner_text()
    assert "resized from 48 x 32" in page.inner_text("#upload-note")
    assert page.locator("#uploads img").count() == 1
    assert uploaded != moved

    # A file that is no image: a clear message on the page, and the page keeps working.
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"no pixels"}])
    page.wait_for_selector("#upload-error:not([hidden])")
    assert "notes.txt is not an image" in page.inner_text("#upload-error")

    # Scrub the interpolation between the first two samples.
    page.wait_for_function("document.querySelectorAll('#interp-strip img').length === 17")
    first = src_of(page, "#interp-image")
    page.locator("#interp-t").fill("16")
    last = wait_for_new_src(page, "#interp-image", first)
    assert last == src_of(page, "#interp-strip img:last-child")

    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.shape[0] >= 600 and pixels.std() > 10  # the page drew something, not a blank window
